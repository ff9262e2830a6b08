"""A regrade's effect, shown before it lands: every `make grade` run is recorded, the report lists
what changed since the last one, and a dry run changes nothing of the course."""
import html
import shutil

import pytest

from conftest import CATALOGS
from coursekit.pipeline.grade_class import main
from coursekit.tools.scratch import copy_course
from coursekit.judge import ps1
from coursekit.pipeline.regrade import changes, read_run, runs_folder
from coursekit.tools.submissions import Solution, submit

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

BUGS = {bug.name: bug for bug in CATALOGS["ps1"].BUGS}
CLASS = {"ada": Solution(), "tom": BUGS["tanh_wrong_sign"], "mo": BUGS["mse_no_factor_two"]}


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    course = copy_course("ps1", tmp_path_factory.mktemp("term") / "course")
    for student, submission in CLASS.items():
        submit(course, student, "ps1", submission)
    assert main(["ps1", "--course", str(course), "--jobs", "2"]) == 0
    return course


@pytest.fixture
def course(graded_course, tmp_path, monkeypatch):
    """A copy of the graded course, and a deliberate change of one test: tanh_hidden now passes everyone."""
    copy = tmp_path / "course"
    shutil.copytree(graded_course, copy)
    monkeypatch.setitem(ps1.CHECKS, "tanh_hidden", lambda kernel: None)
    return copy


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_regrade_after_a_test_change_shows_exactly_the_students_and_cells_it_affects(course, capsys):
    assert main(["ps1", "--course", str(course), "--jobs", "2"]) == 0
    first, second = (read_run(p) for p in sorted(runs_folder(course, "ps1").glob("*.json")))
    found = changes(first.students, second.students)
    assert [(c.student, c.cell, c.was.score, c.now.score) for c in found] == [("tom", "tanh_hidden", 0, 2)]
    assert "tom tanh_hidden: 0 -> 2" in capsys.readouterr().out
    report = (course / "reports" / "ps1" / "report.html").read_text()
    (then,) = [change.was.message for change in found]
    assert "grad_output" in then, "the message before the change says what was wrong"
    assert f"<td>tom</td><td>tanh_hidden</td><td>0</td><td>2</td><td>{html.escape(then)}</td><td>passes</td>" in report


def test_a_dry_run_shows_the_change_and_leaves_the_course_byte_identical(course, capsys):
    kept = {part: _tree(course / part) for part in ("autograded", "feedback", "submitted")}
    gradebook = (course / "gradebook.db").read_bytes()
    assert main(["ps1", "--course", str(course), "--jobs", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tom tanh_hidden: 0 -> 2" in out and "ada" not in out and "mo " not in out
    assert (course / "gradebook.db").read_bytes() == gradebook
    assert {part: _tree(course / part) for part in kept} == kept
    assert len(list((course / "reports" / "ps1" / "runs").glob("*.json"))) == 1, "a dry run is not a run"
