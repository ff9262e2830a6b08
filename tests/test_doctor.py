"""`make doctor`'s checks (coursekit.tools.doctor) on folders made to pass and to fail them, the one
exchange that the course and its students share, and root's writes handed back to a course's owner
(coursekit.pipeline.ownership). The doctor as the instructor and on a machine without user
namespaces: tests/test_rootless.py."""
import os

import pytest

from coursekit import COURSE_ROOT
from coursekit.pipeline.exchange import exchange_root
from coursekit.pipeline.ownership import hand_back
from coursekit.tools import doctor


def test_the_course_and_its_students_name_the_same_exchange_nbgraders_default():
    from nbgrader.exchange.default.exchange import Exchange

    ours = exchange_root(COURSE_ROOT / "nbgrader_config.py")
    assert ours == exchange_root(COURSE_ROOT / "student" / "nbgrader_config.py") == Exchange.root.default_value
    assert doctor.check_same_exchange(COURSE_ROOT).status == doctor.OK


def test_a_course_whose_students_look_elsewhere_fails(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.Exchange.root = '/srv/nbgrader/exchange'\n")
    check = doctor.check_same_exchange(tmp_path)
    assert check.status == doctor.FAIL and "/srv/nbgrader/exchange" in check.what


@pytest.mark.parametrize("mode, status", [(0o1777, doctor.OK), (0o777, doctor.FAIL), (0o755, doctor.FAIL)])
def test_the_exchange_must_be_writable_by_all_with_the_sticky_bit(tmp_path, mode, status):
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(mode)
    check = doctor.check_exchange(str(exchange))
    assert check.status == status and (status == doctor.OK or "chmod 1777" in check.advice)
    assert doctor.check_exchange(str(tmp_path / "missing")).status == doctor.FAIL


def test_homes_that_others_can_read_are_reported(tmp_path):
    for name, mode in [("ada", 0o700), ("bob", 0o755)]:
        (tmp_path / name).mkdir()
        (tmp_path / name).chmod(mode)
    check = doctor.check_homes(tmp_path)
    assert check.status == doctor.WARN and str(tmp_path / "bob") in check.what and "ada" not in check.what
    (tmp_path / "bob").chmod(0o700)
    assert doctor.check_homes(tmp_path).status == doctor.OK


def test_an_interpreter_in_a_closed_folder_is_reported(monkeypatch, tmp_path):
    closed = tmp_path / "closed"
    (closed / "bin").mkdir(parents=True)
    (closed / "bin" / "python").write_text("")
    (closed / "bin" / "python").chmod(0o755)
    closed.chmod(0o700)
    monkeypatch.setattr(doctor.sys, "executable", str(closed / "bin" / "python"))
    monkeypatch.setattr(doctor.sys, "prefix", str(closed))
    check = doctor.check_interpreter()
    assert check.status == doctor.WARN and str(closed) in check.what


def test_the_doctor_fails_when_the_sandbox_is_unavailable(monkeypatch, tmp_path):
    from coursekit.kernel import sandbox

    def unavailable():
        raise sandbox.SandboxUnavailable("cannot sandbox grading kernels: no user namespaces")

    monkeypatch.setattr(sandbox, "sandbox_mode", unavailable)
    check = doctor.check_sandbox()
    assert check.status == doctor.FAIL and "no user namespaces" in check.advice


@pytest.mark.skipif(os.geteuid() != 0, reason="root hands files back")
def test_what_root_writes_in_someones_course_is_handed_back_to_them(tmp_path):
    course = tmp_path / "course"
    (course / "autograded" / "ada").mkdir(parents=True)
    (course / "gradebook.db").write_text("")
    (course / ".venv").mkdir()
    (course / ".venv" / "python").write_text("")
    os.chown(course, 4242, 4242)
    handed = hand_back(course)
    assert {path.name for path in handed} == {"autograded", "ada", "gradebook.db"}
    for path in (course / "autograded" / "ada", course / "gradebook.db"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4242, 4242)
    assert (course / ".venv" / "python").stat().st_uid == 0, "environments are left alone"
    os.chown(course, 0, 0)
    assert hand_back(course) == [], "a course of root's stays root's"
