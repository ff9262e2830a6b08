"""The course's whole workflow as nbgrader documents it, on a temporary exchange, with `make
grade` in the place of `nbgrader autograde` + `generate_feedback`, and stock nbgrader as the control.

nbgrader's exchange names a student by the OS user of the process. The grading machine's Python
is reachable by root only, so each student's commands run as root under the student's name
(nbgrader.utils.get_osusername answers it): the same files and the same exchange steps, without
the exchange's per-user file permissions.
"""
import csv
import datetime
import shutil
import subprocess
import sys
import time

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.utils import parse_utc

from coursekit import COURSE_ROOT
from coursekit.pipeline.grading import _environment, nbgrader
from coursekit.tools.scratch import copy_course
from coursekit.tools.submissions import Bug, Solution

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

AS_STUDENT = ("import sys, nbgrader.utils; student = sys.argv.pop(1); "
              "nbgrader.utils.get_osusername = lambda: student; "
              "from nbgrader.apps.nbgraderapp import main; main()")
# alice and carol submit before the due date, bob after it; carol's Linear.backward has a bug
STUDENTS = {"alice": Solution(),
            "carol": Bug("linear_grad_biases_mean", "linear", "grad_output.sum(axis=0)", "grad_output.mean(axis=0)")}


def as_student(student, home, *args):
    """`nbgrader ARGS` run by ``student`` in their home folder, which holds nbgrader's cache of
    their submissions (checked: it must exit 0)."""
    result = subprocess.run([sys.executable, "-c", AS_STUDENT, student, *args], cwd=home,
                            env={**_environment(), "HOME": str(home)}, capture_output=True, text=True)
    assert result.returncode == 0, f"{student}: nbgrader {' '.join(args)}\n{result.stderr[-3000:]}"
    return result


def instructor(course, *args):
    result = nbgrader(course, *args, check=False)
    assert result.returncode == 0, f"nbgrader {' '.join(args)}\n{result.stderr[-3000:]}"
    return result


def student_setup(home, exchange):
    """student/setup.sh in a new home folder: the course's student config, no instructor menus."""
    home.mkdir(parents=True)
    env = {**_environment(), "HOME": str(home), "EXCHANGE": str(exchange)}
    subprocess.run(["sh", str(COURSE_ROOT / "student" / "setup.sh")], env=env, check=True, capture_output=True)
    return home


def student_submits(student, submission, exchange, homes):
    home = student_setup(homes / student, exchange)
    as_student(student, home, "fetch_assignment", "ps1")  # the course and exchange from setup.sh's config
    path = home / "ps1" / "ps1.ipynb"
    release = nbformat.read(path, as_version=4)
    path.write_bytes(submission.content("ps1", release))
    as_student(student, home, "submit", "ps1")


def make_grade(course):
    """`make grade A=ps1` on ``course`` (checked: it must exit 0)."""
    result = subprocess.run([sys.executable, "-m", "coursekit.pipeline.grade", "ps1", "--course", str(course)],
                            env=_environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """A course after its students submitted through the exchange and the instructor collected:
    {"course", "exchange", "homes", "due"}."""
    root = tmp_path_factory.mktemp("term")
    course, exchange, homes = copy_course("ps1", root / "course"), root / "exchange", root / "homes"
    exchange.mkdir(mode=0o777)
    with open(course / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Exchange.root = {str(exchange)!r}\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    instructor(course, "generate_assignment", "ps1")
    instructor(course, "release_assignment", "ps1")
    for student, submission in STUDENTS.items():
        student_submits(student, submission, exchange, homes)
    time.sleep(1.1)  # the due date falls between the on-time submissions and the late one
    due = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    time.sleep(1.1)
    student_submits("bob", Solution(), exchange, homes)
    instructor(course, "db", "assignment", "add", "ps1", f"--duedate={due.isoformat()}")
    instructor(course, "collect", "ps1")
    return {"course": course, "exchange": exchange, "homes": homes, "due": due}


@pytest.fixture(scope="module")
def graded_terms(term, tmp_path_factory):
    """The collected course graded twice: {"make grade": course, "stock": course}."""
    courses = {}
    for how in ("make grade", "stock"):
        course = tmp_path_factory.mktemp(how.replace(" ", "-")) / "course"
        shutil.copytree(term["course"], course, symlinks=True)
        if how == "stock":
            instructor(course, "autograde", "ps1")
            instructor(course, "generate_feedback", "ps1")
        else:
            make_grade(course)
        instructor(course, "export", "--to", str(course / "grades.csv"))
        courses[how] = course
    return courses


def _exported(course):
    with open(course / "grades.csv", newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("how", ["make grade", "stock"])
def test_submission_times_and_late_penalties_as_nbgrader_records_them(term, graded_terms, how):
    course = graded_terms[how]
    rows = _exported(course)
    assert set(rows) == {"alice", "bob", "carol"}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in rows:
            submitted = (course / "submitted" / student / "ps1" / "timestamp.txt").read_text().strip()
            found = gradebook.find_submission("ps1", student)
            assert found.timestamp == parse_utc(submitted).replace(tzinfo=None), student
            assert (found.total_seconds_late > 0) == (student == "bob"), student
    full = float(rows["alice"]["max_score"])
    assert float(rows["alice"]["score"]) == full
    assert float(rows["bob"]["raw_score"]) == full and float(rows["bob"]["score"]) == 0  # late: "zero"
    assert 0 < float(rows["carol"]["score"]) < full


def test_make_grade_exports_what_stock_nbgrader_does(graded_terms):
    ours, stock = (_exported(graded_terms[how]) for how in ("make grade", "stock"))
    columns = ("timestamp", "raw_score", "late_submission_penalty", "score", "max_score")
    assert {s: [row[c] for c in columns] for s, row in ours.items()} == {s: [row[c] for c in columns] for s, row in stock.items()}


def test_every_student_fetches_feedback_and_honest_ones_are_not_in_the_tamper_report(term, graded_terms):
    course = graded_terms["make grade"]
    instructor(course, "release_feedback", "ps1")
    for student in ("alice", "bob", "carol"):
        as_student(student, term["homes"] / student, "fetch_feedback", "ps1")
        pages = list((term["homes"] / student / "ps1" / "feedback").glob("*/ps1.html"))
        assert len(pages) == 1, student
    with open(course / "reports" / "ps1" / "tamper.csv", newline="") as f:
        flagged = {row["student"] for row in csv.DictReader(f)}
    assert not flagged & {"alice", "bob", "carol"}


@pytest.mark.parametrize("how", ["make grade", "stock"])
def test_a_tas_hand_grade_and_comment_survive_a_regrade_and_reach_the_feedback(graded_terms, tmp_path, how):
    course = tmp_path / "course"
    shutil.copytree(graded_terms[how], course, symlinks=True)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        cells = {g.name: g for g in gradebook.find_submission_notebook("ps1", "ps1", "carol").grades}
        failed = next(name for name, g in cells.items() if g.auto_score is not None and g.auto_score < g.max_score)
        cells[failed].manual_score = cells[failed].max_score - 0.5
        comment = gradebook.find_comment("linear", "ps1", "ps1", "carol")  # the answer cell
        comment.manual_comment = "Right idea: the mean divides by the batch size once too often."
        gradebook.db.commit()
    if how == "stock":
        instructor(course, "autograde", "ps1", "--force")
        instructor(course, "generate_feedback", "ps1", "--force")
    else:
        make_grade(course)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade(failed, "ps1", "ps1", "carol")
        assert grade.manual_score == grade.max_score - 0.5 and grade.needs_manual_grade  # as stock: to review
        assert gradebook.find_comment("linear", "ps1", "ps1", "carol").manual_comment.startswith("Right idea")
    page = (course / "feedback" / "carol" / "ps1" / "ps1.html").read_text()
    assert "once too often" in page and f"{grade.max_score - 0.5:g}" in page


def test_students_see_no_instructor_menus(term):
    listed = subprocess.run(["jupyter", "labextension", "list"], env={**_environment(), "HOME": str(term["homes"] / "alice")},
                            capture_output=True, text=True, check=True)
    disabled = (listed.stdout + listed.stderr).split("Disabled extensions:")[1]
    assert "@jupyter/nbgrader:formgrader" in disabled and "@jupyter/nbgrader:create-assignment" in disabled
    assert "@jupyter/nbgrader:assignment-list" not in disabled  # what students use stays
