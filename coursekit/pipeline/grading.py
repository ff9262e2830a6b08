"""Run nbgrader on a course directory and read the results: its gradebook, and the errors of the
last `make grade` (reports/<ps>/errors.csv)."""
from __future__ import annotations

import contextlib
import csv
import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory

PathLike = str | os.PathLike  # a course folder or file, as a str or a Path

def course_folder(course: PathLike, step: str, student: str = ".", assignment: str = "") -> Path:
    """``<course>/<step>/<student>/<assignment>`` as nbgrader names it (CourseDirectory.format_path):
    ``step`` is "source", "release", "submitted", "autograded" or "feedback"; source and release
    folders have no student."""
    directory = CourseDirectory(root=str(Path(course).resolve()))
    return Path(directory.format_path(getattr(directory, f"{step}_directory"), student, assignment))


def gradebook_file(course: PathLike) -> Path:
    """The course's gradebook (CourseDirectory's db_url: ``<course>/gradebook.db``)."""
    return Path(CourseDirectory(root=str(Path(course).resolve())).db_url.removeprefix("sqlite:///"))


ERRORS = "errors.csv"  # student, graded ("no": could not be graded; "yes": graded, with a note), error


def not_graded(course: PathLike, assignment: str) -> dict[str, str]:
    """{student: reason} for the submissions of ``assignment`` that the last `make grade` could not grade."""
    path = Path(course) / "reports" / assignment / ERRORS
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["student"]: row["error"] for row in csv.DictReader(f) if row.get("graded") == "no"}


def nbgrader(course_root: PathLike, *args: str, check: bool = True) -> subprocess.CompletedProcess:
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


def problem_with(folder: PathLike, assignment: str) -> str | None:
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


def part_of(grade_id: str) -> str:
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
    def total(self) -> float:
        return sum(self.cells.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_cells.values())

    def parts(self) -> dict[str, float]:
        """{part: score}, summed over its test cells."""
        return _by_part(self.cells)

    def max_parts(self) -> dict[str, float]:
        """{part: maximum score}."""
        return _by_part(self.max_cells)

    def lost(self) -> set[str]:
        """Parts where points were lost."""
        maxima = self.max_parts()
        return {part for part, score in self.parts().items() if score < maxima[part]}

    @functools.cached_property
    def messages(self) -> dict[str, list[tuple[str, str]]]:
        """{grade_id: [(error name, message)]} of the failed test cells (the notebook is read once)."""
        return failure_messages(self.autograded) if self.autograded is not None else {}

    def failed(self) -> set[str]:
        """Test cells that failed: those that lost points, and 0-point checks that raised."""
        return {cell for cell, score in self.cells.items() if score < self.max_cells[cell]} | set(self.messages)


def failure_messages(notebook_path: PathLike) -> dict[str, list[tuple[str, str]]]:
    """{grade_id: [(error name, message)]} for the failed test cells of an autograded notebook."""
    messages = {}
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        errors = [(o.ename, o.evalue) for o in cell.get("outputs", []) if o.output_type == "error"]
        if meta.get("grade") and errors:
            messages[meta["grade_id"]] = errors
    return messages


def results(course_root: PathLike, assignment: str) -> dict[str, Result]:
    """{student: Result} for every student with an autograded submission of ``assignment``."""
    found = {}
    with Gradebook(f"sqlite:///{gradebook_file(course_root)}") as gradebook:
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
            notebook = course_folder(course_root, "autograded", student.id, assignment) / f"{assignment}.ipynb"
            found[student.id] = Result(student.id, cells, max_cells, notebook if notebook.exists() else None)
    return found
