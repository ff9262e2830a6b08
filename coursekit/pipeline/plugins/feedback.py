"""generate_feedback's preprocessors (``GenerateFeedback.preprocessors``): each cell's score and
the answers still to grade by hand, hidden tests hidden, and a page of bounded size."""
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader import preprocessors as nbgrader_preprocessors
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests
from traitlets import Integer

from coursekit.pipeline import markup
from coursekit.pipeline.plugins import output_size


class GetGrades(nbgrader_preprocessors.GetGrades):
    """nbgrader's GetGrades, which also tells the feedback page which cells are still to be
    graded by hand (no TA score yet: nbgrader would show 0), and how many points they hold."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        self._ungraded_points = 0.0
        nb, resources = super().preprocess(nb, resources)
        resources["nbgrader"]["ungraded_points"] = self._ungraded_points
        return nb, resources

    def _get_score(self, cell, resources):
        grade = self.gradebook.find_grade(cell.metadata.nbgrader["grade_id"], self.notebook_id, self.assignment_id,
                                          self.student_id)
        cell.metadata.nbgrader["score"], cell.metadata.nbgrader["points"] = grade.score, grade.max_score
        cell.metadata.nbgrader["ungraded"] = grade.manual_score is None and grade.auto_score is None
        self._ungraded_points += grade.max_score if cell.metadata.nbgrader["ungraded"] else 0


class HideHiddenTests(ClearHiddenTests):
    """For feedback: graded cells lose their hidden tests, and errors keep only their one-line message.

    A traceback would quote the hidden test code it ran through (nbgrader issue #917); the
    message says what is wrong without it.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "code" and utils.is_grade(cell):
            try:
                self._remove_hidden_test_region(cell)
            except RuntimeError:  # unbalanced markers: show nothing rather than a part of the test
                cell.source = "# (test code hidden)"
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


class BoundedFeedback(nbgrader_preprocessors.NbGraderPreprocessor):
    """For feedback: a page of bounded size, whatever a submission holds. A cell shows at most
    ``max_cell_bytes`` of its source, and the page at most ``max_page_bytes`` of sources and
    outputs; what is cut says so where it was."""

    max_cell_bytes = Integer(markup.FEEDBACK_CELL_BYTES, help="Bytes of a cell's source a feedback page shows.").tag(config=True)
    max_page_bytes = Integer(12 * 2 ** 20, help="Bytes of sources and outputs a feedback page shows.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        left = self.max_page_bytes
        for cell in nb.cells:
            if len(cell.source) > min(self.max_cell_bytes, left):
                shown = max(0, min(self.max_cell_bytes, left))
                cell.source = cell.source[:shown] + (f"\n\n[cut: this cell is {len(cell.source) / 2 ** 10:.0f} KB; "
                                                     f"the page shows {shown / 2 ** 10:.0f} KB of it]\n")
            left -= len(cell.source)
            outputs = []
            for output in cell.get("outputs", []):
                size = output_size(output)
                if size > left:
                    outputs.append(new_output("stream", name="stdout", text="\n[cut: the page shows no more outputs]\n"))
                    left = 0
                    break
                outputs.append(output)
                left -= size
            if "outputs" in cell:
                cell.outputs = outputs
        return nb, resources
