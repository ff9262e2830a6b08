"""The whole term on the course hub that `make hub` starts (coursekit.tools.hub, hub/), in headless
Chromium where a person would click: students log in, fetch ps1 from the Assignments tab, answer,
run a visible test and submit; the instructor, not root, collects and autogrades from formgrader
and with `make grade`, and releases feedback; each student fetches it and opens it. Students
reach neither formgrader nor another home nor the course.

The hub has users of its own (ckt-*), removed afterwards, its own exchange and port, and the
environment `make hub` installs (/opt/coursekit-hub). Root sets it up, as `make hub` needs.
"""
import contextlib
import json
import os
import re
import signal
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
import requests

from browser import chromium, wait_for_http
from coursekit.tools import hub as course_hub
from coursekit.tools.submissions import Bug, Solution

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

INSTRUCTOR = "ckt-instructor"
SUBMISSIONS = {"ckt-ada": Solution(),
               "ckt-chen": Bug("mean_bias", "linear", "grad_output.sum(axis=0)", "grad_output.mean(axis=0)")}
SCREENSHOTS = os.environ.get("COURSEKIT_SCREENSHOTS")  # a folder to keep the screenshots in

MENU = "return [...document.querySelectorAll('.lm-MenuBar-item')].find(e => e.textContent.trim() === arguments[0])"
MENU_ITEMS = "return [...document.querySelectorAll('.lm-Menu-item')].map(e => e.textContent.trim()).filter(Boolean)"


def _free_ports(count=82):
    """A port whose neighbours the hub also takes (its proxy's API: +1, the hub itself: +81) are free."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + count < 65536 and all(_free(port + offset) for offset in (1, 81)):
            return port
    raise RuntimeError("no free ports for the hub")


def _free(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class Session:
    """A user logged in to the hub over HTTP, as the browser does (cookies and XSRF tokens)."""

    def __init__(self, url, name, password):
        self.url, self.name, self.http = url, name, requests.Session()
        self.http.get(f"{url}/hub/login")
        done = self.http.post(f"{url}/hub/login", data={"username": name, "password": password,
                                                        "_xsrf": self.http.cookies.get("_xsrf", path="/hub/")})
        assert done.ok and "/hub/login" not in done.url, f"{name} could not log in"

    def start(self):
        """Start the user's server and wait until it answers them."""
        self.http.post(f"{self.url}/hub/api/users/{self.name}/server",
                       headers={"X-XSRFToken": self.http.cookies.get("_xsrf", path="/hub/")})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            page = self.http.get(f"{self.url}/user/{self.name}/lab")
            if page.ok and "jupyter-config-data" in page.text:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}'s server did not start")

    def get(self, path):
        return self.http.get(f"{self.url}/user/{self.name}/{path}")

    def post(self, path, **options):
        return self.http.post(f"{self.url}/user/{self.name}/{path}", **options,
                              headers={"X-XSRFToken": self.http.cookies.get("_xsrf", path=f"/user/{self.name}/")})

    def put(self, path, **options):
        return self.http.put(f"{self.url}/user/{self.name}/{path}", **options,
                             headers={"X-XSRFToken": self.http.cookies.get("_xsrf", path=f"/user/{self.name}/")})


def log_in(browser, url, name, password):
    browser.open(f"{url}/hub/logout")  # (whoever was logged in before)
    browser.open(f"{url}/hub/login")
    browser.wait_for("return document.querySelector('#username_input')")
    browser.run("document.querySelector('#username_input').value = arguments[0];"
                "document.querySelector('#password_input').value = arguments[1];"
                "document.querySelector('#login_submit').click()", name, password)
    browser.wait_for("return document.querySelector('.jp-LauncherCard, .jp-Notebook')", timeout=120)


def open_menu(browser, menu, item=None):
    """The items of JupyterLab's ``menu``; with ``item``, click the one that starts with it."""
    browser.click(MENU.replace("arguments[0]", json.dumps(menu)))
    items = browser.wait_for(MENU_ITEMS)
    if item:
        browser.click("return [...document.querySelectorAll('.lm-Menu-item')]"
                      f".find(e => e.textContent.trim().startsWith({json.dumps(item)}))")
    else:
        browser.run("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', keyCode: 27, bubbles: true}))")
    return items


def click_in_assignments(browser, button, assignment="ps1"):
    """Click ``button`` (Fetch, Submit, Fetch Feedback) on ``assignment``'s row of the Assignments tab."""
    browser.click(f"return [...document.querySelectorAll('.lm-DockPanel button')].find(b => b.textContent.trim() === "
                  f"{json.dumps(button)} && b.closest('.list_item').textContent.includes({json.dumps(assignment)}))")


# formgrader's link in a table cell of the row that names ``name`` (its links are icons)
ROW = "return [...document.querySelectorAll('tr')].find(r => r.textContent.includes({name}))?.querySelector('td.{cell} a')"


def close_modal(browser, timeout=180):
    """The text of formgrader's answer (a dialog), once it comes; the dialog closed."""
    text = browser.wait_for("const m = document.querySelector('#success-modal, #error-modal');"
                            "return m && m.querySelector('.modal-body').innerText", timeout)
    browser.run("document.querySelector('#success-modal, #error-modal').querySelector('.modal-footer button').click()")
    browser.wait_for("return !document.querySelector('#success-modal, #error-modal')")
    return text


def find_output(browser, texts):
    """The first output that holds one of ``texts``, scrolling through the notebook (JupyterLab
    renders only the cells in view)."""
    browser.run("document.querySelector('.jp-WindowedPanel-outer').scrollTop = 0")
    for _ in range(200):
        found = browser.run(
            "const outputs = [...document.querySelectorAll('.jp-OutputArea-output')];"
            "for (const text of arguments[0]) {"
            "  const hit = outputs.find(o => o.innerText.includes(text));"
            "  if (hit) { hit.scrollIntoView({block: 'center'}); return hit.innerText; } }"
            "const pane = document.querySelector('.jp-WindowedPanel-outer');"
            "if (pane.scrollTop + pane.clientHeight >= pane.scrollHeight) return 'END';"
            "pane.scrollTop += pane.clientHeight / 2; return null;", list(texts))
        if found == "END":
            break
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no output holds any of {texts}")


def shot(browser, folder, name):
    browser.screenshot(folder / f"{name}.png")
    if SCREENSHOTS:
        shutil.copy(folder / f"{name}.png", SCREENSHOTS)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the course hub's users are system users: root sets it up")
    course_hub.install(course_hub.PREFIX)
    prefix = Path(tempfile.mkdtemp(prefix="ck-hub-test-"))
    port = _free_ports()
    found = course_hub.setup(prefix, port, INSTRUCTOR, tuple(SUBMISSIONS), environment=course_hub.PREFIX,
                             exchange=prefix / "exchange")
    process = course_hub.start(prefix)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/hub/login", timeout=120)
        deadline = time.monotonic() + 60  # (the proxy answers 404 until the hub has added its route)
        while requests.get(f"{url}/hub/login").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        yield {"url": url, "passwords": found["passwords"], "course": Path(found["courses"][INSTRUCTOR]),
               "exchange": prefix / "exchange", "shots": tmp_path_factory.mktemp("screenshots"), "log": prefix / "state" / "jupyterhub.log"}
    finally:
        process.terminate()
        process.wait(timeout=60)
        with contextlib.suppress(OSError, ValueError):  # (the hub stops its proxy, unless it failed to start)
            os.kill(int((prefix / "state" / "proxy.pid").read_text()), signal.SIGTERM)
        subprocess.run(["pkill", "-u", ",".join([INSTRUCTOR, *SUBMISSIONS])], capture_output=True)
        time.sleep(1)
        course_hub.remove_users([INSTRUCTOR, *SUBMISSIONS])
        shutil.rmtree(prefix, ignore_errors=True)


def as_user(name, *command):
    """``command`` run by the system user ``name`` in their home, as in their server's terminal."""
    return subprocess.run([course_hub.system_command("runuser"), "-u", name, "--", "sh", "-c", " ".join(command)],
                          capture_output=True, text=True, cwd="/",
                          env={"HOME": f"/home/{name}", "PATH": course_hub.search_path(course_hub.PREFIX)})


@pytest.fixture(scope="module")
def term(hub):
    """The term, step by step; what each step showed, for the tests to check."""
    seen = {}
    instructor = Session(hub["url"], INSTRUCTOR, hub["passwords"][INSTRUCTOR])
    instructor.start()
    for step in ("assign", "release"):  # formgrader's Generate and Release buttons call these
        done = instructor.post(f"formgrader/api/assignment/ps1/{step}")
        assert done.ok and done.json()["success"], done.text[:2000]
    with chromium(width=1300, height=900) as browser:
        for student, submission in SUBMISSIONS.items():
            seen[student] = _student_works(browser, hub, student, submission)
    with chromium(width=1300, height=900) as browser:
        log_in(browser, hub["url"], INSTRUCTOR, hub["passwords"][INSTRUCTOR])
        seen["instructor menu"] = open_menu(browser, "Nbgrader", "Formgrader")
        seen["formgrader in jupyterlab"] = browser.wait_for(  # (in a frame of JupyterLab's, same origin)
            "const frame = document.querySelector('.lm-DockPanel iframe');"
            "return frame && frame.contentDocument && frame.contentDocument.body && frame.contentDocument.body.innerText")
        shot(browser, hub["shots"], "formgrader-in-jupyterlab")
        base = f"{hub['url']}/user/{INSTRUCTOR}/formgrader"
        browser.open(f"{base}/manage_assignments")
        browser.click(ROW.format(name=json.dumps("ps1"), cell="collect"))
        seen["collect"] = close_modal(browser)
        browser.open(f"{base}/manage_submissions/ps1")
        for student in SUBMISSIONS:
            browser.click(ROW.format(name=json.dumps(student), cell="autograde"))
            seen[f"autograde {student}"] = close_modal(browser)
        seen["formgrader scores"] = {s["student"]: s["score"] for s in instructor.get("formgrader/api/submissions/ps1").json()}
        shot(browser, hub["shots"], "formgrader-submissions")
    seen["make grade"] = as_user(INSTRUCTOR, f"cd {hub['course']} && make grade A=ps1 VENV={course_hub.PREFIX}/venv")
    seen["make grade scores"] = {s["student"]: s["score"] for s in instructor.get("formgrader/api/submissions/ps1").json()}
    for step in ("generate_feedback", "release_feedback"):
        done = instructor.post(f"formgrader/api/assignment/ps1/{step}")
        assert done.ok and done.json()["success"], done.text[:2000]
    with chromium(width=1300, height=900) as browser:
        for student in SUBMISSIONS:
            seen[student].update(_student_reads_feedback(browser, hub, student))
    seen["students"] = {s["id"]: s["first_name"] for s in instructor.get("formgrader/api/students").json()}
    seen["course files"] = [str(p) for p in [hub["course"], *hub["course"].rglob("*")]
                            if p.lstat().st_uid != _uid(INSTRUCTOR)]
    return seen


def _uid(name):
    import pwd

    return pwd.getpwnam(name).pw_uid


def _student_works(browser, hub, student, submission):
    """Log in, fetch ps1 from the Assignments tab, answer (contents API), run the notebook, submit."""
    seen = {}
    log_in(browser, hub["url"], student, hub["passwords"][student])
    seen["menu"] = open_menu(browser, "Nbgrader", "Assignment List")
    click_in_assignments(browser, "Fetch")
    browser.wait_for("return [...document.querySelectorAll('.lm-DockPanel button')].some(b => b.textContent.trim() === 'Submit')")
    shot(browser, hub["shots"], f"{student}-fetched")
    api = Session(hub["url"], student, hub["passwords"][student])
    release = nbformat.from_dict(api.get("api/contents/ps1/ps1.ipynb").json()["content"])
    answered = json.loads(submission.content("ps1", release))
    assert api.put("api/contents/ps1/ps1.ipynb", json={"type": "notebook", "format": "json", "content": answered}).ok
    browser.open(f"{hub['url']}/user/{student}/lab/tree/ps1/ps1.ipynb")
    browser.wait_for("return document.querySelectorAll('.jp-Notebook .jp-Cell').length > 10 && "
                     "document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-KernelStatus') !== null", timeout=120)
    open_menu(browser, "Run", "Run All Cells")
    browser.wait_for("return /\\| Idle/.test(document.querySelector('.jp-StatusBar-Widget, #jp-main-statusbar').innerText)"
                     " && ![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.innerText.includes('*'))", timeout=180)
    seen["visible test"] = find_output(browser, ("TestFailure", "Visible tests for Linear passed"))
    shot(browser, hub["shots"], f"{student}-visible-test")
    open_menu(browser, "Nbgrader", "Assignment List")
    click_in_assignments(browser, "Submit")
    # (the Submitted assignments list gets a row with the submission's time)
    browser.wait_for("return [...document.querySelectorAll('.lm-DockPanel .nested_list_item')]"
                     ".some(i => /\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d/.test(i.textContent))", timeout=120)
    shot(browser, hub["shots"], f"{student}-submitted")
    seen["formgrader"] = api.get("formgrader").status_code
    seen["other server"] = api.http.get(f"{hub['url']}/user/{INSTRUCTOR}/api/contents").status_code
    return seen


def _student_reads_feedback(browser, hub, student):
    """Fetch Feedback in the Assignments tab, then open the page it fetched."""
    log_in(browser, hub["url"], student, hub["passwords"][student])
    open_menu(browser, "Nbgrader", "Assignment List")
    click_in_assignments(browser, "Fetch Feedback")
    browser.wait_for("return document.querySelector('.lm-DockPanel').innerText.includes('(view feedback)')", timeout=120)
    listed = Session(hub["url"], student, hub["passwords"][student]).get(f"assignments?course_id={course_hub.COURSE_ID}").json()
    folder = max(re.findall(r'"local_feedback_path": "([^"]+)"', json.dumps(listed)))  # (the latest submission's)
    browser.open(f"{hub['url']}/user/{student}/files/{folder}/ps1.html")
    page = browser.wait_for("return document.body && document.body.innerText.includes('Score') && document.body.innerText")
    shot(browser, hub["shots"], f"{student}-feedback")
    return {"feedback": page}


@pytest.fixture(scope="module")
def hand_graded(hub, term):
    """ps3, which ckt-ada hands in through her server's API, graded with `make grade`; then the
    instructor grades her written answer relu_written by hand on formgrader's page."""
    instructor = Session(hub["url"], INSTRUCTOR, hub["passwords"][INSTRUCTOR])
    for step in ("assign", "release"):
        assert instructor.post(f"formgrader/api/assignment/ps3/{step}").json()["success"]
    ada = Session(hub["url"], "ckt-ada", hub["passwords"]["ckt-ada"])
    ada.start()
    ids = {"assignment_id": "ps3", "course_id": course_hub.COURSE_ID}
    assert ada.post("assignments/fetch", data=ids).json()["success"]
    release = nbformat.from_dict(ada.get("api/contents/ps3/ps3.ipynb").json()["content"])
    answered = json.loads(Solution().content("ps3", release))
    assert ada.put("api/contents/ps3/ps3.ipynb", json={"type": "notebook", "format": "json", "content": answered}).ok
    assert ada.post("assignments/submit", data=ids).json()["success"]
    assert instructor.post("formgrader/api/assignment/ps3/collect").json()["success"]
    graded = as_user(INSTRUCTOR, f"cd {hub['course']} && make grade A=ps3 VENV={course_hub.PREFIX}/venv")
    assert graded.returncode == 0, graded.stderr[-3000:]
    (notebook,) = instructor.get("formgrader/api/submitted_notebooks/ps3/ps3").json()
    with chromium(width=1300, height=900) as browser:
        log_in(browser, hub["url"], INSTRUCTOR, hub["passwords"][INSTRUCTOR])
        browser.open(f"{hub['url']}/user/{INSTRUCTOR}/formgrader/submissions/{notebook['id']}/")
        cell = "document.querySelector('#relu_written').closest('.nbgrader_cell')"
        browser.wait_for(f"return {cell} && {cell}.querySelectorAll('.MathJax, .MathJax_Display').length > 0", timeout=60)
        seen = {"answer": browser.run(f"{cell}.scrollIntoView(); return {cell}.innerText")}
        browser.type("return document.querySelector('#relu_written')", "1")
        browser.run("document.querySelector('#relu_written').blur()")  # formgrader saves on change
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            grades = instructor.get(f"formgrader/api/grades?submission_id={notebook['id']}").json()
            seen["manual score"] = {grade["name"]: grade["manual_score"] for grade in grades}.get("relu_written")
            if seen["manual score"] is not None:
                break
            time.sleep(0.5)
        shot(browser, hub["shots"], "formgrader-written-answer")
    return seen


def test_a_written_answer_is_graded_by_hand_in_formgrader_with_its_math_rendered(hand_graded):
    assert hand_graded["manual score"] == 1
    answer = hand_graded["answer"]
    assert "elementwise" in answer and "$" not in answer and "\\frac" not in answer, answer[:500]


def test_students_fetch_run_and_submit_in_jupyterlab(term):
    assert term["ckt-ada"]["visible test"].startswith("Visible tests for Linear passed")
    failure = term["ckt-chen"]["visible test"]
    assert "TestFailure: Linear.grad_biases is wrong" in failure and "Traceback" not in failure, failure


def test_the_instructor_grades_from_formgrader_and_with_make_grade_without_root(term):
    assert "ckt-ada" in term["collect"] and "ckt-chen" in term["collect"], term["collect"]
    assert "Manage Assignments" in term["formgrader in jupyterlab"], term["formgrader in jupyterlab"][:500]
    assert term["formgrader scores"] == {"ckt-ada": 18.0, "ckt-chen": 12.0}
    assert term["make grade"].returncode == 0, term["make grade"].stderr[-3000:]
    assert "rootless mode" in term["make grade"].stderr
    assert term["make grade scores"] == term["formgrader scores"]
    assert not term["course files"], f"files in the course that are not the instructor's: {term['course files'][:5]}"
    assert term["students"] == {"ckt-ada": "Ada", "ckt-chen": "Chen"}, "make hub names the demo class in the gradebook"


def test_each_student_reads_their_feedback_in_the_browser(term):
    ada, chen = term["ckt-ada"]["feedback"], term["ckt-chen"]["feedback"]
    assert re.search(r"Score:?\s*18(\.0)?\s*/\s*18", ada), ada[:1000]
    assert re.search(r"Score:?\s*12(\.0)?\s*/\s*18", chen) and "grad_biases" in chen, chen[:1000]


def test_students_reach_neither_formgrader_nor_another_home_nor_the_course(hub, term):
    assert "Formgrader" in term["instructor menu"] and "Create assignment" in " ".join(term["instructor menu"])
    for student in SUBMISSIONS:
        assert term[student]["menu"] == ["Assignment List"], term[student]["menu"]
        assert term[student]["formgrader"] == 404
        assert term[student]["other server"] in (403, 404) or term[student]["other server"] >= 300
    ada, chen = SUBMISSIONS
    for path in (f"/home/{chen}/ps1/ps1.ipynb", f"{hub['course']}/gradebook.db", f"{hub['course']}/source/ps1/ps1.ipynb",
                 f"{hub['course']}/hidden_inputs.key"):
        tried = as_user(ada, f"cat {path}")
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, (path, tried.stdout[:200], tried.stderr)
    listed = as_user(ada, f"ls {hub['exchange']}/{course_hub.COURSE_ID}/inbound")
    assert listed.returncode != 0, "a student listed the exchange's submissions"
