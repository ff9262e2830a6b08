"""The instructor's report: what the class got wrong, counted from the failure messages' hints;
the score table's points; who follows the model solution."""
import datetime
import re
from pathlib import Path

import pytest

from conftest import CATALOGS
from coursekit.pipeline import report
from coursekit.pipeline.course import nbgrader
from coursekit.pipeline.gradebook import results
from coursekit.pipeline.grade_class import grade_class
from coursekit.pipeline.report import Mistake, mistake, mistakes
from coursekit.pipeline.results import StudentResult
from coursekit.tools.scratch import copy_course
from coursekit.tools.submissions import RawFile, Solution, submit

BUGS = {bug.name: bug for bug in CATALOGS["ps1"].BUGS}
# A class from the catalog: how many students make each mistake (one part each, distinct hints).
CLASS = {"linear_grad_biases_mean": 3, "tanh_wrong_sign": 2, "mse_no_factor_two": 1, "mlp_skips_activation": 2}
LATE = "bo"  # handed in after the due date: nbgrader's "zero" late penalty takes all its points
BROKEN = "cy"  # not a notebook
TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f UTC"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A ps1 class graded as `make grade` grades it (one late, one not a notebook), and its report."""
    submissions = {f"{name}_{i}": BUGS[name] for name, count in CLASS.items() for i in range(count)}
    submissions.update({"ada": Solution(), LATE: Solution(), BROKEN: RawFile("broken", b"not a notebook")})
    course = copy_course("ps1", tmp_path_factory.mktemp("class"), config="c.LateSubmissionPlugin.penalty_method = 'zero'")
    due = datetime.datetime(2026, 1, 10, tzinfo=datetime.timezone.utc)
    nbgrader(course, "generate_assignment", "ps1", "--force")  # (its cells in the gradebook, then its due date)
    nbgrader(course, "db", "assignment", "add", "ps1", f"--duedate={due.isoformat()}")
    for student, submission in submissions.items():
        folder = submit(course, student, "ps1", submission)
        handed = due + datetime.timedelta(days=1 if student == LATE else -1)
        (folder / "timestamp.txt").write_text(handed.strftime(TIMESTAMP))
    outcomes = grade_class("ps1", course, jobs=2, progress=False)
    report.write(course, "ps1", outcomes)
    return course


@pytest.fixture(scope="module")
def graded(course):
    return results(course, "ps1")


def test_the_class_mistakes_are_counted_as_the_catalog_predicts(graded):
    found = mistakes(graded)
    for name, count in CLASS.items():
        bug = BUGS[name]
        cells = {cell: kinds for cell, kinds in found.items() if cell.startswith(bug.cell)}
        who = {kind.students for kinds in cells.values() for kind in kinds if bug.says in kind.label}
        assert who == {tuple(f"{name}_{i}" for i in range(count))}, f"{name}: {bug.says!r} made by {who}: {cells}"
    assert not any(cell.startswith("linear") and any("sign" in kind.label for kind in kinds) for cell, kinds in found.items())


def test_a_mistake_is_the_message_hint_or_its_words_without_numbers():
    assert mistake("Linear.grad_weights has shape (2, 3), expected (3, 2) (transposed?)") == "transposed?"
    assert mistake("x has shape (1, 3), expected (3,) (an axis of size 1 added or dropped: (1, q) is not (q,))") == \
        "an axis of size 1 added or dropped: (1, q) is not (q,)"
    assert mistake("Linear.grad_biases is wrong: largest error 0.5 at index (0,) (yours 0.5, expected 1); "
                   "it equals the expected value divided by N") == "it equals the expected value divided by N"
    assert mistake("Tanh.forward(x) raised ValueError: shapes (2,) and (3,)") == "raised ValueError"
    assert mistake("the final loss is 13.86, not below 0.15") == mistake("the final loss is 0.31, not below 0.15")


def test_the_grading_sheet_keeps_the_rubrics_nested_lists(tmp_path):
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    from coursekit.judge.solutions import SOLUTION_BEGIN, SOLUTION_END
    from coursekit.pipeline.report import grading_sheet

    rubric = (f"{SOLUTION_BEGIN}\nThe gradient vanishes.\n\n- 2 points: says why\n    - 1 of them: names the derivative\n"
              f"    - 1 of them: its bound, 1/4\n- 0 points: otherwise\n{SOLUTION_END}")
    answer = new_markdown_cell(rubric, metadata={"nbgrader": {"grade": True, "solution": True, "grade_id": "why",
                                                              "points": 2, "locked": False, "schema_version": 3}})
    (tmp_path / "source" / "psx").mkdir(parents=True)
    nbformat.write(new_notebook(cells=[new_markdown_cell("Why does a deep sigmoid network learn slowly?"), answer]),
                   tmp_path / "source" / "psx" / "psx.ipynb")
    sheet = grading_sheet(tmp_path, "psx")
    nested = sheet[sheet.index("says why"):sheet.index("0 points")]
    assert "<ul>" in nested and "names the derivative" in nested, sheet


def _result(student, messages):
    """A StudentResult whose failure messages are ``messages`` {cell: [message]} (no notebook read)."""
    result = StudentResult(student, {cell: 0.0 for cell in messages}, {cell: 1.0 for cell in messages})
    result.__dict__["messages"] = {cell: [("TestFailure", text) for text in texts] for cell, texts in messages.items()}
    return result


def test_a_mistake_reads_as_a_message_does_its_case_numbers_grouped_and_names_whole():
    """Messages that differ only by a student's numbers are one mistake, labelled as one of them
    words it: no "#" for a number, and a name's digits (Pool2D, linear1) are never taken for one."""
    trained = "after training on {}: MLP.linear1.weights is not an array of numbers"
    pooled = "Pool2D((2, 2), 'max', stride=2).forward(X) is wrong: largest error {} at index (0, 1, 2, 3) (yours 0, expected {})"
    graded = {"ann": _result("ann", {"training_hidden": [trained.format("0.83 x^2 + 1.07")], "pool2d_hidden": [pooled.format(1, 2)]}),
              "ben": _result("ben", {"training_hidden": [trained.format("1.20 x^2 + 0.50")], "pool2d_hidden": [pooled.format(3, 4)]}),
              "cat": _result("cat", {"training_hidden": ["the final loss is 13.86, not below 0.15"]})}
    found = mistakes(graded)
    assert found["training_hidden"] == [Mistake(trained.format("0.83 x^2 + 1.07"), ("ann", "ben")),
                                        Mistake("the final loss is 13.86, not below 0.15", ("cat",))]
    assert found["pool2d_hidden"] == [Mistake("Pool2D((2, 2), 'max', stride=2).forward(X) is wrong", ("ann", "ben"))]
    assert mistake("Pool2D((2, 2), 'max').forward(X) is wrong") == "Pool2D((#, #), 'max').forward(X) is wrong"
    assert mistake(trained.format("3 x^2 + 1")) == "after training on # x^# + #: MLP.linear1.weights is not an array of numbers"


def test_the_score_table_has_every_kind_of_point_the_late_penalty_and_a_row_that_says_not_graded(course, graded):
    page = (course / "reports" / "ps1" / "report.html").read_text()
    table = page[page.index('<table id="scores"'):page.index("</table>", page.index('<table id="scores"'))]
    heads = [h.split("<")[0] for h in re.split(r"<th[ >]", table)[1:]]
    assert [h.split(">")[-1] for h in heads] == ["student", "formgrader", "linear", "tanh", "mlp", "mse", "training", "to grade",
                                                "late", "total", "note"], heads
    rows = {re.search(r'<td>(?:<a [^>]*>)?([\w-]+)', row).group(1): row for row in table.split("<tr")[2:]}
    assert '<td data-value="18">-18</td><td data-value="0">0</td>' in rows[LATE], rows[LATE]  # late: all 18 points taken
    assert '<td data-value="0"></td><td data-value="18">18</td>' in rows["ada"], rows["ada"]
    assert "NOT GRADED: " in rows[BROKEN] and "not graded</td>" in rows[BROKEN] and 'data-value="0"' not in rows[BROKEN]
    assert "/formgrader/" not in rows[BROKEN], "formgrader has no page for a submission the gradebook does not have"
    assert graded[LATE].total == 18, "the autograded points stay; the penalty comes off the total, as in grades.csv"


FOLLOWED = '''
def forward(self, x):
    self.x = x
    return x @ self.weights.T + self.biases

def backward(self, grad_output):
    self.grad_weights = grad_output.T @ self.x
    self.grad_biases = grad_output.sum(axis=0)
    return grad_output @ self.weights
'''
UNUSUAL = '''
def forward(self, x):
    self.x = np.array(x, copy=True)
    out = np.einsum("bi,oi->bo", self.x, self.weights)
    out = out + self.biases[None, :]
    return out

def backward(self, grad_output):
    self.grad_weights = np.einsum("bo,bi->oi", grad_output, self.x)
    self.grad_biases = np.einsum("bo->o", grad_output)
    return np.einsum("bo,oi->bi", grad_output, self.weights)
'''


def _renamed(code, i):
    return code.replace("grad_output", f"upstream{i}").replace("out", f"result{i}")


def test_the_answers_that_follow_the_model_solution_are_those_that_share_what_the_class_does_not_write():
    from coursekit.pipeline.similarity import class_pairs

    starter = {"linear": "def forward(self, x):\n    pass\n\ndef backward(self, grad_output):\n    pass\n"}
    # a correct class that writes Linear as the model solution does: close to it, but that says nothing
    obvious = {f"s{i}": {"linear": _renamed(FOLLOWED, i)} for i in range(10)}
    found = class_pairs(obvious, starter, {"linear": FOLLOWED})
    assert len(found.model["linear"]) == 10 and found.followers["linear"] == []
    # the model solution is written an unusual way: the two who wrote it so follow it, the others do not
    leaked = {**obvious, "mo": {"linear": _renamed(UNUSUAL, 98)}, "nia": {"linear": _renamed(UNUSUAL, 99)}}
    found = class_pairs(leaked, starter, {"linear": UNUSUAL})
    assert [student for _, student in found.followers["linear"]] == ["mo", "nia"], found.followers
    assert all(score == 1 for score, _ in found.followers["linear"])


def _rows(browser):
    """[(student, total's data-value, shown)] of the score table, as the browser has them now."""
    return [tuple(row) for row in browser.run("""return [...document.querySelectorAll("#scores tbody tr")].map(r =>
        [r.cells[0].textContent.trim(), r.cells[r.cells.length - 2].dataset.value, !r.hidden]);""")]


def test_the_score_table_sorts_by_a_column_and_filters_by_typed_text_in_headless_chromium(course):
    from browser import chromium

    with chromium(width=1300, height=1000) as browser:
        browser.open((course / "reports" / "ps1" / "report.html").as_uri())
        browser.click("""return [...document.querySelectorAll("#scores th")].find(h => h.textContent.startsWith("total"))""")
        rows = _rows(browser)
        totals = [float(value) for _, value, _ in rows[:-1]]
        assert totals == sorted(totals) and totals[0] < totals[-1] and rows[-1][:2] == (BROKEN, ""), rows
        browser.click("""return [...document.querySelectorAll("#scores th")].find(h => h.textContent.startsWith("total"))""")
        rows = _rows(browser)
        totals = [float(value) for _, value, _ in rows[:-1]]
        assert totals == sorted(totals, reverse=True) and rows[-1][0] == BROKEN, "not graded stays last either way"
        browser.click("""return [...document.querySelectorAll("#scores th")].find(h => h.textContent === "student")""")
        assert [student for student, _, _ in _rows(browser)] == sorted(student for student, _, _ in rows)
        browser.type("return document.getElementById('scores-filter')", "not graded")
        assert [student for student, _, shown in _rows(browser) if shown] == [BROKEN]
        assert browser.run("return document.getElementById('scores-shown').textContent") == "1 of 11 rows shown"
        browser.run("const box = document.getElementById('scores-filter'); box.value = ''; box.dispatchEvent(new Event('input'))")
        browser.type("return document.getElementById('scores-filter')", "NotImplementedError")
        assert [student for student, _, shown in _rows(browser) if shown] == [], "the filter reads the table's text alone"
        browser.run("const box = document.getElementById('scores-filter'); box.value = ''; box.dispatchEvent(new Event('input'))")
        browser.type("return document.getElementById('scores-filter')", "linear_grad")
        assert {student for student, _, shown in _rows(browser) if shown} == {f"linear_grad_biases_mean_{i}" for i in range(3)}


def test_only_the_reports_own_script_runs_on_its_page(tmp_path):
    """Its Content-Security-Policy lets the report's script run (by its hash) and no other: markup
    that reached the page unescaped would stay inert."""
    from browser import chromium

    body = ('<table id="scores" class="sortable"><thead><tr><th>student</th></tr></thead>'
            '<tbody><tr><td>b</td></tr><tr><td>a</td></tr></tbody></table>'
            '<script>document.title = "ran"</script><img src="x" onerror="document.title = \'ran\'">')
    (tmp_path / "page.html").write_text(report.page("a report", body))
    with chromium(width=800, height=600) as browser:
        browser.open((tmp_path / "page.html").as_uri())
        assert browser.run("return document.title") == "a report"
        assert browser.run("return document.querySelector('#scores th').title") == "sort by student", "its own script ran"


def _formgrader_handler(path):
    """The name of formgrader's handler (nbgrader's URL table) that serves ``path``, and its groups."""
    from nbgrader.server_extensions.formgrader.handlers import default_handlers

    for pattern, handler, *_ in default_handlers:
        matched = re.fullmatch(pattern, path)
        if matched:
            return handler.__name__, matched.groups()
    return None, ()


def test_every_link_of_the_report_opens_the_page_it_names(course):
    """Each link to a file (a feedback page, the similarity page, the grading sheet) names a file
    that exists, and the anchor it names is in it; each link to formgrader is a page of
    formgrader's (nbgrader's own URL table) for a student and a submission in the gradebook."""
    import urllib.parse

    from browser import chromium
    from nbgrader.api import Gradebook

    from coursekit.pipeline.course import gradebook_file

    with chromium() as browser:
        browser.open((course / "reports" / "ps1" / "report.html").as_uri())
        links = browser.run("return [...document.querySelectorAll('a[href]')].map(a => [a.href, a.textContent])")
    assert not [href for href, _ in links if not href.startswith(("file://", report.formgrader_url()))], links
    files = [href for href, _ in links if href.startswith("file://")]
    formgrader = [href[len(report.formgrader_url()):] for href, _ in links if not href.startswith("file://")]
    assert len([href for href in files if "/feedback/" in href]) > 10 and len(formgrader) >= 20, links
    for href in files:
        parsed = urllib.parse.urlparse(href)
        target = Path(urllib.parse.unquote(parsed.path))
        assert target.is_file(), href
        if parsed.fragment:
            assert re.search(f'(id|name)="{parsed.fragment}"', target.read_text()), f"{href}: no such anchor"
    with Gradebook(f"sqlite:///{gradebook_file(course)}") as gradebook:
        for path in formgrader:
            handler, groups = _formgrader_handler(path)
            if handler == "SubmissionHandler":
                (notebook_id,) = groups
                assert gradebook.find_submission_notebook_by_id(notebook_id).assignment.name == "ps1", path
            else:
                assert handler == "ManageStudentNotebookSubmissionsHandler", f"{path}: not a page of formgrader's"
                student, assignment = groups
                assert gradebook.find_submission(assignment, student), path


# ps3's parts and points, as its demo class has them, and the longest reason a demo student is not graded for
PS3_PARTS = {"relu": 2, "fullyconnected": 6, "softmax": 5, "crossentropy": 3, "network": 6, "training": 2, "einsum": 4,
             "conv2d": 7, "pool2d": 5, "pytorch": 7}
NOT_A_NOTEBOOK = "ps3.ipynb is not UTF-8 text (byte 0): not a notebook file"


def test_the_ps3_score_table_fits_a_1300_pixel_window_with_its_not_graded_note(tmp_path):
    cells = {f"{part}_hidden": float(points) for part, points in PS3_PARTS.items()}
    graded = {f"student{i:02}": StudentResult(f"student{i:02}", dict(cells), dict(cells)) for i in range(12)}
    books = {student: report.Submission(written=0, to_grade=12, late_penalty=0, total=47, notebook_id=f"{i:032x}")
             for i, student in enumerate(graded)}
    students = [*graded, "zed"]
    table = report.score_table_html("ps3", graded, students, {"zed": NOT_A_NOTEBOOK}, books, 12, 59, set(graded),
                                    {"student03": "test cells put back: conv2d_hidden, pool2d_hidden"})
    (tmp_path / "report.html").write_text(report.page("ps3: grading report", table))
    from browser import chromium

    with chromium(width=1300, height=900) as browser:
        browser.open((tmp_path / "report.html").as_uri())
        laid = browser.run("""
            const note = [...document.querySelectorAll("#scores td.note")].find(td => td.textContent.includes("NOT GRADED"));
            const box = note.getBoundingClientRect(), wide = document.querySelector("div.wide");
            return {right: box.right, window: document.documentElement.clientWidth, page: document.documentElement.scrollWidth,
                    table: document.getElementById("scores").getBoundingClientRect().right, box: wide.getBoundingClientRect().right,
                    text: note.textContent};""")
    assert laid["page"] <= laid["window"], f"the page scrolls sideways: {laid}"
    assert laid["table"] <= laid["box"] + 1 and laid["right"] <= laid["window"], f"the note is cut off: {laid}"
    assert laid["text"] == f"NOT GRADED: {NOT_A_NOTEBOOK}"


def test_a_report_served_by_a_jupyter_server_links_that_servers_formgrader(tmp_path):
    """Under a Jupyter server's /files/ (JupyterLab's "Open in New Browser Tab"), report.js
    re-bases the links to formgrader on that server (a hub's /user/<name>/ included)."""
    import subprocess
    import sys

    from browser import chromium, free_port, wait_for_http

    served = tmp_path / "user" / "ck-instructor" / "files" / "course" / "reports" / "ps1"
    served.mkdir(parents=True)
    cells = {"linear_hidden": 6.0}
    graded = {"ada": StudentResult("ada", cells, cells)}
    books = {"ada": report.Submission(0, 0, 0, 6, "0123abcd")}
    (served / "report.html").write_text(report.page("ps1", report.score_table_html("ps1", graded, ["ada"], {}, books, 0, 6, set())))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/")
        with chromium() as browser:
            browser.open(f"http://127.0.0.1:{port}/user/ck-instructor/files/course/reports/ps1/report.html")
            links = browser.run("return [...document.querySelectorAll('#scores a')].map(a => a.href)")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert links == [f"http://127.0.0.1:{port}/user/ck-instructor/formgrader/manage_students/ada/ps1",
                     f"http://127.0.0.1:{port}/user/ck-instructor/formgrader/submissions/0123abcd"], links
