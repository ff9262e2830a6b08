"""Students' markup made inert (coursekit.pipeline.markup): the sanitizer, the feedback page's
policy, formgrader's exporter, and a browser that would see a handler run."""
import time

import nbformat
import pytest

from browser import chromium
from coursekit.pipeline import markup

PROBE = "window.pwned = (window.pwned || '') + '{} '"
HOSTILE = (f'<p>notes <img src="x" onerror="{PROBE.format("img")}"> <a href="javascript:{PROBE.format("link")}">link</a>'
           f'<b onclick="{PROBE.format("click")}">bold</b></p><script>{PROBE.format("script")}</script>'
           f'<svg onload="{PROBE.format("svg")}"></svg><iframe src="javascript:{PROBE.format("frame")}"></iframe>'
           f'<style>body {{ display: none }}</style><form action="https://example.org"><input></form>')


def test_the_sanitizer_keeps_what_notebooks_show_and_drops_what_runs():
    kept = ('<h2>Title</h2><p>Text <em>and</em> <a href="https://example.org">a link</a></p>'
            '<table><tr><td>1</td></tr></table><img src="https://example.org/a.png" alt="plot">'
            '<div class="highlight"><pre><span class="k">def</span></pre></div>'
            '<math display="block"><mfrac><mi>a</mi><mn>2</mn></mfrac></math>')
    cleaned = markup.clean_html(kept + HOSTILE)
    for piece in ["<h2>Title</h2>", "<em>and</em>", 'href="https://example.org"', "<td>1</td>", 'alt="plot"',
                  '<span class="k">def</span>', '<math display="block"><mfrac><mi>a</mi><mn>2</mn></mfrac></math>']:
        assert piece in cleaned, piece
    for gone in ["onerror", "onclick", "onload", "javascript:", "<script", "<svg", "<iframe", "<style", "<form", "<input"]:
        assert gone not in cleaned.lower(), gone
    assert markup.active_markup(cleaned) == []
    assert markup.active_markup(HOSTILE) == ["<form>", "<iframe>", "<script>", "<style>", "a javascript: URL",
                                             "an onclick handler", "an onerror handler", "an onload handler"]


def _marks(browser, path, html):
    """The probe's marks after ``html`` loads (and its bold text is clicked)."""
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>{html}</body></html>")
    browser.open(path.as_uri())
    browser.wait_for("return document.readyState === 'complete'")
    browser.run("const b = document.querySelector('b'); if (b) b.click();")
    time.sleep(0.5)  # (an image's error handler runs once its load has failed)
    return browser.run("return window.pwned || ''")


def test_a_browser_runs_the_raw_markup_and_neither_the_cleaned_one_nor_any_under_the_feedback_policy(tmp_path):
    """The control that makes the browser tests worth something: the same probe does run, raw."""
    with chromium() as browser:
        raw = _marks(browser, tmp_path / "raw.html", "</head><body>" + HOSTILE)
        cleaned = _marks(browser, tmp_path / "cleaned.html", "</head><body>" + markup.clean_html(HOSTILE))
        policed = _marks(browser, tmp_path / "policed.html", f'<meta http-equiv="Content-Security-Policy" '
                         f'content="{markup.FEEDBACK_POLICY}"></head><body>' + HOSTILE)
    assert {"img", "script", "click"} <= set(raw.split()), raw
    assert cleaned == "" and policed == ""


def test_formgraders_exporter_renders_markdown_and_outputs_inert():
    """formgrader makes a plain HTMLExporter; after render_markup_inert (nbgrader_config.py calls
    it) every HTMLExporter cleans Markdown cells, HTML and SVG outputs, and leaves out scripts."""
    from nbconvert.exporters import HTMLExporter

    markup.render_markup_inert()
    outputs = [nbformat.v4.new_output("display_data", data={"text/html": HOSTILE}),
               nbformat.v4.new_output("display_data", data={"image/svg+xml": f'<svg onload="{PROBE}"></svg>'}),
               nbformat.v4.new_output("display_data", data={"application/javascript": PROBE.format("js")})]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Notes\n\n" + HOSTILE + "\n\n$x^2$"),
                                               nbformat.v4.new_code_cell("show()", outputs=outputs)])
    page, _ = HTMLExporter(template_name="classic").from_notebook_node(notebook)
    body = page[page.index("<body"):]
    assert markup.active_markup(body.replace("<script type=\"text/x-mathjax-config\">", "")) in ([], ["<script>"])
    assert "onerror" not in body and "javascript:" not in body and PROBE.format("js") not in body
    assert "notes" in body and "$x^2$" in body  # the text, and the math for MathJax, stay


@pytest.mark.parametrize("source", ["$x$ " * 5000, "$$" + "x" * 10_000 + "$$"])
def test_a_feedback_page_converts_a_bounded_amount_of_math(source):
    from coursekit.pipeline.plugins.feedback_page import MAX_FORMULAS, TEMPLATES, FeedbackHTMLExporter

    exporter = FeedbackHTMLExporter(template_name="course_feedback", extra_template_basedirs=[TEMPLATES])
    html = exporter.markdown2html({"cell": nbformat.v4.new_markdown_cell(source), "resources": {}}, source)
    assert 0 < html.count("x") and html.count("<math") <= MAX_FORMULAS
    assert html.count("<math") == (MAX_FORMULAS if source.startswith("$x$") else 0)  # (a formula too long stays LaTeX)
