"""An instructor who is not root grades, sandboxed (coursekit.kernel.sandbox's rootless mode), as on a
JupyterHub: the same scores as root, a course that stays theirs, and a one-line refusal, with
nothing deleted, where the machine offers no user namespaces.

The instructor is an OS user of their own (coursekit.tools.os_users) with a private home that
holds the course; root is the control.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from conftest import CATALOGS
from coursekit import COURSE_ROOT
from coursekit.judge import SECRET_FILE
from coursekit.pipeline.course import _environment
from coursekit.pipeline.gradebook import results
from coursekit.tools.os_users import Students
from coursekit.tools.scratch import copy_course
from coursekit.tools.submissions import Solution, Variant, solution_answers, submit
from test_workflow import NBGRADER

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

BUGS = {bug.name: bug for bug in CATALOGS["ps1"].BUGS}
CLASS = {"solution": Solution(), **{submission.name: submission for submission in (
    CATALOGS["ps1"].VARIANTS[0], BUGS["tanh_no_upstream"], BUGS["linear_grad_biases_mean"])}}


def _prober(paths):
    """A correct submission whose Tanh cell first tries to read ``paths`` and prints what it got."""
    probe = (f"for _path in {[str(path) for path in paths]!r}:\n"
             "    try:\n"
             "        open(_path, 'rb').read(1)\n"
             "        print('READ', _path)\n"
             "    except OSError as _error:\n"
             "        print('DENIED', _path, type(_error).__name__)\n")
    return Variant("reads_the_course", {"tanh": probe + "\n" + solution_answers("ps1")["tanh"]})


@pytest.fixture(scope="module")
def hub():
    """{"users": Students with an "instructor", "home": their home}: a folder everyone may enter,
    as /home is, with a home only the instructor may enter."""
    shared = Path(tempfile.mkdtemp(prefix="coursekit-hub-"))
    shared.chmod(0o755)
    users = Students(shared, ["instructor"])
    yield {"users": users, "home": users.homes["instructor"], "uid": users.uids["instructor"]}
    shutil.rmtree(shared)


def as_instructor(hub, *command, check=True, **env):
    # (none of this session's COURSEKIT_ variables: one names root's PyTorch process, which the instructor cannot reach)
    inherited = {name: value for name, value in _environment().items() if not name.startswith("COURSEKIT_")}
    done = hub["users"].run("instructor", *command, env={**inherited, **env})
    assert not check or done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def in_course(hub, course, arguments, check=True, prefix=()):
    """`nbgrader ARGUMENTS` run by the instructor in ``course`` (``prefix``: a command it runs under)."""
    return as_instructor(hub, *prefix, "sh", "-c", f"cd {course} && {sys.executable} -c '{NBGRADER}' {arguments}", check=check)


def instructors_course(hub, name, students):
    """A copy of ps1 in the instructor's home, owned by them, with ``students`` handed in."""
    course = copy_course("ps1", hub["home"] / name)
    for student, submission in students.items():
        submit(course, student, "ps1", submission)
    for path in [course, *course.rglob("*")]:
        os.chown(path, hub["uid"], hub["uid"])
    course.chmod(0o700)
    return course


def _foreign_files(course, uid):
    return [str(path) for path in [course, *course.rglob("*")] if path.lstat().st_uid != uid]


@pytest.fixture(scope="module")
def graded_by_instructor(hub):
    """The class and a prober, graded by the instructor with `make grade` and with stock nbgrader."""
    courses, outputs, probed = {}, {}, {}
    for how in ("make grade", "stock"):
        course = hub["home"] / how.replace(" ", "_")
        paths = [course / "gradebook.db", course / SECRET_FILE, course / "source" / "ps1" / "ps1.ipynb",
                 COURSE_ROOT / "coursekit" / "judge" / "ps1.py", COURSE_ROOT / "source" / "ps1" / "ps1.ipynb"]
        course = instructors_course(hub, course.name, {**CLASS, "prober": _prober(paths)})
        probed[how] = paths
        if how == "make grade":
            done = as_instructor(hub, sys.executable, "-m", "coursekit.pipeline.grade_class", "ps1", "--course", str(course))
        else:
            in_course(hub, course, "generate_assignment ps1")
            done = in_course(hub, course, "autograde ps1 --force")
        courses[how], outputs[how] = course, done.stdout + done.stderr
    return {"courses": courses, "outputs": outputs, "probed": probed}


@pytest.mark.reads(*CLASS, assignment="ps1", kind="catalog")
@pytest.mark.parametrize("how", ["make grade", "stock"])
def test_an_instructor_who_is_not_root_gets_the_scores_root_gets_cell_by_cell(graded_by_instructor, graded, how):
    as_root = graded("ps1", "catalog")
    found = results(graded_by_instructor["courses"][how], "ps1")
    assert "rootless mode" in graded_by_instructor["outputs"][how], "the run says which sandbox graded"
    for student in CLASS:
        assert found[student].cells == as_root[student].cells, f"{student} under {how}"
    assert found["prober"].cells == as_root["solution"].cells


@pytest.mark.parametrize("how", ["make grade", "stock"])
def test_a_kernel_cannot_read_the_course_or_the_judge_by_absolute_path(graded_by_instructor, how):
    course = graded_by_instructor["courses"][how]
    notebook = nbformat.read(course / "autograded" / "prober" / "ps1" / "ps1.ipynb", as_version=4)
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    for path in graded_by_instructor["probed"][how]:
        assert f"DENIED {path}" in printed and f"READ {path}" not in printed, (path, printed[:2000])


@pytest.mark.parametrize("how", ["make grade", "stock"])
def test_every_file_of_the_course_still_belongs_to_the_instructor(hub, graded_by_instructor, how):
    course = graded_by_instructor["courses"][how]
    assert (course / "autograded").is_dir()
    assert not _foreign_files(course, hub["uid"])


def test_what_root_grades_in_an_instructors_course_is_handed_back_to_them(hub):
    course = instructors_course(hub, "sudo", {"solution": Solution()})
    done = subprocess.run([sys.executable, "-m", "coursekit.pipeline.grade_class", "ps1", "--course", str(course)],
                          env=_environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "root mode" in done.stderr and (course / "gradebook.db").exists()
    assert not _foreign_files(course, hub["uid"])
    # and the instructor's own nbgrader goes on working in it
    in_course(hub, course, "generate_feedback ps1 --force")


def test_without_user_namespaces_grading_stops_in_one_line_and_deletes_nothing(hub):
    """A pod with no user namespaces, simulated: the instructor runs inside a user namespace that
    may make none (bubblewrap's --disable-userns)."""
    course = instructors_course(hub, "pod", {"solution": Solution()})
    earlier = course / "autograded" / "solution" / "ps1" / "ps1.ipynb"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("an earlier grading")
    poorer = ["bwrap", "--unshare-user", "--disable-userns", "--bind", "/", "/", "--dev", "/dev", "--"]
    grade = as_instructor(hub, *poorer, sys.executable, "-m", "coursekit.pipeline.grade_class", "ps1", "--course", str(course),
                          check=False)
    assert grade.returncode == 2 and grade.stdout == "", grade.stdout
    (line,) = grade.stderr.strip().splitlines()
    assert "cannot make user namespaces" in line and "grade as root" in line and "run-a-course" in line, line
    stock = in_course(hub, course, "autograde ps1 --force", check=False, prefix=poorer)
    assert stock.returncode != 0
    errors = [line for line in stock.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot make user namespaces" in errors[0] and "Traceback" not in stock.stderr, stock.stderr
    assert earlier.read_text() == "an earlier grading"
    assert not (course / "gradebook.db").exists() and not (course / SECRET_FILE).exists()
    doctor = as_instructor(hub, *poorer, sys.executable, "-m", "coursekit.tools.doctor", "--course", str(course), check=False)
    assert doctor.returncode == 1 and "FAIL  grading kernels cannot be sandboxed" in doctor.stdout, doctor.stdout


def test_the_doctor_says_which_sandbox_grades_for_root_and_for_the_instructor(hub):
    course = instructors_course(hub, "doctor", {})
    mine = as_instructor(hub, sys.executable, "-m", "coursekit.tools.doctor", "--course", str(course), check=False)
    assert "ok    grading kernels are sandboxed in rootless mode" in mine.stdout, mine.stdout
    assert f"ok    the course folder {course} is closed to other users" in mine.stdout
    roots = subprocess.run([sys.executable, "-m", "coursekit.tools.doctor"], capture_output=True, text=True)
    assert "ok    grading kernels are sandboxed in root mode" in roots.stdout, roots.stdout


def test_the_sandbox_and_attack_tests_pass_for_an_instructor_who_is_not_root(hub):
    """tests/test_sandbox.py, test_warm_kernels.py (forked kernels are forked, not launched) and
    test_attacks.py, run by the instructor: in rootless mode."""
    # (the pages' tests are left out: what a browser runs does not depend on the sandbox's mode; and the
    # attacks are graded by make grade alone: test_sandbox.py holds launched kernels, stock autograde's,
    # to the same account, and the stock grading of a class is compared with root's above)
    done = as_instructor(hub, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x",
                         "-k", "not script_of_a_student and not stock",
                         *(str(COURSE_ROOT / "tests" / name) for name in ("test_sandbox.py", "test_warm_kernels.py",
                                                                          "test_attacks.py")),
                         check=False, COURSEKIT_EXPECT_SANDBOX="rootless")
    assert done.returncode == 0 and " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-5000:]
