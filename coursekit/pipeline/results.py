"""What grading produces, as one set of types from the worker to the merge, the report and the regrade record.

- A worker grades one submission in a scratch course and hands back an ``Outcome``: its cells as
  nbgrader's autograder scored them (``CellGrade``, ``CellComment``) and its files. What the TAs
  graded by hand goes the other way, to the worker, as ``KeptByHand`` (``HandGrade``, ``CellComment``).
- The merge writes each Outcome into the course's gradebook (coursekit.pipeline.grade_class.merge).
- The report, the regrade record and the tests read the gradebook back as ``StudentResult``: a
  student's score per test cell, with the failure messages of their autograded notebook
  (coursekit.pipeline.gradebook.results).
- The regrade record keeps, per run, each student's test cells as ``RecordedCell`` (score and
  message) in a ``Run``; what differs between two runs is a list of ``Change`` (coursekit.pipeline.regrade).
- The export (``nbgrader export``, plugins.export) reads nbgrader's gradebook itself, as stock
  nbgrader does, and which submissions could not be graded from coursekit.pipeline.gradebook.not_graded.

Everything that crosses to a worker (a process or a Dask worker) is plain data: dataclasses of
strings, numbers, datetimes and bytes, which pickle.
"""
from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat


def part_of(grade_id: str) -> str:
    """The part a test cell grades: its grade_id starts with the answer cell's id ("linear_forward" -> "linear")."""
    return grade_id.split("_")[0]


def _by_part(scores: dict[str, float]) -> dict[str, float]:
    """{grade_id: points} summed into {part: points}, parts in the order of their first cell."""
    totals: dict[str, float] = {}
    for grade_id, points in scores.items():
        totals[part_of(grade_id)] = totals.get(part_of(grade_id), 0) + points
    return totals


@dataclass(frozen=True)
class CellGrade:
    """A graded cell of a submission as the autograder left it in a gradebook: nbgrader's Grade
    record of that cell, without what a TA graded by hand."""

    notebook: str
    cell: str  # the cell's grade_id
    auto_score: float | None  # None: the autograder does not score it (a written answer)
    needs_manual_grade: bool


@dataclass(frozen=True)
class CellComment:
    """A comment on a cell of a submission (nbgrader's Comment record): the autograder's, from a
    worker, or a TA's, kept by hand."""

    notebook: str
    cell: str
    comment: str | None


@dataclass(frozen=True)
class HandGrade:
    """What a TA graded by hand in a cell: kept when the submission is graded again."""

    notebook: str
    cell: str
    manual_score: float | None
    extra_credit: float | None


@dataclass
class KeptByHand:
    """What grading must keep of a student's earlier grading, handed to the worker so that its
    feedback and scores are made with it, as in stock nbgrader: the extension, the TAs' grades and
    extra credit, their comments."""

    extension_seconds: float | None = None
    grades: list[HandGrade] = field(default_factory=list)
    comments: list[CellComment] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.extension_seconds or self.grades or self.comments)


@dataclass
class Outcome:
    """One student's grading, as a worker hands it to the merge and the report.

    - ok: graded; else ``error`` says why not (a broken file, autograding failed).
    - note: what a graded submission's report line says besides its scores ("" when nothing).
    - timestamp, late_penalty ({notebook: points}): nbgrader's submission record.
    - grades, comments: every graded cell's autograder score and comment.
    - autograded, feedback ({path: bytes}): the files of autograded/ and feedback/.
    - sandbox: the sandbox mode its kernel ran in (coursekit.kernel.sandbox.describe), "" if none started.
    """

    student: str
    ok: bool = False
    error: str = ""
    note: str = ""
    timestamp: datetime.datetime | None = None
    late_penalty: dict[str, float | None] = field(default_factory=dict)
    grades: list[CellGrade] = field(default_factory=list)
    comments: list[CellComment] = field(default_factory=list)
    autograded: dict[str, bytes] = field(default_factory=dict)
    feedback: dict[str, bytes] = field(default_factory=dict)
    sandbox: str = ""

    def needs_manual_grading(self) -> bool:
        """Whether a cell of it waits for a TA (a written answer, or a cell the autograder could not score)."""
        return any(grade.needs_manual_grade for grade in self.grades)


@dataclass
class StudentResult:
    """One student's autograded scores, as the course's gradebook has them after the merge."""

    student: str
    cells: dict[str, float]  # grade_id -> score (a test cell that the notebook lacks counts 0)
    max_cells: dict[str, float]  # grade_id -> max score
    autograded: Path | None = None  # the autograded notebook
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

    def recorded(self) -> dict[str, RecordedCell]:
        """{grade_id: RecordedCell}: each test cell's score and first failure message, as a run's record keeps them."""
        return {cell: RecordedCell(score, self.messages.get(cell, [("", "")])[0][1]) for cell, score in self.cells.items()}


def failure_messages(notebook_path: str | os.PathLike) -> dict[str, list[tuple[str, str]]]:
    """{grade_id: [(error name, message)]} for the failed test cells of an autograded notebook."""
    messages = {}
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        errors = [(o.ename, o.evalue) for o in cell.get("outputs", []) if o.output_type == "error"]
        if meta.get("grade") and errors:
            messages[meta["grade_id"]] = errors
    return messages


@dataclass(frozen=True)
class RecordedCell:
    """A test cell in a run's record: its score (None: not graded in that run) and its first
    failure message ("" when it passed). On disk, ``[score, message]``."""

    score: float | None
    message: str = ""

    def points(self) -> str:
        """The score as the changes show it: "-" when not graded."""
        return "-" if self.score is None else f"{self.score:g}"

    def to_json(self) -> list:
        return [self.score, self.message]

    @classmethod
    def from_json(cls, value: list) -> RecordedCell:
        score, message = value
        return cls(score, message)


NOT_GRADED = RecordedCell(None, "")  # a cell (or a student) absent from a run

# {student: {grade_id: RecordedCell}}: every graded student's test cells in one run
Snapshot = dict[str, dict[str, RecordedCell]]


@dataclass(frozen=True)
class Run:
    """One `make grade` run's record (reports/<assignment>/runs/<when>.json): when it ran, the
    version of the tests that gave its scores (regrade.tests_version) and every student's cells.

    The file is ``{"when": ..., "tests": ..., "students": {student: {cell: [score, message]}}}``,
    the shape every run has been recorded in since runs were first recorded: ``from_json`` reads
    them all."""

    when: str
    tests: str
    students: Snapshot

    def to_json(self) -> dict[str, Any]:
        return {"when": self.when, "tests": self.tests,
                "students": {student: {cell: recorded.to_json() for cell, recorded in cells.items()}
                             for student, cells in self.students.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(data["when"], data["tests"], snapshot_from_json(data["students"]))


def snapshot_from_json(students: dict[str, dict[str, list]]) -> Snapshot:
    """A Snapshot from a record's ``students``: {student: {cell: [score, message]}}."""
    return {student: {cell: RecordedCell.from_json(value) for cell, value in cells.items()}
            for student, cells in students.items()}


@dataclass(frozen=True)
class Change:
    """A test cell whose score or message differs between two runs: what it ``was`` and what it is
    ``now`` (NOT_GRADED on the side where the student or the cell was not graded)."""

    student: str
    cell: str
    was: RecordedCell
    now: RecordedCell
