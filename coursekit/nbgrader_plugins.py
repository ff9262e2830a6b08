"""nbgrader preprocessors of the course, enabled in nbgrader_config.py for every autograde."""
import time

from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float


def _error(name, message):
    return new_output("error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class TimeLimitedExecute(Execute):
    """nbgrader's Execute with a time limit per notebook, so that an infinite loop costs seconds.

    Once the notebook has run for ``notebook_timeout`` seconds, the remaining cells are not run
    and their tests fail with that reason. After a cell times out, the remaining cells get
    ``timeout_after_timeout`` seconds each. (A cell whose error the notebook hides from IPython's
    display still fails: nbgrader's Execute adds the error the kernel reported.)
    """

    # a kernel that a submission broke must not stop the grading of the notebook
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    notebook_timeout = Float(60, help="Seconds a whole notebook may run.").tag(config=True)
    timeout_after_timeout = Float(3, help="Cell timeout once a cell has timed out.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._started = time.monotonic()
        self._cell_timeout = self.timeout
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self.timeout = self._cell_timeout

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if time.monotonic() - self._started > self.notebook_timeout:
            cell.outputs = [_error("NotebookTimeout", f"not run: the notebook used up its "
                                   f"{self.notebook_timeout:g} s time limit (an infinite loop above?)")]
            return cell, resources
        cell, resources = super().preprocess_cell(cell, resources, index)
        if any(o.output_type == "error" and o.ename == "CellTimeoutError" for o in cell.outputs):
            for output in cell.outputs:
                if output.output_type == "error" and output.ename == "CellTimeoutError":
                    output.evalue = f"the cell ran longer than {self.timeout:g} s and was stopped (an infinite loop?)"
            self.timeout = min(self.timeout, self.timeout_after_timeout)
        return cell, resources
