"""Student submissions made from the course's own notebooks.

A submission is the release notebook with some answer cells filled in, the way a student
hands it in. The bug catalogs, the correct variants and the demo class are all written with
the kinds below, for every assignment:

- ``Solution()``: the model solution.
- ``Blank()``: the release notebook, untouched.
- ``Bug(name, cell, find, replace)``: the model solution with one realistic mistake.
- ``Mistakes(name, bugs)``: the model solution with several of those mistakes.
- ``Variant(name, cells)``: answer cells rewritten in another correct (or incorrect) way;
  ``rewritten(name, assignment, cell, *edits)`` makes one (a ``Rewritten``) from the solution's
  cell by small edits.
- ``RawFile(name, content)``: a file that is handed in as the notebook, whatever it holds.
- ``Edited(name, base, edit)``: another submission with its notebook changed by a function.
- ``Folder(name, files)``: several files handed in, each one of the above.
"""
import copy
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from coursekit import COURSE_ROOT
from coursekit.pipeline.course import course_folder
from coursekit.judge.solutions import answer_cells, release_notebook, source_notebook, without_markers, written_cells


# In a written answer's source, the rubric for the graders follows the model answer.
RUBRIC = "**Rubric"


def solution_answers(assignment):
    """The model solution's answer cells, as a student would write them: {grade_id: code}, and
    {grade_id: text} for the written answers (the model answer, without the rubric)."""
    notebook = nbformat.read(source_notebook(assignment), as_version=4)
    answers = {grade_id: without_markers(src) for grade_id, src in answer_cells(notebook).items()}
    answers.update({grade_id: without_markers(src).split(RUBRIC)[0].strip()
                    for grade_id, src in written_cells(notebook).items()})
    return answers


def fill(release, answers):
    """A copy of the release notebook whose answer cells hold ``answers`` ({grade_id: code or text})."""
    notebook = copy.deepcopy(release)
    unknown = set(answers) - set(answer_cells(notebook)) - set(written_cells(notebook))
    if unknown:
        raise KeyError(f"no answer cell with grade_id {sorted(unknown)}")
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


@dataclass(frozen=True)
class Solution:
    name: str = "solution"

    def answers(self, assignment):
        return solution_answers(assignment)

    def content(self, assignment, release):
        return nbformat.writes(fill(release, self.answers(assignment))).encode()


@dataclass(frozen=True)
class Blank:
    name: str = "blank"

    def content(self, assignment, release):
        return nbformat.writes(release).encode()


@dataclass(frozen=True)
class Bug(Solution):
    """The model solution with one mistake: ``find`` replaced by ``replace`` in one answer cell.

    ``also`` holds further (find, replace) pairs in the same cell, for a mistake that shows in
    more than one place. ``says`` is a phrase the failure message must contain (its hint).
    """

    name: str = ""
    cell: str = ""
    find: str = ""
    replace: str = ""
    also: tuple = ()
    says: str = ""

    def answers(self, assignment):
        answers = solution_answers(assignment)
        answers[self.cell] = self.apply(answers[self.cell])
        return answers

    def apply(self, code):
        """``code`` (the answer cell) with this mistake made."""
        for find, replace in ((self.find, self.replace), *self.also):
            if code.count(find) != 1:
                raise ValueError(f"bug {self.name!r}: {find!r} occurs {code.count(find)} times "
                                 f"in the code of cell {self.cell!r}, expected once")
            code = code.replace(find, replace)
        return code


@dataclass(frozen=True)
class Mistakes(Solution):
    """The model solution with several Bugs at once: one student's whole set of mistakes."""

    name: str = ""
    bugs: tuple = ()

    def answers(self, assignment):
        answers = solution_answers(assignment)
        for bug in self.bugs:
            answers[bug.cell] = bug.apply(answers[bug.cell])
        return answers


@dataclass(frozen=True)
class Variant(Solution):
    """The model solution with whole answer cells rewritten: {grade_id: code}."""

    name: str = ""
    cells: dict = field(default_factory=dict)

    def answers(self, assignment):
        return {**solution_answers(assignment), **self.cells}


@dataclass(frozen=True)
class Rewritten(Variant):
    """A Variant that is the model solution's code with small edits: a correct answer written a
    little differently, but no independent one (the similarity tests leave it out)."""


def rewritten(name, assignment, cell, *edits):
    """A Rewritten whose ``cell`` is the model solution's with each (find, replace) of ``edits``
    made (each ``find`` once)."""
    return Rewritten(name, {cell: Bug(name, cell, *edits[0], also=tuple(edits[1:])).apply(solution_answers(assignment)[cell])})


@dataclass(frozen=True)
class RawFile:
    """Bytes handed in under the notebook's name (e.g. a file that is not a notebook)."""

    name: str = ""
    data: bytes = b""

    def content(self, assignment, release):
        return self.data


@dataclass(frozen=True)
class Edited:
    """Another submission's notebook changed by ``edit(notebook) -> notebook`` (cells deleted,
    moved, retyped...), written in nbformat ``version``."""

    name: str = ""
    base: object = Solution()
    edit: object = None
    version: int = 4

    def content(self, assignment, release):
        notebook = nbformat.reads(self.base.content(assignment, release).decode(), as_version=4)
        if self.edit is not None:
            notebook = self.edit(notebook)
        return nbformat.writes(notebook, version=self.version).encode()


@dataclass(frozen=True)
class Folder:
    """A submission folder given file by file: ``files`` = ((filename, submission), ...)."""

    name: str = ""
    files: tuple = ()


def submit(course_root, student, assignment, submission, release=None):
    """Write ``submission`` into ``submitted/<student>/<assignment>/`` (as ``<assignment>.ipynb``)."""
    if release is None:
        own = course_folder(course_root, "release", assignment=assignment)
        release = release_notebook(assignment, course_root if own.exists() else COURSE_ROOT)
    folder = course_folder(course_root, "submitted", student, assignment)
    folder.mkdir(parents=True, exist_ok=True)
    files = submission.files if isinstance(submission, Folder) else ((f"{assignment}.ipynb", submission),)
    for filename, part in files:
        (folder / filename).write_bytes(part.content(assignment, release))
    return folder


def load_fixtures(path):
    """Import a fixture module (a bug catalog, variants, a demo class) from its file path; it
    may import the modules next to it."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"fixtures_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
