"""The feedback page a student opens (templates/course_feedback, FeedbackHTMLExporter)."""
import os
import re
import shutil

import pytest

from browser import chromium

from coursekit.tools.scratch import grade_submissions
from coursekit.tools.submissions import Bug, Solution

MEAN_BIAS = Bug("mean_bias", "linear", "grad_output.sum(axis=0)", "grad_output.mean(axis=0)")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{name: feedback HTML}: ps1 with one bug, and the ps3 solution before any manual grading."""
    found = {}
    for assignment, name, submission in [("ps1", "mean_bias", MEAN_BIAS), ("ps3", "solution", Solution())]:
        result = grade_submissions(assignment, {name: submission}, tmp_path_factory.mktemp(assignment))[name]
        page = result.autograded.parents[3] / "feedback" / name / assignment / f"{assignment}.html"
        found[assignment] = page
    return found


def test_every_graded_cell_is_named_with_its_score(pages):
    page = pages["ps1"].read_text()
    contents = page[page.index('<div id="toc">'):page.index("</ol>")]
    named = re.findall(r'<a href="#(\w+)"><code>(\w+)</code></a>\s*\((\w[\w ]*)\): Score: ([\d.]+) / ([\d.]+)', contents)
    assert [(anchor == name, kind) for anchor, name, kind, _, _ in named] == [(True, "tests")] * 11
    assert re.search(r'<code>training_check</code></a>\s*\(tests\): <span class="unscored">not scored', contents)  # 0 points
    assert {name: float(score) for _, name, _, score, _ in named}["linear_backward"] == 0


def test_answers_still_to_be_graded_by_hand_say_so_instead_of_zero(pages):
    page = pages["ps3"].read_text()
    assert re.search(r"<code>relu_written</code></a>\s*\(written answer\): <span class=\"ungraded\">to be graded by hand "
                     r"\(1.0 points\)", page)
    assert "12.0 points still to be graded by hand" in page  # the written answers of ps3


def test_the_page_loads_nothing_from_the_internet_and_its_math_is_mathml(pages):
    page = pages["ps1"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page fetches from the internet"
    assert page.count("<math") > 20 and not re.search(r"\$[^$\s][^$]*\\[a-z]+[^$]*\$", page), "LaTeX left as text"


def test_the_failure_message_wraps_and_the_math_renders_in_headless_chromium(pages):
    """The browser lays the page out: no error message is wider than its box, and every formula
    is laid out as MathML, with a height. (The probe runs through WebDriver: the page itself
    runs no script, its own policy says so.)"""
    with chromium(width=800, height=1000) as browser:
        browser.open(pages["ps1"].as_uri())
        numbers = browser.run("""
          const wide = [...document.querySelectorAll("div.output_error pre")].filter(p => p.scrollWidth > p.clientWidth + 1);
          const maths = [...document.querySelectorAll("math")];
          const laid = maths.filter(m => getComputedStyle(m).display.includes("math") && m.getBoundingClientRect().height > 5);
          return {errors: document.querySelectorAll("div.output_error pre").length, wide: wide.length,
                  maths: maths.length, laid: laid.length};""")
    assert numbers["errors"] >= 1 and numbers["wide"] == 0, numbers
    assert numbers["maths"] > 20 and numbers["laid"] == numbers["maths"], numbers


def test_a_page_made_from_remembered_cells_is_the_page_made_from_scratch():
    """The exporter renders each Markdown cell and highlights each code cell once per process."""
    import os

    import nbgrader
    from traitlets.config import Config

    from coursekit.pipeline.plugins import feedback_page
    from coursekit.tools.submissions import release_notebook

    config = Config()  # what nbgrader's generate_feedback configures
    config.HTMLExporter.template_name = "feedback"
    formgrader = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader")
    config.HTMLExporter.extra_template_basedirs = [os.path.join(formgrader, "templates")]
    config.HTMLExporter.extra_template_paths = [os.path.join(formgrader, "static", "node_modules", "bootstrap", "dist", "css")]
    resources = {"nbgrader": {"notebook": "ps3", "score": 0, "max_score": 59, "late_penalty": 0, "ungraded_points": 12}}
    notebook = release_notebook("ps3")
    for cell in notebook.cells:  # as GetGrades leaves them
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata.nbgrader.update(score=0.0, ungraded=cell.cell_type == "markdown", comment=None)
    feedback_page._remembered.found.clear()
    pages = [feedback_page.FeedbackHTMLExporter(config=config).from_notebook_node(notebook, resources)[0]
             for _ in range(2)]
    pages = [re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "UUID", page) for page in pages]
    assert len(feedback_page._remembered.found) > 50 and pages[0] == pages[1] and pages[0].count("<math") > 50


def test_what_the_exporter_remembers_is_bounded_in_bytes():
    from coursekit.pipeline.plugins.feedback_page import _Remembered

    remembered = _Remembered(limit=1600)
    assert remembered(("code", "x" * 500, ""), lambda: "y" * 500) == "y" * 500 and not remembered.found  # too big
    for i in range(50):
        remembered(("code", f"cell {i}", ""), lambda: "z" * 40)
    assert remembered.bytes <= 1600 and 0 < len(remembered.found) < 50
    calls = []
    remembered(("code", "cell 49", ""), lambda: calls.append(1) or "again")
    assert calls == [], "the last one is still remembered"


def test_a_hostile_output_cannot_slow_the_page_or_break_its_markup():
    """The attribute pass works in linear time on any text, leaves tags inside attributes,
    comments and raw-text elements alone, and math that is not MathML alone stays escaped LaTeX."""
    import time

    from coursekit.pipeline.plugins.feedback_page import _accessible, markdown_with_mathml

    began = time.process_time()
    _accessible('<div class="jp-Notebook">' + "<img a " * 100_000 + "</div>")
    assert time.process_time() - began < 2, "the pass must not rescan the page from every '<'"
    kept = '<span title="<img src=x>">t</span><!-- <img src=z> --><textarea><img src=w></textarea>'
    assert _accessible(kept) == kept
    page = markdown_with_mathml(r"$\text{<img src='x' onerror='steal()'/>}$ and $\text{x<y & z}$ and $\frac{1}{2}$")
    assert "<img" not in page and "&lt;" in page and page.count("<math") == 1


# A page made here, without grading: ps1's release with scores, and a failure message in a visible test
LONG_MESSAGE = ("TestFailure: Linear.grad_biases (Linear(3, 5), batch of 7) is wrong: largest error 5.25 at index (3,) "
                "(yours -0.875677, expected -6.12974); it is the mean over the batch: the loss adds up every sample's "
                "contribution, so the expected value is the sum, not the mean, divided by nothing at all")


@pytest.fixture(scope="module")
def made_page(tmp_path_factory):
    """(path, HTML) of ps1's feedback page as generate_feedback makes it from a graded notebook."""
    import os

    import nbformat
    import nbgrader
    from traitlets.config import Config

    from coursekit.pipeline.plugins import feedback_page
    from coursekit.tools.submissions import release_notebook

    config = Config()  # what nbgrader's generate_feedback configures
    config.HTMLExporter.template_name = "feedback"
    formgrader = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader")
    config.HTMLExporter.extra_template_basedirs = [os.path.join(formgrader, "templates")]
    config.HTMLExporter.extra_template_paths = [os.path.join(formgrader, "static", "node_modules", "bootstrap", "dist", "css")]
    notebook = release_notebook("ps1")
    for cell in notebook.cells:  # as GetGrades leaves them
        grading = cell.metadata.get("nbgrader", {})
        if grading.get("grade"):
            grading.update(score=0.0 if grading.grade_id == "linear_visible" else grading.points, ungraded=False, comment=None)
        if grading.get("grade_id") == "linear_visible":  # as HideHiddenTests leaves a failure
            name, value = LONG_MESSAGE.split(": ", 1)
            cell.outputs = [nbformat.v4.new_output("error", ename=name, evalue=value, traceback=[LONG_MESSAGE])]
    resources = {"nbgrader": {"notebook": "ps1", "score": 17, "max_score": 18, "late_penalty": 0, "ungraded_points": 0}}
    html = feedback_page.FeedbackHTMLExporter(config=config).from_notebook_node(notebook, resources)[0]
    path = tmp_path_factory.mktemp("feedback") / "ps1.html"
    path.write_text(html)
    return path, html


def test_a_cell_worth_no_points_shows_no_score(made_page):
    """ps1's training_check (0 points: it shows that training runs; the hidden test gives the points)
    is "not scored" in the contents and in its heading, not "Score: 0.0 / 0.0", which reads as failed."""
    _, html = made_page
    assert "0.0 / 0.0" not in html
    assert re.search(r'<code>training_check</code></a>\s*\(tests\): <span class="unscored">not scored \(0 points\)</span>', html)
    heading = html[html.index('<a name="training_check"></a>'):]
    assert '<span class="pull-right"><span class="unscored">not scored (0 points)</span>' in heading[:600]
    assert re.search(r"linear_visible</code></a>\s*\(tests\): Score: 0\.0 / 1\.0", html)  # a failed scored cell keeps its 0


WORDS_BROKEN = """
const broken = [];
for (const pre of document.querySelectorAll(arguments[0])) {
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent, range = document.createRange();
    let top = null;
    for (let i = 0; i < text.length; i++) {
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rect = range.getBoundingClientRect();
      if (top !== null && rect.top > top + 2 && /\\S/.test(text[i - 1]) && /\\S/.test(text[i]))
        broken.push(text.slice(Math.max(0, i - 8), i) + " | " + text.slice(i, i + 8));
      if (/\\S/.test(text[i])) top = rect.top;
    }
  }
}
return broken;
"""

TABLE_GAPS = """
const gaps = [];
for (const row of document.querySelectorAll(".rendered_html table tr")) {
  const cells = [...row.children].map(cell => {
    const range = document.createRange(); range.selectNodeContents(cell); return range.getBoundingClientRect();
  });
  for (let i = 1; i < cells.length; i++) gaps.push(cells[i].left - cells[i - 1].right);
}
return gaps;
"""


@pytest.mark.parametrize("width", [500, 800, 1200])
def test_messages_wrap_between_words_and_the_table_keeps_its_columns_apart(made_page, width, tmp_path):
    """In headless Chromium, at a phone's width and a laptop's: the failure message wraps (it is longer
    than a line) only between words, and the part / points table's columns are apart ("Linear layer | 6",
    not "Linear layer6")."""
    path, _ = made_page
    with chromium(width=width, height=900) as browser:
        browser.open(path.as_uri())
        lines = browser.run("""const pre = document.querySelector("div.output_error pre"), style = getComputedStyle(pre);
                               return pre.getBoundingClientRect().height / parseFloat(style.lineHeight);""")
        broken = browser.run(WORDS_BROKEN, "div.output_area pre")
        gaps = browser.run(TABLE_GAPS)
        browser.run('document.querySelector("div.output_error").scrollIntoView({block: "center"})')
        browser.screenshot(tmp_path / f"feedback-{width}.png")
    assert lines >= 2, "the message is longer than a line: it wraps"
    assert broken == [], f"words broken across lines: {broken}"
    assert len(gaps) == 6 and min(gaps) >= 12, gaps  # ps1's table: a header and 5 parts, 2 columns
    if os.environ.get("COURSEKIT_SCREENSHOTS"):  # to look at it: COURSEKIT_SCREENSHOTS=<folder>
        shutil.copy(tmp_path / f"feedback-{width}.png", os.environ["COURSEKIT_SCREENSHOTS"])
