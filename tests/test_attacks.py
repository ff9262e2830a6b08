"""Attacks on the grader (ATTACKS in tests/fixtures/ps1_submissions.py), each graded in one batch
with honest students, by `make grade` and by stock nbgrader: every attack loses the Tanh points it
tries to fake, the honest students keep theirs exactly, and nothing outside the attackers' own
sandboxes changes. (An attack may cost its author more: one that stops its own kernel loses
every part after it.) Submissions that try to stall, swell or script the grader (OVERLOADS) are
graded in the same batch: in bounded time, files and grader memory, with no script of theirs
running on the pages staff and students open."""
import base64
import hashlib
import html
import os
import re
import secrets
import sqlite3
import sys
import time

import subprocess
import threading

import psutil
import pytest

from conftest import CATALOGS, HIDDEN_TESTS, SOLUTIONS, secret_lines
from coursekit import COURSE_ROOT
from coursekit.pipeline import report
from coursekit.pipeline.course import nbgrader
from coursekit.pipeline.grade_class import grade_class
from coursekit.pipeline.gradebook import results
from coursekit.tools.scratch import copy_course
from coursekit.kernel import warm_kernels
from coursekit.kernel.sandbox import UIDS
from coursekit.tools.submissions import Solution, submit
from browser import chromium, free_port, wait_for_http
from coursekit.pipeline.course import _environment
from nbgrader.api import Gradebook

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

CATALOG = CATALOGS["ps1"]
BUGS = {bug.name: bug for bug in CATALOG.BUGS}
HONEST = {"solution": Solution(), "variant": CATALOG.VARIANTS[0],
          "tanh_no_upstream": BUGS["tanh_no_upstream"], "linear_grad_biases_mean": BUGS["linear_grad_biases_mean"]}
ATTACKS = {attack.name: attack for attack in CATALOG.ATTACKS}
OVERLOADS = {name: submission for name, (submission, _) in CATALOG.OVERLOADS.items()}
PROTECTED = [COURSE_ROOT / "coursekit", COURSE_ROOT / "source", COURSE_ROOT / "release"]


def _tree(*folders):
    """{path: sha256} of every file under ``folders``."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _grade(course, how):
    if how == "make grade":
        report.write(course, "ps1", grade_class("ps1", course, jobs=4, progress=False))  # (as make grade's main does)
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


class _PeakMemory(threading.Thread):
    """The largest resident size of a grading process (this one and its nbgrader commands, make grade's
    workers and the checks' processes; not kernels, the zygote or the PyTorch process) while it runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stopped = 0, threading.Event()

    def run(self):
        me = psutil.Process()
        while not self.stopped.wait(0.1):
            for process in [me, *me.children(recursive=True)]:
                try:
                    command = " ".join(process.cmdline())
                    if "pytest" in command or "nbgrader" in command:
                        self.peak = max(self.peak, process.memory_info().rss)
                except psutil.Error:
                    pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join()


@pytest.fixture(scope="module", params=["make grade", "stock"])
def batch(request, tmp_path_factory):
    course = copy_course("ps1", tmp_path_factory.mktemp(request.param.replace(" ", "_")))
    for name, submission in {**HONEST, **ATTACKS, **OVERLOADS}.items():
        submit(course, name, "ps1", submission)
    protected = _tree(*PROTECTED)
    course_files = _tree(course / "source", course / "submitted")
    since, started = time.time(), time.monotonic()
    with _PeakMemory() as memory:
        graded = _grade(course, request.param)
    elapsed = time.monotonic() - started
    time.sleep(2)  # anything an attack left running would be writing now
    return {"how": request.param, "course": course, "graded": graded, "elapsed": elapsed, "since": since,
            "protected": protected, "course_files": course_files, "peak_memory": memory.peak}


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
    assert batch["elapsed"] < 20 * (len(HONEST) + len(ATTACKS) + len(OVERLOADS)), f"the batch took {batch['elapsed']:.0f} s"


@pytest.mark.parametrize("name", sorted(OVERLOADS))
def test_an_overload_is_graded_and_loses_only_what_its_answers_break(batch, name):
    result = batch["graded"][name]
    assert result.cells, f"{name} was not graded under {batch['how']}"
    assert result.lost() == CATALOG.OVERLOADS[name][1], f"{name} lost {result.lost()} under {batch['how']}"


def test_every_file_and_the_graders_memory_stay_bounded(batch):
    """A notebook keeps 8 MB of outputs and a feedback page shows 12 MB, whatever was handed in
    (thirty cells of 1.9 MB each, a cell of 150,000 formulas); no grading process grows past 1.5 GB."""
    course = batch["course"]
    for student in {**HONEST, **ATTACKS, **OVERLOADS}:
        submitted = (course / "submitted" / student / "ps1" / "ps1.ipynb").stat().st_size
        autograded = (course / "autograded" / student / "ps1" / "ps1.ipynb").stat().st_size
        assert autograded < submitted + 9 * 2 ** 20, f"{student}'s autograded notebook is {autograded} bytes"
        page = course / "feedback" / student / "ps1" / "ps1.html"
        assert page.stat().st_size < 13 * 2 ** 20, f"{student}'s feedback page is {page.stat().st_size} bytes"
    assert "the notebook's outputs passed 8 MB" in (course / "autograded" / "floods_many_cells" / "ps1" / "ps1.ipynb").read_text()
    assert 0 < batch["peak_memory"] < 1.5 * 2 ** 30, f"a grading process reached {batch['peak_memory'] / 2 ** 20:.0f} MB"


MARKS = "return window.pwned || ''"


def test_no_script_of_a_student_runs_on_the_feedback_page_or_the_report(batch):
    course = batch["course"]
    pages = {"feedback": course / "feedback" / "stored_markup" / "ps1" / "ps1.html"}
    if batch["how"] == "make grade":  # (stock nbgrader writes no report)
        pages.update(report=course / "reports" / "ps1" / "report.html",
                     similarity=course / "reports" / "ps1" / "similarity.html")
    with chromium() as browser:
        for name, page in pages.items():
            browser.open(page.as_uri())
            browser.wait_for("return document.readyState === 'complete'")
            time.sleep(0.5)  # (an image's error handler runs once its load fails)
            assert browser.run(MARKS) == "", f"a student's script ran on the {name} page ({batch['how']})"
        assert browser.run("return document.body.innerText.length > 0")
        browser.open(pages["feedback"].as_uri())
        assert browser.run("return document.body.innerText.includes('My notes')"), "the student's notes are shown"
    if "report" in pages:
        assert "stored_markup" in pages["report"].read_text() and "&lt;script&gt;" in pages["report"].read_text()


def test_no_script_of_a_student_runs_on_formgraders_page(batch, tmp_path):
    """The page a TA grades on, in the Jupyter server's own origin, as formgrader renders it."""
    course, port, token = batch["course"], free_port(), secrets.token_hex(8)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}",
                               f"--ServerApp.token={token}", f"--ServerApp.root_dir={course}",
                               "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.formgrader': True}"],
                              cwd=course, env={**_environment(), "HOME": str(tmp_path)}, stdout=log, stderr=log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api?token={token}")
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
            submission = gradebook.find_submission_notebook("ps1", "ps1", "stored_markup").id
        with chromium() as browser:
            browser.open(f"http://127.0.0.1:{port}/formgrader/submissions/{submission}/?token={token}")
            browser.wait_for("return document.readyState === 'complete' && document.body.innerText.includes('My notes')")
            time.sleep(0.5)
            marks = browser.run(MARKS)
            own_scripts = browser.run("return typeof $ === 'function' && typeof MathJax === 'object'")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert marks == "", f"a student's script ran on formgrader's page: {marks}"
    assert own_scripts, "formgrader's own scripts run"


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


def test_the_tamper_report_names_each_overload(batch):
    from coursekit.pipeline.tamper import scan_graded, scan_notebook

    course, expected = batch["course"], {"stored_markup": "Markdown with <script>, a javascript: URL, an onerror handler",
                                         "formula_bomb": "a cell of 4",  # (KB)
                                         "floods_many_cells": "its outputs passed the notebook's budget"}
    for name, finding in expected.items():
        found = scan_notebook(course / "submitted" / name / "ps1" / "ps1.ipynb") + \
            scan_graded(course / "autograded" / name / "ps1" / "ps1.ipynb")
        assert any(f.what.startswith(finding) for f in found), f"{name}: {found}"
    honest = scan_graded(course / "autograded" / "solution" / "ps1" / "ps1.ipynb")
    assert honest == [] and scan_notebook(course / "submitted" / "solution" / "ps1" / "ps1.ipynb") == []


# Plain NumPy that games the finite differences: the judge's verdict catches it, no scan of the code can.
NOT_IN_TAMPER_REPORT = {"bends_forward_after_seeing_the_gradient"}


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - NOT_IN_TAMPER_REPORT))
def test_the_tamper_report_names_each_attack(name):
    from coursekit.pipeline.tamper import scan_code

    findings = scan_code("tanh", ATTACKS[name].cells["tanh"])
    assert findings and all(f.cell == "tanh" and f.line >= 1 for f in findings), f"{name} is not reported"
