"""``nbgrader export``'s plugins: the course's default (``c.ExportApp.plugin_class`` in nbgrader_config.py),
and the others, chosen with ``--exporter`` (docs/exports.md has every column of each, and where each
format is documented):

- ``CourseExport`` (the default): grades.csv, nbgrader's long format (a row per student per
  assignment) with a status column.
- ``WideExport``: grades_wide.csv, a row per student: per assignment, a column per graded cell and per
  part, autograded and hand-graded points, the late penalty, the total and a status.
- ``CanvasExport``: grades_canvas.csv, for Canvas's gradebook import.
- ``GradescopeExport``: grades_gradescope.csv, in the layout of Gradescope's grade export and roster.

    nbgrader export --exporter=coursekit.pipeline.plugins.export.CanvasExport [--assignment=ps1] [--to=canvas.csv]

or ``make export FORMAT=canvas [A=ps1]``. Every one of them counts points as nbgrader does: a
submission's total is ``Gradebook.find_submission(...).score`` minus its late penalty, at least 0.
"""
from __future__ import annotations

import csv
import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from nbgrader.api import Assignment, Gradebook, MissingEntry, Student
from nbgrader.plugins import CsvExportPlugin, ExportPlugin
from traitlets import Dict, Enum, Unicode

from coursekit.pipeline.gradebook import score_less_penalty, waiting_for_a_ta
from coursekit.pipeline.results import part_of

GRADED = "graded"
AWAITING = "awaiting hand grading"  # a cell waits for a TA: a written answer, or one the autograder could not score
NOT_GRADED = "not graded"  # not submitted, or autograding failed: the note says which


class CourseExport(CsvExportPlugin):
    """nbgrader's CSV export (``nbgrader export``), with a last column, ``status``: "graded",
    "not submitted", or "not graded: <reason>" for a submission that the last `make grade` could
    not grade (its scores are left empty, not 0 as if it were blank)."""

    COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
               "raw_score", "late_submission_penalty", "score", "max_score", "status"]

    def export(self, gradebook: Gradebook) -> None:
        from coursekit.pipeline.gradebook import not_graded

        students, assignments = {str(s) for s in self.student}, {str(a) for a in self.assignment}
        with open(self.to or "grades.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS, lineterminator="\n")
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                failed = not_graded(self.parent.coursedir.root, assignment.name)
                for student in gradebook.students:
                    if not students or student.id in students:
                        writer.writerow(self._row(gradebook, assignment, student, failed.get(student.id)))

    @staticmethod
    def _row(gradebook, assignment, student, failure):
        row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
               "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
               "max_score": assignment.max_score, "timestamp": "", "status": "not submitted"}
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            submission = None
        if failure is not None and (submission is None or all(grade.auto_score is None for notebook in submission.notebooks
                                                              for grade in notebook.grades)):
            row["status"] = f"not graded: {failure}"  # (what a TA graded by hand stays in the gradebook)
        elif submission is not None:
            row.update(timestamp=submission.timestamp, raw_score=submission.score,
                       late_submission_penalty=submission.late_submission_penalty or 0.0,
                       score=score_less_penalty(submission), status=AWAITING if waiting_for_a_ta(submission) else "graded")
        else:
            row.update(raw_score=0.0, late_submission_penalty=0.0, score=0.0)
        return {key: "" if value is None else value for key, value in row.items()}


# --- one student's standing on one assignment, as every export but the default reads it ---------------

@dataclass(frozen=True)
class Cell:
    """A graded cell of an assignment, in the order of its notebook: ``key`` names its column
    (the grade_id; ``<notebook>/<grade_id>`` when the assignment has several notebooks)."""

    key: str
    part: str  # results.part_of: the notebook's section it grades
    max_score: float


@dataclass
class Standing:
    """One student's grades on one assignment, from nbgrader's gradebook.

    - status: GRADED, AWAITING (a cell waits for a TA) or NOT_GRADED (``note`` says why: "not
      submitted", or why autograding failed).
    - cells: {key: points as nbgrader counts them (the TA's score if there is one, else the
      autograder's, plus extra credit)}, None for a cell that has no score yet.
    - autograded, by_hand, extra_credit: the points of cells the autograder scored (and no TA
      rescored), the points TAs gave, their extra credit; they add up to nbgrader's raw score.
    - to_grade: the points of the cells still waiting for a TA.
    - total: nbgrader's score, ``max(0, raw - late_penalty)``; 0 when nothing was submitted (as
      nbgrader's export has it), None when autograding failed.
    """

    status: str
    note: str = ""
    timestamp: datetime.datetime | None = None
    seconds_late: float = 0.0
    cells: dict[str, float | None] = field(default_factory=dict)
    autograded: float = 0.0
    by_hand: float = 0.0
    extra_credit: float = 0.0
    to_grade: float = 0.0
    late_penalty: float = 0.0
    total: float | None = None

    @property
    def raw(self) -> float:
        return self.autograded + self.by_hand + self.extra_credit

    def parts(self, cells: list[Cell]) -> dict[str, float | None]:
        """{part: points of its scored cells}, None for a part with no scored cell."""
        parts: dict[str, float | None] = {}
        for cell in cells:
            score = self.cells.get(cell.key)
            parts.setdefault(cell.part, None)
            if score is not None:
                parts[cell.part] = (parts[cell.part] or 0.0) + score
        return parts

    def lms_score(self) -> float | None:
        """What an LMS gets: the total when graded, 0 when nothing was submitted (as nbgrader's own export
        has it), nothing when a TA still has to grade or autograding failed (not a partial grade)."""
        if self.status == GRADED or self.note == "not submitted":
            return self.total
        return None


def cells_of(assignment: Assignment) -> list[Cell]:
    """The graded cells (grade and task cells) of an assignment, notebook by notebook."""
    several = len(assignment.notebooks) > 1
    cells = []
    for notebook in assignment.notebooks:
        for cell in [*notebook.grade_cells, *notebook.task_cells]:
            prefix = f"{notebook.name}/" if several else ""
            cells.append(Cell(prefix + cell.name, prefix + part_of(cell.name), cell.max_score))
    return cells


def standing(gradebook: Gradebook, assignment: Assignment, student: Student, failure: str | None = None) -> Standing:
    """``student``'s Standing on ``assignment``; ``failure``: why the last `make grade` could not grade
    their submission (coursekit.pipeline.gradebook.not_graded), if it could not."""
    try:
        submission = gradebook.find_submission(assignment.name, student.id)
    except MissingEntry:
        return Standing(NOT_GRADED, "not submitted", total=0.0)
    several = len(assignment.notebooks) > 1
    grades = [(f"{notebook.name}/" if several else "", grade) for notebook in submission.notebooks for grade in notebook.grades]
    code = [grade for _, grade in grades if grade.cell_type == "code"]
    if code and all(grade.auto_score is None for grade in code):
        # no autograder score at all (as coursekit.pipeline.gradebook.results reads it): what a TA graded stays in the gradebook
        return Standing(NOT_GRADED, failure or "not autograded", submission.timestamp)
    found = Standing(GRADED, timestamp=submission.timestamp, seconds_late=submission.total_seconds_late,
                     late_penalty=submission.late_submission_penalty or 0.0)
    for prefix, grade in grades:
        if grade.needs_manual_grade:
            found.to_grade += grade.max_score
        # nbgrader's Grade.score: the TA's score if any, else the autograder's, plus extra credit; 0 if neither
        if grade.manual_score is not None:
            found.by_hand += grade.manual_score
        elif grade.auto_score is not None:
            found.autograded += grade.auto_score
        else:
            found.cells[prefix + grade.name] = None
            continue
        found.extra_credit += grade.extra_credit or 0.0
        found.cells[prefix + grade.name] = (grade.manual_score if grade.manual_score is not None else grade.auto_score) \
            + (grade.extra_credit or 0.0)
    if waiting_for_a_ta(submission):
        found.status = AWAITING
    found.total = max(0.0, found.raw - found.late_penalty)
    return found


def points(value: float | None) -> str:
    """A number of points as the exports write it: "" for none, "2" rather than "2.0"."""
    return "" if value is None else format(round(value, 6), "g")


class _Export(ExportPlugin):
    """What the course's other exports share: the assignments and students they cover (nbgrader's
    ``--assignment`` and ``--student``), every standing, a CSV file."""

    default_file = "grades.csv"

    def export(self, gradebook: Gradebook) -> None:
        from coursekit.pipeline.gradebook import not_graded

        wanted, chosen = {str(a) for a in self.assignment}, {str(s) for s in self.student}
        assignments = [a for a in gradebook.assignments if not wanted or a.name in wanted]
        students = [s for s in gradebook.students if not chosen or s.id in chosen]
        course = self.parent.coursedir.root if self.parent is not None else "."
        standings = {}
        for assignment in assignments:
            failed = not_graded(course, assignment.name)
            standings[assignment.name] = {s.id: standing(gradebook, assignment, s, failed.get(s.id)) for s in students}
        dest = self.to or self.default_file
        self.log.info("Exporting grades to %s", dest)
        with open(dest, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(self.rows(assignments, students, standings))
        if self.for_an_lms:  # the LMS files leave out a score that is not final: say whose
            for assignment in assignments:
                for status in (AWAITING, NOT_GRADED):
                    names = [s.id for s in students if standings[assignment.name][s.id].status == status
                             and standings[assignment.name][s.id].lms_score() is None]
                    if names:
                        self.log.warning("%s: %d %s, left without a grade: %s", assignment.name, len(names), status, ", ".join(names))

    for_an_lms = False

    def rows(self, assignments: list[Assignment], students: list[Student],
             standings: dict[str, dict[str, Standing]]) -> Iterable[list[str]]:
        raise NotImplementedError


class WideExport(_Export):
    """grades_wide.csv: a row per student, with ``student_id, last_name, first_name, email, lms_user_id``
    (nbgrader's gradebook) and, for each assignment (``<a>``: its name):

    - ``<a> status``: "graded", "awaiting hand grading" or "not graded"; ``<a> note``: why not graded
      ("not submitted", or why autograding failed);
    - ``<a> submitted``: the submission's time (UTC, as nbgrader records it);
    - ``<a> part <part>``: the points of each part (the notebook's sections: the cells whose grade_id
      starts with ``<part>_``), then ``<a> cell <grade_id>``: each graded cell's points (empty: not
      scored yet), as nbgrader counts them (the TA's score over the autograder's, plus extra credit);
    - ``<a> autograded``, ``<a> by hand``, ``<a> extra credit``: where the points come from;
      ``<a> to grade by hand``: the points of the cells still waiting for a TA;
    - ``<a> late penalty``, ``<a> total`` (nbgrader's score: raw minus the penalty, at least 0; 0 when
      nothing was submitted, empty when autograding failed) and ``<a> max``.
    """

    default_file = "grades_wide.csv"
    IDENTITY = ["student_id", "last_name", "first_name", "email", "lms_user_id"]

    @staticmethod
    def columns(assignment: Assignment, cells: list[Cell]) -> list[str]:
        a = assignment.name
        parts = list(dict.fromkeys(cell.part for cell in cells))
        return [f"{a} status", f"{a} note", f"{a} submitted", *(f"{a} part {p}" for p in parts), *(f"{a} cell {c.key}" for c in cells),
                *(f"{a} {kind}" for kind in ("autograded", "by hand", "extra credit", "to grade by hand", "late penalty", "total", "max"))]

    @staticmethod
    def values(assignment: Assignment, cells: list[Cell], found: Standing) -> list[str]:
        graded = found.status != NOT_GRADED
        return [found.status, found.note, "" if found.timestamp is None else found.timestamp.isoformat(sep=" "),
                *(points(score) for score in found.parts(cells).values()), *(points(found.cells.get(c.key)) for c in cells),
                *(points(value) if graded else "" for value in (found.autograded, found.by_hand, found.extra_credit, found.to_grade,
                                                                 found.late_penalty)),
                points(found.total), points(assignment.max_score)]

    def rows(self, assignments, students, standings):
        cells = {assignment.name: cells_of(assignment) for assignment in assignments}
        yield self.IDENTITY + [column for a in assignments for column in self.columns(a, cells[a.name])]
        for student in students:
            yield [student.id, student.last_name or "", student.first_name or "", student.email or "", student.lms_user_id or "",
                   *(value for a in assignments for value in self.values(a, cells[a.name], standings[a.name][student.id]))]


def _field(student: Student, name: str) -> str:
    return "" if not name else str(getattr(student, name) or "")


class CanvasExport(_Export):
    """grades_canvas.csv, for Canvas's gradebook import (Grades > Import), in the layout of its gradebook
    export: the header ``Student, ID, SIS User ID, SIS Login ID, Section``, then a column per assignment,
    named ``<assignment> (<Canvas assignment id>)`` when ``CanvasExport.assignment_ids`` gives it
    (Canvas updates that assignment) or ``<assignment>`` (Canvas offers to create it); a second row,
    ``Points Possible``, with each assignment's maximum; then a row per student:

    - Student: "Last, First" (Canvas's sortable name), or the nbgrader id when the gradebook has no name;
    - ID: the Canvas user id, nbgrader's ``lms_user_id`` (Canvas matches a row by it first);
    - SIS User ID, SIS Login ID: the gradebook fields that ``sis_user_id`` ("" by default) and
      ``sis_login_id`` ("id": the nbgrader id, a hub login) name (Canvas matches by them next);
    - Section: ``CanvasExport.section`` ("" by default; Canvas ignores it on import);
    - each assignment's score: nbgrader's total (after the late penalty), 0 if nothing was submitted,
      empty (no grade: Canvas leaves the cell alone) while a TA still has to grade or when autograding
      failed: the export names those students.
    """

    # The documented import (Instructure, "How do I import grades in the Gradebook?",
    # https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807, now
    # https://community.instructure.com/en/kb/articles/660862-how-do-i-import-grades-in-the-gradebook): the columns
    # Student Name, Student ID, SIS User ID, SIS Login ID and Section, then one per assignment, "Name (id)" to update
    # one; a header without an id creates an assignment. Canvas's importer (canvas-lms, app/models/gradebook_importer.rb)
    # reads a header whose first cells match /Student/ and /ID/ and whose student columns end with /Section/, and a
    # row whose first cell matches /Points Possible/ as the assignments' maxima.
    HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    POINTS_POSSIBLE = "Points Possible"
    default_file = "grades_canvas.csv"
    for_an_lms = True

    assignment_ids = Dict(Unicode(), help="{nbgrader assignment: Canvas assignment id}: with it, the import updates "
                          "that Canvas assignment instead of creating one").tag(config=True)
    sis_user_id = Enum(["", "id", "email", "lms_user_id"], "", help="the gradebook field in the SIS User ID column").tag(config=True)
    sis_login_id = Enum(["", "id", "email", "lms_user_id"], "id", help="the gradebook field in the SIS Login ID column").tag(config=True)
    section = Unicode("", help="the Section column").tag(config=True)

    def column(self, assignment: Assignment) -> str:
        canvas_id = self.assignment_ids.get(assignment.name)
        return f"{assignment.name} ({canvas_id})" if canvas_id else assignment.name

    def rows(self, assignments, students, standings):
        yield self.HEADER + [self.column(a) for a in assignments]
        yield [self.POINTS_POSSIBLE, "", "", "", ""] + [points(a.max_score) for a in assignments]
        for student in students:
            name = ", ".join(n for n in (student.last_name, student.first_name) if n) or student.id
            yield [name, student.lms_user_id or "", _field(student, self.sis_user_id), _field(student, self.sis_login_id), self.section,
                   *(points(standings[a.name][student.id].lms_score()) for a in assignments)]


def lateness(seconds: float) -> str:
    """Seconds late as Gradescope writes lateness: H:M:S, "00:00:00" when on time."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


class GradescopeExport(_Export):
    """grades_gradescope.csv, in the layout of Gradescope's grade export, whose first columns are those of
    its roster upload: ``First Name, Last Name, SID, Email, Sections``, then for each assignment
    ``<a>`` (nbgrader's total, after the late penalty: 0 if nothing was submitted, empty while a TA
    still has to grade or when autograding failed), ``<a> - Max Points``, ``<a> - Submission Time`` (UTC) and
    ``<a> - Lateness (H:M:S)`` (past the due date and any extension), and last ``Total Lateness (H:M:S)``.
    SID is the gradebook field that ``GradescopeExport.sid`` names ("id" by default), Email nbgrader's email
    (Gradescope matches students by it), Sections ``GradescopeExport.sections``.
    """

    # Gradescope's roster upload (https://help.gradescope.com/article/w59nl02vyt-instructor-course-add-members, now
    # https://guides.gradescope.com/hc/en-us/articles/21926598776333): a header row; names in "First Name" and "Last Name"
    # (or one full-name column); "Email", unique per student and required; "SID" and a section column optional; columns
    # are matched to Gradescope's fields on upload. Its grade export (Assignments > Download Grades; Gradescope publishes
    # no specification of it) has First Name, Last Name, SID, Email, Sections, then per assignment "<a>", "<a> - Max
    # Points", "<a> - Submission Time" and "<a> - Lateness (H:M:S)", and "Total Lateness (H:M:S)": the columns that tools
    # reading it rely on (e.g. cs161-staff/grades-py's README).
    HEADER = ["First Name", "Last Name", "SID", "Email", "Sections"]
    SUFFIXES = ["", " - Max Points", " - Submission Time", " - Lateness (H:M:S)"]
    TOTAL_LATENESS = "Total Lateness (H:M:S)"
    default_file = "grades_gradescope.csv"
    for_an_lms = True

    sid = Enum(["", "id", "email", "lms_user_id"], "id", help="the gradebook field in the SID column").tag(config=True)
    sections = Unicode("", help="the Sections column").tag(config=True)

    def rows(self, assignments, students, standings):
        yield self.HEADER + [a.name + suffix for a in assignments for suffix in self.SUFFIXES] + [self.TOTAL_LATENESS]
        for student in students:
            row = [student.first_name or "", student.last_name or "", _field(student, self.sid), student.email or "", self.sections]
            late = 0.0
            for assignment in assignments:
                found = standings[assignment.name][student.id]
                row += [points(found.lms_score()), points(assignment.max_score),
                        "" if found.timestamp is None else found.timestamp.strftime("%Y-%m-%d %H:%M:%S +0000"),
                        lateness(found.seconds_late)]
                late += found.seconds_late
            yield row + [lateness(late)]

