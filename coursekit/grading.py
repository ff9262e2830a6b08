"""Run nbgrader on a course directory and read the results from its gradebook."""
import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry


def nbgrader(course_root, *args, check=True):
    """Run one nbgrader command in ``course_root`` with this Python's environment.

    The kernels nbgrader starts must be this environment's Python, with coursekit importable.
    """
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_root, env=_environment(),
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed in {course_root}:\n{result.stderr[-3000:]}")
    return result


def _environment():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextlib.contextmanager
def this_environment_first():
    """Within the block, commands that nbgrader runs in this process (it runs `alembic` when it
    creates a gradebook) are this environment's."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = _environment()["PATH"]
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved


def run_notebook(notebook, folder, assignment, kernel_manager_class=None, timeout=120):
    """Execute ``notebook`` (nbformat, changed in place) in ``folder`` as autograding does: judged
    test cells go to coursekit.judge. The kernel is not sandboxed unless ``kernel_manager_class``
    says so: this runs trusted notebooks (the source notebooks, when `make release` records the
    PyTorch values their tests use)."""
    from jupyter_client.manager import AsyncKernelManager

    from coursekit.nbgrader_plugins import TimeLimitedExecute

    execute = TimeLimitedExecute(kernel_manager_class=kernel_manager_class or AsyncKernelManager, timeout=timeout,
                                 notebook_timeout=20 * timeout, allow_errors=True)
    return execute.preprocess(notebook, {"metadata": {"path": str(folder)}, "nbgrader": {"assignment": assignment}})[0]


def run_source(assignment):
    """Execute the source notebook of ``assignment``; returns it with its outputs."""
    from coursekit.solutions import source_notebook

    path = source_notebook(assignment)
    return run_notebook(nbformat.read(path, as_version=4), path.parent, assignment)


def problem_with(folder, assignment):
    """Why the submission in ``folder`` cannot be graded, or None if it can.

    The notebook must be ``<assignment>.ipynb``, UTF-8 JSON, and a valid notebook (nbformat
    upgrades old versions itself).
    """
    folder = Path(folder)
    path = folder / f"{assignment}.ipynb"
    if not path.exists():
        others = sorted(p.name for p in folder.glob("*.ipynb"))
        found = f" (found {', '.join(others)}: renamed?)" if others else ""
        return f"{path.name} is missing{found}"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"{path.name} is not UTF-8 text (byte {error.start}): not a notebook file"
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except nbformat.reader.NotJSONError:
        return f"{path.name} is not a notebook (not JSON)"
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds
        return f"{path.name} is not a valid notebook ({type(error).__name__}: {str(error).splitlines()[0][:100]})"
    return None


def part_of(grade_id):
    """The part a test cell grades: its grade_id starts with the answer cell's id ("linear_forward" -> "linear")."""
    return grade_id.split("_")[0]


def _by_part(scores):
    """{grade_id: points} summed into {part: points}, parts in the order of their first cell."""
    totals = {}
    for grade_id, points in scores.items():
        totals[part_of(grade_id)] = totals.get(part_of(grade_id), 0) + points
    return totals


@dataclass
class Result:
    """One student's autograded scores."""

    student: str
    cells: dict  # grade_id -> score
    max_cells: dict  # grade_id -> max score
    autograded: Path = None  # the autograded notebook
    error: str = ""  # why the submission could not be graded
    note: str = ""  # what the grader says of a graded submission (test cells it put back)

    @property
    def total(self):
        return sum(self.cells.values())

    @property
    def max_total(self):
        return sum(self.max_cells.values())

    def parts(self):
        """{part: score}, summed over its test cells."""
        return _by_part(self.cells)

    def max_parts(self):
        """{part: maximum score}."""
        return _by_part(self.max_cells)

    def lost(self):
        """Parts where points were lost."""
        maxima = self.max_parts()
        return {part for part, score in self.parts().items() if score < maxima[part]}

    def failed(self):
        """Test cells that failed: those that lost points, and 0-point checks that raised."""
        failed = {cell for cell, score in self.cells.items() if score < self.max_cells[cell]}
        if self.autograded is not None:
            failed |= set(failure_messages(self.autograded))
        return failed


def failure_messages(notebook_path):
    """{grade_id: [(error name, message)]} for the failed test cells of an autograded notebook."""
    messages = {}
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        errors = [(o.ename, o.evalue) for o in cell.get("outputs", []) if o.output_type == "error"]
        if meta.get("grade") and errors:
            messages[meta["grade_id"]] = errors
    return messages


def results(course_root, assignment):
    """{student: Result} for every student with an autograded submission of ``assignment``."""
    url = f"sqlite:///{Path(course_root) / 'gradebook.db'}"
    found = {}
    with Gradebook(url) as gradebook:
        for student in gradebook.students:
            try:
                submission = gradebook.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            code = [grade for notebook in submission.notebooks for grade in notebook.grades if grade.cell_type == "code"]
            if all(grade.auto_score is None for grade in code):
                continue  # no autograder score at all: not graded (a failed regrade keeps only what a TA graded)
            # (a test cell that the notebook lacks has no score: it counts as 0)
            cells = {grade.name: grade.score for grade in code}
            max_cells = {grade.name: grade.max_score for grade in code}
            notebook = Path(course_root) / "autograded" / student.id / assignment / f"{assignment}.ipynb"
            found[student.id] = Result(student.id, cells, max_cells, notebook if notebook.exists() else None)
    return found


def copy_course(assignment, dest, course_root=None):
    """Copy what grading ``assignment`` needs (config and source; symlinks resolved) to ``dest``."""
    from coursekit import COURSE_ROOT

    course_root = Path(course_root or COURSE_ROOT)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(course_root / "nbgrader_config.py", dest)
    shutil.copytree(course_root / "source" / assignment, dest / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def _submit_all(assignment, submissions, workdir):
    from coursekit import COURSE_ROOT
    from coursekit.submissions import release_notebook, submit

    course = copy_course(assignment, workdir)
    release = release_notebook(assignment, COURSE_ROOT)
    for student, submission in submissions.items():
        submit(course, student, assignment, submission, release)
    return course


def grade_submissions(assignment, submissions, workdir, jobs=None, feedback=True):
    """Grade many submissions in a scratch course the way `make grade` does.

    Args:
    - submissions (dict): {student: submission} (see coursekit.submissions).
    - workdir (Path): an empty directory to work in.
    - jobs (int): worker processes (default: as `make grade`).
    - feedback (bool): also make feedback (the mutation tests skip it: it does not change scores).
    Returns:
    - dict: {student: Result}; a student whose submission could not be graded has no cells and
      an ``error``.
    """
    from coursekit.grade import grade_class

    course = _submit_all(assignment, submissions, workdir)
    outcomes = grade_class(assignment, course, jobs=jobs, progress=False, feedback=feedback)
    found = results(course, assignment)
    for student, outcome in outcomes.items():
        if not outcome["ok"]:
            found[student] = Result(student, {}, {}, error=outcome["error"])
        else:
            found[student].note = outcome["error"]
    return found


def main(argv=None):
    """``python -m coursekit.grading run-source ASSIGNMENT``: execute a source notebook (`make
    release` does, with COURSEKIT_RECORD_TORCH=1); fails if a cell raised."""
    command, assignment = argv or sys.argv[1:]
    assert command == "run-source", command
    failed = [cell.metadata.get("nbgrader", {}).get("grade_id", index) for index, cell in enumerate(run_source(assignment).cells)
              if any(o.output_type == "error" for o in cell.get("outputs", []))]
    if failed:
        raise SystemExit(f"source/{assignment}: cells failed: {failed}")


def grade_submissions_stock(assignment, submissions, workdir):
    """Grade submissions with one plain `nbgrader autograde` run; returns {student: Result}."""
    course = _submit_all(assignment, submissions, workdir)
    nbgrader(course, "generate_assignment", assignment, "--force")
    nbgrader(course, "autograde", assignment, "--force", check=False)
    return results(course, assignment)


if __name__ == "__main__":
    main()
