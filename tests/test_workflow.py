"""The course's whole workflow as nbgrader documents it, on a temporary exchange, with `make
grade` in the place of `nbgrader autograde` + `generate_feedback`, and stock nbgrader as the control.

nbgrader's exchange names a student by the OS user of the process, and its folders'
permissions keep students apart: each student runs their commands as an OS user of their own
(coursekit.tools.os_users), on the exchange and in a home of theirs, and the instructor as root
in a course folder that students cannot enter.
"""
import csv
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.utils import parse_utc

from coursekit import COURSE_ROOT
from coursekit.pipeline.course import _environment, nbgrader
from coursekit.tools.os_users import Students
from coursekit.tools.scratch import copy_course
from coursekit.tools.submissions import Bug, Solution

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

NBGRADER = "from nbgrader.apps.nbgraderapp import main; main()"
COURSE_ID = "dl-from-scratch"
# alice and carol submit before the due date, bob and dave after it; carol's Linear.backward has
# a bug; dave then dates his submission before the due date and hands in a blank one as alice's
STUDENTS = {"alice": Solution(),
            "carol": Bug("linear_grad_biases_mean", "linear", "grad_output.sum(axis=0)", "grad_output.mean(axis=0)")}


def as_student(term, student, *args):
    """`nbgrader ARGS` run by ``student``, as their OS user, in their home folder, which holds
    nbgrader's cache of their submissions (checked: it must exit 0)."""
    result = term["students"].run(student, sys.executable, "-c", NBGRADER, *args, env=_environment())
    assert result.returncode == 0, f"{student}: nbgrader {' '.join(args)}\n{result.stderr[-3000:]}"
    return result


def instructor(course, *args):
    result = nbgrader(course, *args, check=False)
    assert result.returncode == 0, f"nbgrader {' '.join(args)}\n{result.stderr[-3000:]}"
    return result


def student_submits(term, student, submission):
    """student/setup.sh (the course's student config, no instructor menus), then fetch, answer, submit."""
    setup = term["students"].run(student, "sh", str(COURSE_ROOT / "student" / "setup.sh"),
                                 env={**_environment(), "EXCHANGE": str(term["exchange"])})
    assert setup.returncode == 0, setup.stderr
    as_student(term, student, "fetch_assignment", "ps1")  # the course and exchange from setup.sh's config
    path = term["homes"] / student / "ps1" / "ps1.ipynb"
    release = nbformat.read(path, as_version=4)
    path.write_bytes(submission.content("ps1", release))
    as_student(term, student, "submit", "ps1")


def make_grade(course):
    """`make grade A=ps1` on ``course`` (checked: it must exit 0)."""
    result = subprocess.run([sys.executable, "-m", "coursekit.pipeline.grade_class", "ps1", "--course", str(course)],
                            env=_environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


# dave's attack on the exchange, as dave: his own submission's timestamp.txt moved before the due
# date, and the blank release handed in as alice's, later than hers (inbound takes anyone's folder)
FORGE = """
import os, shutil, sys
own, exchange, early = sys.argv[1:4]
with open(os.path.join(own, "timestamp.txt"), "w") as f:
    f.write(early)
forged = os.path.join(exchange, "inbound", "alice+ps1+2099-01-01 00:00:00.000000 UTC+forgedbydave")
shutil.copytree(os.path.join(exchange, "outbound", "ps1"), forged)
with open(os.path.join(forged, "timestamp.txt"), "w") as f:
    f.write("2099-01-01 00:00:00.000000 UTC")
"""


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """A course after its students submitted through the exchange and the instructor collected:
    {"course", "exchange", "homes", "students", "due"}. The exchange and the students' homes are
    in a folder that everyone may enter, as /usr/local/share/nbgrader/exchange and /home are; the course is
    in pytest's folder, which only root may enter, as an instructor's home."""
    shared = Path(tempfile.mkdtemp(prefix="coursekit-term-"))
    shared.chmod(0o755)
    exchange = shared / "exchange"
    exchange.mkdir(mode=0o755)
    students = Students(shared, ["alice", "bob", "carol", "dave"])
    course = copy_course("ps1", tmp_path_factory.mktemp("term") / "course")
    with open(course / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Exchange.root = {str(exchange)!r}\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    instructor(course, "generate_assignment", "ps1")
    instructor(course, "release_assignment", "ps1")
    found = {"course": course, "exchange": exchange, "homes": shared / "homes", "students": students}
    for student, submission in STUDENTS.items():
        student_submits(found, student, submission)
    time.sleep(1.1)  # the due date falls between the on-time submissions and the late one
    due = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    time.sleep(1.1)
    student_submits(found, "bob", Solution())
    student_submits(found, "dave", Solution())
    inbound = exchange / COURSE_ID / "inbound"
    (own,) = inbound.glob("dave+ps1+*")  # (nbgrader submit prints it to him)
    early = (due - datetime.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    forged = students.run("dave", sys.executable, "-c", FORGE, str(own), str(exchange / COURSE_ID), early)
    assert forged.returncode == 0, forged.stderr
    instructor(course, "db", "assignment", "add", "ps1", f"--duedate={due.isoformat()}")
    collected = students.run(None, sys.executable, "-c", NBGRADER, "collect", "ps1", cwd=course, env=_environment())
    assert collected.returncode != 0, "collect must fail loudly when it refuses a folder"
    yield {**found, "due": due, "collect_log": collected.stdout + collected.stderr}
    shutil.rmtree(shared)


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
    assert set(rows) == {"alice", "bob", "carol", "dave"}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in rows:
            submitted = (course / "submitted" / student / "ps1" / "timestamp.txt").read_text().strip()
            found = gradebook.find_submission("ps1", student)
            assert found.timestamp == parse_utc(submitted).replace(tzinfo=None), student
            assert (found.total_seconds_late > 0) == (student in ("bob", "dave")), student
    full = float(rows["alice"]["max_score"])
    assert float(rows["alice"]["score"]) == full
    for late in ("bob", "dave"):  # dave's timestamp.txt says he was early
        assert float(rows[late]["raw_score"]) == full and float(rows[late]["score"]) == 0, late  # late: "zero"
    assert 0 < float(rows["carol"]["score"]) < full


def test_collect_takes_no_students_word_for_who_handed_in_and_when(term):
    """dave's forged folder is left in the exchange, alice's own submission is collected, and
    dave's submission is dated by when its files last changed (coursekit.pipeline.exchange);
    collect fails at the end, naming the folder it refused."""
    log = term["collect_log"]
    assert "it claims to be alice's submission, but dave owns it" in log and "forgedbydave" in log, log
    assert "timestamp.txt says" in log and "dave+ps1+" in log, log
    submitted = term["course"] / "submitted"
    assert {path.name for path in submitted.iterdir()} == {"alice", "bob", "carol", "dave"}
    due = term["due"].replace(tzinfo=None)
    assert parse_utc((submitted / "alice" / "ps1" / "timestamp.txt").read_text()) < due
    assert parse_utc((submitted / "dave" / "ps1" / "timestamp.txt").read_text()) > due
    assert parse_utc((submitted / "dave" / "ps1" / "timestamp.claimed.txt").read_text()) < due  # his claim, kept
    alice = nbformat.read(submitted / "alice" / "ps1" / "ps1.ipynb", as_version=4)
    assert "raise NotImplementedError()" not in "".join(cell.source for cell in alice.cells if cell.cell_type == "code"), \
        "alice's own work, not the blank release"


def test_make_grade_exports_what_stock_nbgrader_does(graded_terms):
    ours, stock = (_exported(graded_terms[how]) for how in ("make grade", "stock"))
    columns = ("timestamp", "raw_score", "late_submission_penalty", "score", "max_score")
    assert {s: [row[c] for c in columns] for s, row in ours.items()} == {s: [row[c] for c in columns] for s, row in stock.items()}


def test_every_student_fetches_feedback_and_honest_ones_are_not_in_the_tamper_report(term, graded_terms):
    course = graded_terms["make grade"]
    instructor(course, "release_feedback", "ps1")
    for student in ("alice", "bob", "carol", "dave"):
        as_student(term, student, "fetch_feedback", "ps1")
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


SNOOP = """
import json, os, sys
exchange, course, home = sys.argv[1:4]
attempts = {
    "list the submissions in the exchange": lambda: os.listdir(os.path.join(exchange, "inbound")),
    "change the released notebook": lambda: open(os.path.join(exchange, "outbound", "ps1", "ps1.ipynb"), "a"),
    "add a file to the release": lambda: open(os.path.join(exchange, "outbound", "ps1", "helper.py"), "w"),
    "read the course's gradebook": lambda: open(os.path.join(course, "gradebook.db"), "rb"),
    "list another student's home": lambda: os.listdir(home),
}
denied = {}
for what, attempt in attempts.items():
    try:
        attempt()
        denied[what] = False
    except PermissionError:
        denied[what] = True
print(json.dumps(denied))
"""


def test_a_student_cannot_list_submissions_change_the_release_or_reach_the_course(term):
    found = term["students"].run("bob", sys.executable, "-c", SNOOP, str(term["exchange"] / COURSE_ID), str(term["course"]),
                                 str(term["homes"] / "alice"), env=_environment())
    denied = json.loads(found.stdout)
    assert all(denied.values()), f"bob may {[what for what, no in denied.items() if not no]}"


def test_students_see_no_instructor_menus(term):
    listed = subprocess.run(["jupyter", "labextension", "list"], env={**_environment(), "HOME": str(term["homes"] / "alice")},
                            capture_output=True, text=True, check=True)
    disabled = (listed.stdout + listed.stderr).split("Disabled extensions:")[1]
    assert "@jupyter/nbgrader:formgrader" in disabled and "@jupyter/nbgrader:create-assignment" in disabled
    assert "@jupyter/nbgrader:assignment-list" not in disabled  # what students use stays
