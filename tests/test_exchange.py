"""The course's collect (coursekit.pipeline.exchange.CheckedCollect) on folders the instructor
(root here) made in the exchange: a symbolic link is refused, and work dated before the due date
whose files changed after it is dated by that change. (Folders of other OS users: test_workflow.)"""
import datetime

import pytest

from coursekit.pipeline.exchange import CLAIMED
from coursekit.pipeline.course import nbgrader
from coursekit.tools.scratch import copy_course
from nbgrader.utils import parse_utc

pytestmark = pytest.mark.ps1
FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


@pytest.fixture
def course(tmp_path):
    course = copy_course("ps1", tmp_path / "course")
    with open(course / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.Exchange.root = {str(tmp_path / 'exchange')!r}\n")
    (tmp_path / "exchange" / "dl-from-scratch" / "inbound").mkdir(parents=True)
    return course


def hand_in(course, student, claimed, link=False):
    """A submission folder in the exchange whose timestamp.txt (and name) say ``claimed``."""
    folder = course.parent / "exchange" / "dl-from-scratch" / "inbound" / f"{student}+ps1+{claimed.strftime(FORMAT)}+x"
    folder.mkdir()
    (folder / "timestamp.txt").write_text(claimed.strftime(FORMAT))
    if link:
        (course.parent / "elsewhere.ipynb").write_text("{}")
        (folder / "ps1.ipynb").symlink_to(course.parent / "elsewhere.ipynb")
    else:
        (folder / "ps1.ipynb").write_text("{}")


def collect(course, due):
    nbgrader(course, "db", "assignment", "add", "ps1", f"--duedate={due.isoformat()}")
    return nbgrader(course, "collect", "ps1", check=False)


def test_a_folder_holding_a_symbolic_link_is_not_collected_and_collect_says_so(course):
    now = datetime.datetime.now(datetime.timezone.utc)
    hand_in(course, "erin", now, link=True)
    hand_in(course, "gus", now)
    done = collect(course, now + datetime.timedelta(days=1))
    assert done.returncode != 0 and "holds a symbolic link (ps1.ipynb)" in done.stderr, done.stderr
    assert sorted(path.name for path in (course / "submitted").iterdir()) == ["gus"]


def test_work_dated_before_the_due_date_but_changed_after_it_is_dated_by_the_change(course):
    now = datetime.datetime.now(datetime.timezone.utc)
    due = now - datetime.timedelta(hours=1)
    hand_in(course, "fay", due - datetime.timedelta(hours=1))  # says an hour early; its files are from now
    hand_in(course, "gus", now)  # late, and says so
    done = collect(course, due)
    assert done.returncode == 0, done.stderr
    fay = course / "submitted" / "fay" / "ps1"
    assert parse_utc((fay / "timestamp.txt").read_text()) > due.replace(tzinfo=None)
    assert parse_utc((fay / CLAIMED).read_text()) < due.replace(tzinfo=None)
    gus = course / "submitted" / "gus" / "ps1"
    assert (gus / "timestamp.txt").read_text() == now.strftime(FORMAT) and not (gus / CLAIMED).exists()


def test_work_handed_in_on_time_keeps_its_time(course):
    now = datetime.datetime.now(datetime.timezone.utc)
    hand_in(course, "ada", now)
    assert collect(course, now + datetime.timedelta(hours=1)).returncode == 0
    assert (course / "submitted" / "ada" / "ps1" / "timestamp.txt").read_text() == now.strftime(FORMAT)
