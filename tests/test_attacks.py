"""Attacks on the grader (ATTACKS in tests/fixtures/ps1_submissions.py), each graded in one batch
with honest students, by `make grade` and by stock nbgrader: every attack loses the Tanh points it
tries to fake, the honest students keep theirs exactly, and nothing outside the attackers' own
sandboxes changes. (An attack may cost its author more: one that stops its own kernel loses
every part after it.)"""
import base64
import hashlib
import html
import os
import re
import sqlite3
import sys
import time

import psutil
import pytest

from conftest import CATALOGS, HIDDEN_TESTS, SOLUTIONS, secret_lines
from coursekit import COURSE_ROOT
from coursekit.pipeline.grade import grade_class
from coursekit.pipeline.grading import nbgrader, results
from coursekit.tools.scratch import copy_course
from coursekit.kernel import warm_kernels
from coursekit.kernel.sandbox import UIDS
from coursekit.tools.submissions import Solution, submit

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

CATALOG = CATALOGS["ps1"]
BUGS = {bug.name: bug for bug in CATALOG.BUGS}
HONEST = {"solution": Solution(), "variant": CATALOG.VARIANTS[0],
          "tanh_no_upstream": BUGS["tanh_no_upstream"], "linear_grad_biases_mean": BUGS["linear_grad_biases_mean"]}
ATTACKS = {attack.name: attack for attack in CATALOG.ATTACKS}
PROTECTED = [COURSE_ROOT / "coursekit", COURSE_ROOT / "source", COURSE_ROOT / "release"]


def _tree(*folders):
    """{path: sha256} of every file under ``folders``."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _grade(course, how):
    if how == "make grade":
        grade_class("ps1", course, jobs=4, progress=False)
    else:
        nbgrader(course, "generate_assignment", "ps1", "--force")
        nbgrader(course, "autograde", "ps1", "--force", check=False)
        nbgrader(course, "generate_feedback", "ps1", "--force", check=False)
    return results(course, "ps1")


def _schema(course):
    with sqlite3.connect(course / "gradebook.db") as db:
        return sorted(row for row in db.execute("SELECT type, name, sql FROM sqlite_master"))


def _user_namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return None


def _sandbox_processes(since):
    """Processes of sandboxes started after ``since`` (a time.time()): of a sandbox uid (root mode),
    or in another user namespace than this process's but the zygotes' own (rootless), except kernels
    of another checkout's grader that may run on the same machine (their interpreter is another one)."""
    zygotes = {child.pid for warm in warm_kernels._zygotes.values() if warm.process.poll() is None
               for child in psutil.Process(warm.process.pid).children()}
    ours = _user_namespace(os.getpid())
    found = []
    for p in psutil.process_iter(["uids", "create_time", "cmdline"]):
        uids, command = p.info["uids"], " ".join(p.info["cmdline"] or [])
        sandboxed = uids and UIDS[0] <= uids.real < UIDS[1] or (
            _user_namespace(p.pid) not in (ours, None) and p.pid not in zygotes)
        if sandboxed and p.info["create_time"] >= since and (sys.prefix in command or ".venv" not in command):
            found.append(p)
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The honest students graded alone, and the gradebook's schema."""
    course = copy_course("ps1", tmp_path_factory.mktemp("honest"))
    for name, submission in HONEST.items():
        submit(course, name, "ps1", submission)
    graded = _grade(course, "make grade")
    return {name: graded[name].cells for name in HONEST}, _schema(course)


@pytest.fixture(scope="module", params=["make grade", "stock"])
def batch(request, tmp_path_factory):
    course = copy_course("ps1", tmp_path_factory.mktemp(request.param.replace(" ", "_")))
    for name, submission in {**HONEST, **ATTACKS}.items():
        submit(course, name, "ps1", submission)
    protected = _tree(*PROTECTED)
    course_files = _tree(course / "source", course / "submitted")
    since, started = time.time(), time.monotonic()
    graded = _grade(course, request.param)
    elapsed = time.monotonic() - started
    time.sleep(2)  # anything an attack left running would be writing now
    return {"how": request.param, "course": course, "graded": graded, "elapsed": elapsed, "since": since,
            "protected": protected, "course_files": course_files}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_attack_loses_the_points_it_fakes(batch, name):
    result = batch["graded"][name]
    assert result.cells, f"{name} was not graded under {batch['how']}"
    assert result.parts()["tanh"] == 0, f"{name} kept Tanh points under {batch['how']}: {result.cells}"
    assert result.parts()["linear"] == result.max_parts()["linear"], "the parts before the attack are graded"


def test_honest_students_keep_their_scores_exactly(batch, reference):
    scores, _ = reference
    assert {name: batch["graded"][name].cells for name in HONEST} == scores


def test_nothing_outside_the_sandboxes_changes(batch, reference):
    _, schema = reference
    course = batch["course"]
    assert _tree(*PROTECTED) == batch["protected"], "the course's own files changed"
    assert not (COURSE_ROOT / "coursekit" / "PLANTED.py").exists()
    assert _tree(course / "source", course / "submitted") == batch["course_files"], "the source or a submission changed"
    assert _schema(course) == schema, "the gradebook's schema changed (a trigger?)"
    for page in [*course.glob("autograded/*/ps1/*"), *course.glob("feedback/*/ps1/*")]:
        text = page.read_bytes()
        assert b"# tampered" not in text and b"# rewritten later" not in text, f"{page} was changed by an attack"


def test_no_process_of_a_submission_outlives_it_and_the_batch_ends(batch):
    assert not _sandbox_processes(batch["since"]), "a submission's processes are still running"
    assert batch["elapsed"] < 20 * (len(HONEST) + len(ATTACKS)), f"the batch took {batch['elapsed']:.0f} s"


def _decoded(text):
    """The page's text, unescaped, and whatever its long base64 runs decode to."""
    yield html.unescape(text)
    for run in re.findall(r"[A-Za-z0-9+/=]{200,}", text):
        try:
            yield base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "replace")
        except ValueError:
            pass


def test_no_hidden_test_or_unwritten_solution_reaches_a_feedback_page(batch):
    hidden = secret_lines("ps1", [HIDDEN_TESTS], min_length=20)
    solutions = secret_lines("ps1", [SOLUTIONS], min_length=20)
    tanh_solution = {line for line in solutions if "self.output ** 2" in line or "np.tanh" in line}
    assert hidden and tanh_solution
    for name in ATTACKS:
        page = batch["course"] / "feedback" / name / "ps1" / "ps1.html"
        assert page.exists(), f"{name} has no feedback under {batch['how']}"
        assert page.stat().st_size < 10 * 2 ** 20, f"{name}'s feedback is {page.stat().st_size} bytes"
        written = set(ATTACKS[name].cells["tanh"].splitlines()) | {l.strip() for l in ATTACKS[name].cells["tanh"].splitlines()}
        for text in _decoded(page.read_text(errors="replace")):
            leaked = [line for line in hidden | (tanh_solution - written) if line in text]
            assert not leaked, f"{name}'s feedback shows {leaked[:2]}"


# Plain NumPy that games the finite differences: the judge's verdict catches it, no scan of the code can.
NOT_IN_TAMPER_REPORT = {"bends_forward_after_seeing_the_gradient"}


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - NOT_IN_TAMPER_REPORT))
def test_the_tamper_report_names_each_attack(name):
    from coursekit.pipeline.tamper import scan_code

    findings = scan_code("tanh", ATTACKS[name].cells["tanh"])
    assert findings and all(f.cell == "tanh" and f.line >= 1 for f in findings), f"{name} is not reported"
