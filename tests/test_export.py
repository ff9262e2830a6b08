"""`nbgrader export` with the course's plugins (coursekit.pipeline.plugins.export), on gradebooks built
with nbgrader's API: the default's status column, and no grade that pretends to be current; the wide,
Canvas and Gradescope files' columns (checked against the formats' documented headers) and totals."""
import csv
import datetime
import subprocess
import sys

import pytest
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from traitlets import Instance
from traitlets.config import Configurable

from coursekit.pipeline.course import this_environment_first
from coursekit.pipeline.plugins.export import AWAITING, CanvasExport, CourseExport, GradescopeExport, WideExport, standing


@pytest.fixture
def gradebook(tmp_path):
    with this_environment_first(), Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gradebook:
        gradebook.update_or_create_assignment("ps1")
        gradebook.add_notebook("ps1", "ps1")
        gradebook.add_grade_cell("linear_forward", "ps1", "ps1", max_score=2, cell_type="code")
        for student in ("ada", "bob", "cy"):
            gradebook.add_student(student)
        gradebook.add_submission("ps1", "ada")  # autograded below
        gradebook.add_submission("ps1", "bob")  # never autograded (a stock autograde that failed)
        (grade,) = gradebook.find_submission("ps1", "ada").notebooks[0].grades
        grade.auto_score, grade.needs_manual_grade = 2, False  # (as autograde leaves a test cell that ran)
        gradebook.db.commit()
        yield gradebook


def _row(gradebook, student, failure=None):
    return CourseExport._row(gradebook, gradebook.find_assignment("ps1"), gradebook.find_student(student), failure)


def test_a_submission_that_could_not_be_graded_reads_not_graded_with_no_score(gradebook):
    row = _row(gradebook, "bob", "ps1.ipynb is not a notebook")
    assert row["status"] == "not graded: ps1.ipynb is not a notebook" and not row.get("score") and not row.get("raw_score")


def test_autograded_work_keeps_its_score_whatever_a_later_failure_says(gradebook):
    assert _row(gradebook, "ada")["status"] == "graded" and _row(gradebook, "ada")["score"] == 2
    assert _row(gradebook, "ada", "a later run failed")["status"] == "graded"


def test_a_student_who_handed_nothing_in_reads_not_submitted(gradebook):
    assert _row(gradebook, "cy")["status"] == "not submitted" and _row(gradebook, "cy")["score"] == 0.0


# --- the other exports: wide, Canvas, Gradescope (coursekit.pipeline.plugins.export, docs/exports.md) ----------------

DUE = datetime.datetime(2025, 3, 1, 12, 0)


class _Course(Configurable):
    """What `nbgrader export` is to its plugin: the owner of a CourseDirectory."""

    coursedir = Instance(CourseDirectory)


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """A graded class in a gradebook built with nbgrader's API: ps1 has a part "linear" (two test cells, 1 + 2
    points) and a part "why" (a written answer, 3 points); ps2 one test cell (4 points).

    - ada: everything graded, her written answer by a TA (2 of 3, and 0.5 extra credit), ps2 4 of 4;
    - bob: autograded (3 of 3), his written answer waits for a TA (the 3 points still to grade);
    - cy: handed nothing in;
    - dee: `make grade` could not grade her notebook (reports/ps1/errors.csv says why);
    - eve: graded by hand and autograded, 5 hours late, with a late penalty of 1 point.
    """
    tmp_path = tmp_path_factory.mktemp("term")  # (the tests only read it)
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with this_environment_first(), Gradebook(url) as gradebook:
        gradebook.update_or_create_assignment("ps1", duedate=DUE)
        gradebook.update_or_create_assignment("ps2", duedate=DUE + datetime.timedelta(days=7))
        gradebook.add_notebook("ps1", "ps1")
        gradebook.add_grade_cell("linear_forward", "ps1", "ps1", max_score=1, cell_type="code")
        gradebook.add_grade_cell("linear_backward", "ps1", "ps1", max_score=2, cell_type="code")
        gradebook.add_grade_cell("why_written", "ps1", "ps1", max_score=3, cell_type="markdown")
        gradebook.add_solution_cell("why_written", "ps1", "ps1")
        gradebook.add_notebook("ps2", "ps2")
        gradebook.add_grade_cell("sgd_tests", "ps2", "ps2", max_score=4, cell_type="code")
        people = {"ada": ("Ada", "Lovelace", "ada@uni.edu", "101"), "bob": ("Bob", "Babbage", "bob@uni.edu", "102"),
                  "cy": ("Cy", "Young", "cy@uni.edu", "103"), "dee": ("Dee", "Dee", "dee@uni.edu", None),
                  "eve": ("Eve", "Evans", "eve@uni.edu", "105")}
        for student, (first, last, email, lms) in people.items():
            gradebook.add_student(student, first_name=first, last_name=last, email=email, lms_user_id=lms)
        on_time, late = DUE - datetime.timedelta(hours=1), DUE + datetime.timedelta(hours=5, minutes=3, seconds=7)
        for student, when in (("ada", on_time), ("bob", on_time), ("dee", on_time), ("eve", late)):
            gradebook.add_submission("ps1", student, timestamp=when)
        gradebook.add_submission("ps2", "ada", timestamp=on_time)

        def grade(student, assignment, cell, auto=None, manual=None, extra=None, pending=False):
            (found,) = [g for g in gradebook.find_submission(assignment, student).notebooks[0].grades if g.name == cell]
            found.auto_score, found.manual_score, found.extra_credit, found.needs_manual_grade = auto, manual, extra, pending

        for student in ("ada", "bob", "eve"):
            grade(student, "ps1", "linear_forward", auto=1)
            grade(student, "ps1", "linear_backward", auto=2 if student != "eve" else 0)
        grade("ada", "ps1", "why_written", manual=2, extra=0.5)
        grade("bob", "ps1", "why_written", pending=True)
        grade("eve", "ps1", "why_written", manual=3)
        grade("dee", "ps1", "why_written", pending=True)  # (her test cells: no autograder score)
        grade("ada", "ps2", "sgd_tests", auto=4)
        gradebook.find_submission("ps1", "eve").notebooks[0].late_submission_penalty = 1.0
        gradebook.db.commit()
        (tmp_path / "reports" / "ps1").mkdir(parents=True)
        (tmp_path / "reports" / "ps1" / "errors.csv").write_text("student,graded,error\ndee,no,ps1.ipynb is not a notebook\n")
        yield gradebook, tmp_path


def _export(term, plugin, **options):
    gradebook, course = term
    dest = course / f"{plugin.__name__}.csv"
    plugin(parent=_Course(coursedir=CourseDirectory(root=str(course))), to=str(dest), **options).export(gradebook)
    with open(dest, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_the_wide_csv_has_a_column_per_part_and_per_cell_and_every_kind_of_point(term):
    header, *rows = _export(term, WideExport, assignment=["ps1"])
    assert header == ["student_id", "last_name", "first_name", "email", "lms_user_id",
                      "ps1 status", "ps1 note", "ps1 submitted", "ps1 part linear", "ps1 part why",
                      "ps1 cell linear_forward", "ps1 cell linear_backward", "ps1 cell why_written",
                      "ps1 autograded", "ps1 by hand", "ps1 extra credit", "ps1 to grade by hand", "ps1 late penalty",
                      "ps1 total", "ps1 max"]
    rows = {row[0]: dict(zip(header, row)) for row in rows}
    assert list(rows) == ["bob", "dee", "eve", "ada", "cy"]  # nbgrader's order: by last name
    assert rows["ada"] == {**rows["ada"], "last_name": "Lovelace", "lms_user_id": "101", "ps1 status": "graded", "ps1 note": "",
                           "ps1 submitted": "2025-03-01 11:00:00", "ps1 part linear": "3", "ps1 part why": "2.5",
                           "ps1 cell linear_forward": "1", "ps1 cell linear_backward": "2", "ps1 cell why_written": "2.5",
                           "ps1 autograded": "3", "ps1 by hand": "2", "ps1 extra credit": "0.5", "ps1 to grade by hand": "0",
                           "ps1 late penalty": "0", "ps1 total": "5.5", "ps1 max": "6"}
    assert (rows["eve"]["ps1 late penalty"], rows["eve"]["ps1 total"]) == ("1", "3")  # 1 + 0 + 3, minus 1
    assert [rows["dee"][c] for c in ("ps1 status", "ps1 note", "ps1 total", "ps1 autograded")] == \
        ["not graded", "ps1.ipynb is not a notebook", "", ""]
    assert [rows["cy"][c] for c in ("ps1 status", "ps1 note", "ps1 total")] == ["not graded", "not submitted", "0"]


def test_a_student_with_answers_still_to_grade_by_hand_reads_awaiting_hand_grading(term):
    header, *rows = _export(term, WideExport, assignment=["ps1"])
    bob = dict(zip(header, next(row for row in rows if row[0] == "bob")))
    assert bob["ps1 status"] == "awaiting hand grading"
    assert (bob["ps1 cell why_written"], bob["ps1 part why"], bob["ps1 to grade by hand"], bob["ps1 total"]) == ("", "", "3", "3")
    gradebook, _ = term
    assert standing(gradebook, gradebook.find_assignment("ps1"), gradebook.find_student("bob")).status == AWAITING


def test_the_wide_csvs_totals_are_the_gradebooks(term):
    """Every total, and every sum of the parts, cells and kinds of points, is nbgrader's score minus its late penalty."""
    gradebook, _ = term
    header, *rows = _export(term, WideExport)
    assert sum(column.endswith(" total") for column in header) == 2, "ps1 and ps2, side by side"
    checked = 0
    for row in rows:
        row = dict(zip(header, row))
        for assignment in ("ps1", "ps2"):
            try:
                submission = gradebook.find_submission(assignment, row["student_id"])
            except MissingEntry:
                assert row[f"{assignment} total"] == "0"
                continue
            if row[f"{assignment} status"] == "not graded":
                continue  # dee: no total (test_the_wide_csv_has_...)
            expected = max(0.0, submission.score - submission.late_submission_penalty)
            assert float(row[f"{assignment} total"]) == pytest.approx(expected), (row["student_id"], assignment)
            for prefix in (f"{assignment} part ", f"{assignment} cell "):
                summed = sum(float(value or 0) for column, value in row.items() if column.startswith(prefix))
                assert summed == pytest.approx(submission.score), (row["student_id"], prefix)
            kinds = sum(float(row[f"{assignment} {kind}"]) for kind in ("autograded", "by hand", "extra credit"))
            assert kinds - float(row[f"{assignment} late penalty"]) == pytest.approx(expected)
            checked += 1
    assert checked == 4  # ada's ps1 and ps2, bob's and eve's ps1


def test_the_canvas_csv_has_the_documented_header_and_points_possible_row(term):
    # Instructure, "How do I import grades in the Gradebook?":
    # https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807
    # (https://community.instructure.com/en/kb/articles/660862-how-do-i-import-grades-in-the-gradebook): the student columns
    # of Canvas's gradebook export, then a column per assignment, "Name (id)" to update that assignment; a "Points Possible" row.
    documented = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    header, possible, *rows = _export(term, CanvasExport, assignment_ids={"ps1": "4711"})
    assert header == documented + ["ps1 (4711)", "ps2"]
    assert possible == ["Points Possible", "", "", "", "", "6", "4"]
    rows = {row[3]: row for row in rows}  # SIS Login ID: the nbgrader id
    assert rows["ada"] == ["Lovelace, Ada", "101", "", "ada", "", "5.5", "4"]
    assert rows["eve"][5] == "3" and rows["cy"][5:] == ["0", "0"]  # late: after the penalty; nothing handed in: 0
    assert rows["bob"][5] == "" and rows["dee"][5] == "", "no partial grade while a TA grades, none when autograding failed"
    assert rows["dee"][:2] == ["Dee, Dee", ""]


def test_the_gradescope_csv_has_gradescopes_columns(term):
    # Gradescope's roster upload (https://help.gradescope.com/article/w59nl02vyt-instructor-course-add-members): First Name,
    # Last Name, Email (required), SID; its grade export: per assignment "<a>", "<a> - Max Points", "<a> - Submission Time",
    # "<a> - Lateness (H:M:S)", and "Total Lateness (H:M:S)" (docs/exports.md).
    documented = ["First Name", "Last Name", "SID", "Email", "Sections"]
    header, *rows = _export(term, GradescopeExport, assignment=["ps1"])
    assert header == documented + ["ps1", "ps1 - Max Points", "ps1 - Submission Time", "ps1 - Lateness (H:M:S)", "Total Lateness (H:M:S)"]
    rows = {row[2]: row for row in rows}
    assert rows["ada"] == ["Ada", "Lovelace", "ada", "ada@uni.edu", "", "5.5", "6", "2025-03-01 11:00:00 +0000", "00:00:00", "00:00:00"]
    assert rows["eve"][5:] == ["3", "6", "2025-03-01 17:03:07 +0000", "05:03:07", "05:03:07"]
    assert rows["bob"][5] == "" and rows["cy"][5:8] == ["0", "6", ""]


def test_nbgrader_export_takes_each_exporter(term):
    """Through nbgrader's own command: `nbgrader export --exporter=<class> --assignment=... --to=...`."""
    _, course = term
    for plugin, first in ((WideExport, "student_id"), (CanvasExport, "Student"), (GradescopeExport, "First Name")):
        dest = course / f"{plugin.__name__}.cli.csv"
        result = subprocess.run([sys.executable, "-m", "nbgrader", "export", f"--exporter={plugin.__module__}.{plugin.__name__}",
                                 f"--db=sqlite:///{course / 'gradebook.db'}", "--assignment=ps1", f"--to={dest}"],
                                cwd=course, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        with open(dest, newline="") as f:
            header = next(csv.reader(f))
        assert header[0] == first and not any(column.startswith("ps2") for column in header), header
    assert "awaiting hand grading, left without a grade: bob" in result.stderr  # the LMS files say whose grade is left out
