"""The instructor's view of a graded assignment: score table, plots, tamper report, errors.

``write()`` makes ``reports/<assignment>/``: report.html with score_histogram.png and
failure_rates.png, mistakes.csv, similarity.html and .csv, tamper.csv and errors.csv, grading_sheet.html for an assignment with written
answers, and returns the score table as text (the terminal's).

report.html works offline: its script and style (templates/report/) are inlined. Its score table
sorts by any column and filters by typed text; it has the autograded points per part, the
written answers' points, the points still to grade by hand, the late penalty and the total as
grades.csv has them (from nbgrader's gradebook); each student links to their feedback page
(``feedback/<student>/<ps>/<ps>.html``, relative to the report) and to formgrader's pages for
them, under $FORMGRADER_URL (default http://localhost:8888; a report that a Jupyter server serves
under ``/files/`` links that server's formgrader). The class's mistakes are listed with the
students who made each; the students who follow the model solution are those who share what is
distinctive in it (coursekit.pipeline.similarity.followers), not every correct answer.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import html
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from coursekit.pipeline.course import PathLike, course_folder
from coursekit.pipeline.gradebook import ERRORS, results as gradebook_results, score_less_penalty, waiting_for_a_ta
from coursekit.pipeline.results import Change, Outcome, Run, StudentResult
from coursekit.pipeline.similarity import THRESHOLD as SIMILAR
from coursekit.pipeline.tamper import scan_folder, scan_graded, scan_notebook

TEMPLATES = Path(__file__).parent / "templates" / "report"  # the page's script and style


def score_table(graded: dict[str, StudentResult], students: list[str], errors: dict[str, str]) -> str:
    """Per-student points per part and total; students without a grade show why.

    Args:
    - graded (dict): {student: StudentResult}.
    - students (list): the rows, in order.
    - errors (dict): {student: reason} for submissions that could not be graded.
    """
    complete = [r for r in graded.values() if r.cells]
    if not complete:
        return "no graded submission"
    maxima = complete[0].max_parts()
    parts = list(maxima)
    width = {p: max(10, len(p) + 2) for p in parts}

    def row(label, values, total, note=""):
        return (f"{label:<12}" + "".join(f"{v:>{width[p]}}" for p, v in zip(parts, values))
                + f"{total:>10}" + (f"  {note}" if note else ""))

    header = row("student", parts, "total", "note")
    lines = [header, row("(max)", [f"{maxima[p]:g}" for p in parts], f"{sum(maxima.values()):g}"),
             "-" * len(header)]
    for student in students:
        result = graded.get(student)
        if student in errors or result is None or not result.cells:
            reason = errors.get(student) or "autograding failed"
            lines.append(row(student, ["-"] * len(parts), "-", f"NOT GRADED: {reason}"))
            continue
        scores = result.parts()
        lines.append(row(student, [f"{scores.get(p, 0):g}" for p in parts], f"{result.total:g}"))
    return "\n".join(lines)


FORMGRADER_URL = "http://localhost:8888"  # `jupyter server`'s default address; FORMGRADER_URL in the environment sets another


def formgrader_url() -> str:
    """Where formgrader's pages are, as the report links them: $FORMGRADER_URL (e.g. a hub's
    ``https://hub.example.edu/user/<instructor>``), else FORMGRADER_URL. (A report that a Jupyter
    server serves, under its ``/files/``, links that server's formgrader instead: report.js.)"""
    return os.environ.get("FORMGRADER_URL", FORMGRADER_URL).rstrip("/")


@dataclass(frozen=True)
class Submission:
    """What the score table shows of a submission besides its autograded parts, from nbgrader's
    gradebook: the ``written`` answers' points (graded by hand; a blank answer scores 0 without a
    human), the points still ``to_grade`` by hand, the ``late_penalty``, the ``total`` as
    grades.csv has it (nbgrader's score less the late penalty, at least 0) and ``notebook_id``,
    formgrader's id of the submitted notebook (its grading page is /formgrader/submissions/<id>)."""

    written: float
    to_grade: float
    late_penalty: float
    total: float
    notebook_id: str | None


@dataclass(frozen=True)
class Maxima:
    """An assignment's points: its ``parts`` ({part: autograded points}), its ``written`` answers'
    and its ``total`` (all of them, as grades.csv's max_score)."""

    parts: dict[str, float]
    written: float
    total: float


def submissions(course: PathLike, assignment: str, students: list[str]) -> tuple[dict[str, Submission], float, float]:
    """({student: Submission}, the written answers' maximum, the assignment's maximum) from the
    course's gradebook, for the ``students`` that have a submission of ``assignment`` in it."""
    from nbgrader.api import Gradebook, MissingEntry

    from coursekit.pipeline.course import gradebook_file

    found = {}
    if not gradebook_file(course).exists():
        return found, 0.0, 0.0
    with Gradebook(f"sqlite:///{gradebook_file(course)}") as gradebook:
        try:
            record = gradebook.find_assignment(assignment)
        except MissingEntry:
            return found, 0.0, 0.0
        written_max = sum(cell.max_score for notebook in record.notebooks for cell in notebook.grade_cells
                          if cell.cell_type == "markdown")
        maximum = record.max_score
        for student in students:
            try:
                submission = gradebook.find_submission(assignment, student)
            except MissingEntry:
                continue
            grades = [grade for notebook in submission.notebooks for grade in notebook.grades]
            notebooks = sorted(submission.notebooks, key=lambda notebook: notebook.name != assignment)
            found[student] = Submission(
                written=sum(grade.score for grade in grades if grade.cell_type == "markdown" and not grade.needs_manual_grade),
                to_grade=sum(grade.max_score for grade in waiting_for_a_ta(submission)),
                late_penalty=submission.late_submission_penalty or 0.0, total=score_less_penalty(submission),
                notebook_id=notebooks[0].id if notebooks else None)
    return found, written_max, maximum


def formgrader_pages(student: str, assignment: str, book: Submission | None) -> list[tuple[str, str]]:
    """[(label, path)] of formgrader's pages for a student's submission, as nbgrader 0.9's formgrader
    lays them out under its server's base URL: the student's page for the assignment
    (/formgrader/manage_students/<student>/<assignment>) and, when the gradebook has the submitted
    notebook, its grading page (/formgrader/submissions/<the submitted notebook's id>). None for a
    submission that the gradebook does not have (formgrader has no page for it)."""
    if book is None:
        return []
    pages = [("student", f"/formgrader/manage_students/{quote(student)}/{quote(assignment)}")]
    if book.notebook_id:
        pages.append(("grade", f"/formgrader/submissions/{quote(book.notebook_id)}"))
    return pages


def _formgrader_link(base: str, path: str, label: str) -> str:
    """HTML: a link to formgrader's page at ``path`` under ``base`` (report.js may re-base it)."""
    return f'<a href="{html.escape(base + path)}" data-formgrader="{html.escape(path)}">{html.escape(label)}</a>'


def _points(value: float) -> str:
    return f"{value:g}"


def score_table_html(assignment: str, graded: dict[str, StudentResult], students: list[str], errors: dict[str, str],
                     books: dict[str, Submission], written_max: float, maximum: float, feedback: set[str],
                     notes: dict[str, str] | None = None, base: str | None = None) -> str:
    """The score table as a sortable, filterable HTML table (report.js): per student the
    autograded points of each part, the written answers' points, the points still to grade by
    hand, the late penalty and the total (as grades.csv); a submission that could not be graded
    says so instead of scores. Each student links to their feedback page (if ``feedback`` has
    them) and to formgrader (``base``: formgrader_url())."""
    base = formgrader_url() if base is None else base
    complete = [r for r in graded.values() if r.cells]
    if not complete:
        return "<p>No graded submission.</p>"
    maxima = complete[0].max_parts()
    columns = [(part, _points(points), "autograded") for part, points in maxima.items()]
    columns += [("written", _points(written_max), "written answers, graded by hand")] if written_max else []
    columns += [("to grade", "", "points still to grade by hand"), ("late", "", "late penalty, taken off the total"),
                ("total", _points(maximum), "as grades.csv: every graded point less the late penalty")]
    head = ('<th data-type="text">student</th><th data-type="text">formgrader</th>'
            + "".join(f'<th data-type="number" title="{html.escape(what)}">{html.escape(name)}'
                      + (f'<span class="max">/ {of}</span>' if of else "") + "</th>" for name, of, what in columns)
            + '<th data-type="text">note</th>')
    rows = []
    for student in students:
        result, book = graded.get(student), books.get(student)
        name = html.escape(student)
        link = (f'<a href="../../feedback/{name}/{assignment}/{assignment}.html" title="their feedback page">{name}</a>'
                if student in feedback else name)
        pages = formgrader_pages(student, assignment, book)
        formgrader = f'<td>{" ".join(_formgrader_link(base, path, label) for label, path in pages)}</td>'
        if student in errors or result is None or not result.cells:
            reason = errors.get(student) or "autograding failed"
            blank = '<td data-value="">-</td>' * (len(columns) - 1)
            rows.append(f'<tr class="not-graded"><td>{link}</td>{formgrader}{blank}<td data-value="">not graded</td>'
                        f'<td class="note">NOT GRADED: {html.escape(reason)}</td></tr>')
            continue
        scores = result.parts()
        book = book or Submission(0, 0, 0, result.total, None)  # (a result without a gradebook record)
        pending = not book.written and book.to_grade  # (a 0 there would read as a grade)
        shown = [_points(scores.get(part, 0)) for part in maxima] + (["" if pending else _points(book.written)] if written_max else [])
        shown += [_points(book.to_grade) if book.to_grade else "", f"-{_points(book.late_penalty)}" if book.late_penalty else "",
                  _points(book.total)]
        values = [scores.get(part, 0) for part in maxima] + ([book.written] if written_max else [])
        values += [book.to_grade, book.late_penalty, book.total]
        cells = "".join(f'<td data-value="{value:g}">{text}</td>' for value, text in zip(values, shown))
        note = (notes or {}).get(student, "")
        rows.append(f'<tr><td>{link}</td>{formgrader}{cells}<td class="note">{html.escape(note)}</td></tr>')
    return (f'<p><label>Filter: <input type="search" id="scores-filter" data-filter="scores" '
            f'placeholder="a student, a note, &quot;not graded&quot;"></label> <span id="scores-shown"></span> '
            f'Click a column\'s heading to sort by it.</p>'
            f'<div class="wide"><table id="scores" class="sortable scores"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# a number standing alone (in "x^2 + 1", "(2, 2)", "0.31"), not a digit of a name ("Pool2D", "linear1")
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w])")


def _kind(message: str) -> tuple[str, bool]:
    """What a one-line failure message says went wrong, as it words it, and whether that is a
    hint (the judge's own words, the same for every student): its hint when it has one (after the
    last "; ", or a parenthesised "...?" at its end), else the message without the numbers of a
    comparison (what follows ": largest error")."""
    if "; " in message:
        return message.rsplit("; ", 1)[1], True
    hint = _last_parenthetical(message)
    if hint and ("?" in hint or ":" in hint):
        return hint, True
    raised = re.search(r" raised (\w+)", message)
    if raised:
        return f"raised {raised.group(1)}", True
    if " has shape " in message:
        return "the wrong shape", True
    return message.split(": largest error")[0], False


def mistake(message: str) -> str:
    """The kind of mistake a one-line failure message names, the key that groups a class's
    messages: its hint (see ``_kind``), else its words with the numbers that stand alone as "#"
    (those of a student's own case: "after training on 0.83 x^2 + 1.07"; digits of names stay:
    "Pool2D", "linear1")."""
    kind, hint = _kind(message)
    return kind if hint else NUMBER.sub("#", kind)


def _last_parenthetical(text):
    """The text inside the parentheses that end ``text`` (nested ones included), or None."""
    if not text.endswith(")"):
        return None
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[index], 0)
        if depth == 0:
            return text[index + 1:-1]
    return None


@dataclass(frozen=True)
class Mistake:
    """A kind of mistake in a test cell: ``label``, as a message words it (one student's
    example when the class's messages differ only by their numbers), and the ``students`` who
    made it."""

    label: str
    students: tuple[str, ...]


def mistakes(graded: dict[str, StudentResult]) -> dict[str, list[Mistake]]:
    """{test cell: [Mistake]}, most common first (then by label): the kinds of mistake (see
    ``mistake``) that the failure messages of the graded students name, each student once."""
    found: dict[str, dict[str, dict[str, list[str]]]] = {}  # {cell: {key: {student: [kind as worded]}}}
    for student, result in sorted(graded.items()):
        for cell, errors in result.messages.items():
            for _, text in errors:
                found.setdefault(cell, {}).setdefault(mistake(text), {}).setdefault(student, []).append(_kind(text)[0])
    listed = {}
    for cell, kinds in found.items():
        listed[cell] = sorted((Mistake(Counter(worded[0] for worded in who.values()).most_common(1)[0][0], tuple(who))
                               for who in kinds.values()), key=lambda m: (-len(m.students), m.label))
    return listed


def _plots(folder, graded, totals=None, maximum=None):
    """score_histogram.png (of ``totals`` {student: total} out of ``maximum``, as the score table
    has them; else the autograded totals) and failure_rates.png; returns {test cell: failure rate}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    complete = [r for r in graded.values() if r.cells]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    maximum = maximum or (complete[0].max_total if complete else 1)
    scores = [(totals or {}).get(r.student, r.total) for r in complete]
    ax.hist(scores, bins=range(0, int(maximum) + 2), color="tab:blue", edgecolor="white", align="left")
    ax.set_xlabel(f"score (of {maximum:g})")
    ax.set_ylabel("students")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # (scores are whole points: no tick at 2.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Score distribution")
    fig.tight_layout()
    fig.savefig(folder / "score_histogram.png", dpi=100)
    plt.close(fig)

    cells = list(complete[0].max_cells) if complete else []
    failed = [r.failed() for r in complete]
    rates = [sum(c in f for f in failed) / max(len(complete), 1) for c in cells]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(cells) + 1.2))
    ax.barh(cells[::-1], [100 * r for r in rates[::-1]], color="tab:red")
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of graded students who failed the test")
    ax.set_title("Where the class struggles (per test cell)")
    fig.tight_layout()
    fig.savefig(folder / "failure_rates.png", dpi=100)
    plt.close(fig)
    return dict(zip(cells, rates))


def grading_sheet(course: PathLike, assignment: str) -> str | None:
    """The TAs' sheet for the written answers of ``assignment``: each question as students read
    it, its points, and the model answer and rubric from the source notebook (between its
    solution markers). None if the assignment has no written answers."""
    import nbformat

    from coursekit.pipeline.plugins.feedback_page import markdown_with_mathml
    from coursekit.judge.solutions import SOLUTION_BEGIN, SOLUTION_END, marked_lines

    source = course_folder(course, "source", assignment=assignment) / f"{assignment}.ipynb"
    cells = nbformat.read(source, as_version=4).cells if source.exists() else []
    sections = []
    for question, answer in zip(cells, cells[1:]):
        meta = answer.metadata.get("nbgrader", {})
        if answer.cell_type == "markdown" and meta.get("solution") and meta.get("grade"):
            model = "\n".join(marked_lines(answer.source, SOLUTION_BEGIN, SOLUTION_END, strip=False))
            points = meta.get("points", 0)
            sections.append(f"<h2><code>{html.escape(meta['grade_id'])}</code> ({points:g} point{'' if points == 1 else 's'})</h2>"
                            f"<div class=\"question\">{markdown_with_mathml(question.source)}</div>"
                            f"<h3>Model answer and rubric</h3><div class=\"answer\">{markdown_with_mathml(model)}</div>")
    if not sections:
        return None
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{assignment}: grading sheet</title>
<style>body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }} .question {{ color: #444; }}
.answer {{ background: #f6f6f6; padding: 0.2em 1em; }}</style>
</head><body>
<h1>{assignment}: grading sheet for the written answers</h1>
<p>Grade each answer in formgrader; this sheet holds what students do not see: the model answer
and the rubric, from <code>source/{assignment}/{assignment}.ipynb</code>.</p>
{"".join(sections)}
</body></html>
"""


def _similarity(course, assignment, folder, students):
    """Compare the class's answer cells part by part, and with the model solution
    (coursekit.pipeline.similarity); returns what it found (a similarity.Found)."""
    import nbformat

    from coursekit.pipeline import similarity
    from coursekit.judge.solutions import answer_cells, source_notebook, without_markers
    from coursekit.judge.solutions import release_notebook

    own = course_folder(course, "release", assignment=assignment).exists()  # else the course repository's release
    starters = answer_cells(release_notebook(assignment, course) if own else release_notebook(assignment))
    source = course_folder(course, "source", assignment=assignment) / f"{assignment}.ipynb"
    source = source if source.exists() else source_notebook(assignment)
    model = {part: without_markers(code) for part, code in answer_cells(nbformat.read(source, as_version=4)).items()}
    answers = {}
    for student in students:
        path = course_folder(course, "submitted", student, assignment) / f"{assignment}.ipynb"
        try:
            answers[student] = answer_cells(nbformat.read(path, as_version=4))
        except Exception:  # noqa: BLE001 - an unreadable notebook is in the errors already
            continue
    return similarity.write_report(folder, assignment, answers, starters, model)


def _similar_answers(found):
    """The report's section on similar answers: the top pairs, and who follows the model solution
    where the class does not (similarity.followers: being correct is not following it)."""
    pairs = [(part, f"{a} and {b}", f"{score:.0%}") for part, listed in found.pairs.items() for score, a, b in listed[:3]]
    close = [(part, ", ".join(f"{student} ({score:.0%})" for score, student in listed),
              f"{len(found.model.get(part, []))} of {found.answered.get(part, 0)}")
             for part, listed in found.followers.items() if listed]
    usual = [f"<code>{html.escape(part)}</code> ({len(listed)} of {found.answered.get(part, 0)})"
             for part, listed in found.model.items() if listed and not found.followers.get(part)]
    count = sum(len(listed) for listed in found.pairs.values())
    return f"""<p>{count} pairs of students whose answer to a part looks copied (renamed, reordered or
recommented code included; lines written as the model solution writes them do not count):
<a href="similarity.html">side by side</a>, all in similarity.csv. The most similar pairs:</p>
{_table(pairs, ["part", "students", "similarity"])}
<h3>Answers that follow the model solution</h3>
<p>Students whose answer shares at least {SIMILAR:.0%} of what is distinctive in the model
solution's code: the fingerprints of it that at most half of the class also has (what most of
the class writes as the model does is the obvious, correct way to write it, not a sign of a leaked
solution). The last column counts every answer close to the model solution, distinctive or not
(all of them are in similarity.csv).</p>
{_table(close, ["part", "students (share of the model's distinctive code)", "close to the model, all told"])}
{f"<p>Close to the model solution the way most of the class is, which says nothing of anyone: {', '.join(usual)}.</p>"
 if usual else ""}"""


def _changes(changes: list[Change] | None, previous: Run | None) -> str:
    if changes is None:
        return "<p>This is the first grading of the assignment.</p>"
    since = f"the grading of {html.escape(previous.when)} (tests {html.escape(previous.tests)})" if previous else "the last grading"
    def said(cell, passing):  # the whole message (it wraps in the table)
        return cell.message or ("not graded" if cell.score is None else passing)

    rows = [(change.student, change.cell, change.was.points(), change.now.points(), said(change.was, "passed"),
             said(change.now, "passes")) for change in changes]
    return (f"<p>Test cells whose score or message changed since {since}: {len(changes)}, of "
            f"{len({row[0] for row in rows})} students.</p>"
            + _table(rows, ["student", "test cell", "was", "now", "message then", "message now"]))


def _table(rows, header, raw=()):
    """An HTML table of ``rows`` under ``header``; the columns in ``raw`` hold HTML already."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{v if i in raw else html.escape(str(v))}</td>" for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>None.</p>"


def _static(name: str) -> str:
    """A file of the report's own (templates/report/), to inline in the page: it loads nothing."""
    return (TEMPLATES / name).read_text()


def _policy(script: str) -> str:
    """The page's Content-Security-Policy: its own script alone runs (by its hash), whatever markup
    a student's name or message might carry; images only from beside the page."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'none'; base-uri 'none'")


def page(title: str, body: str) -> str:
    """A report page: ``body`` (HTML) under the heading ``title``, with the report's style and
    script inlined (templates/report/: the page loads nothing, from the internet or beside it)."""
    script = _static("report.js")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta http-equiv="Content-Security-Policy" content="{_policy(script)}">
<style>{_static("report.css")}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{body}
<script>{script}</script>
</body></html>
"""


def _feedback_link(student: str, assignment: str, feedback: set[str], cell: str = "") -> str:
    """HTML: ``student``, linked to their feedback page (at ``cell``'s anchor) if they have one."""
    name = html.escape(student)
    anchor = f"#{html.escape(cell)}" if cell else ""
    return (f'<a href="../../feedback/{name}/{assignment}/{assignment}.html{anchor}">{name}</a>' if student in feedback
            else name)


def _mistakes_table(assignment: str, found: dict[str, list[Mistake]], rates: dict[str, float],
                    graded: dict[str, StudentResult], feedback: set[str]) -> str:
    """HTML: a row per test cell and kind of mistake, most failed cells first: how many graded
    students failed the cell, the mistake, how many made it and who."""
    complete = sum(1 for r in graded.values() if r.cells) or 1
    rows = []
    for cell, rate in sorted(rates.items(), key=lambda item: -item[1]):
        failed = f"{round(rate * complete)} of {complete}"
        for kind in found.get(cell, []) or ([Mistake("", ())] if rate else []):
            who = ", ".join(_feedback_link(s, assignment, feedback, cell) for s in kind.students)
            rows.append(f'<tr><td><code>{html.escape(cell)}</code></td><td data-value="{rate:.4f}">{failed}</td>'
                        f'<td class="mistake">{html.escape(kind.label)}</td><td data-value="{len(kind.students)}">'
                        f'{len(kind.students) or ""}</td><td>{who}</td></tr>')
    if not rows:
        return "<p>None.</p>"
    head = "".join(f'<th data-type="{kind}">{name}</th>' for name, kind in [
        ("test cell", "text"), ("failed", "number"), ("mistake", "text"), ("students", "number"), ("who", "text")])
    return (f'<p><label>Filter: <input type="search" data-filter="mistakes" placeholder="a student, a test cell, a word">'
            f'</label> <span id="mistakes-shown"></span></p>'
            f'<div class="wide"><table id="mistakes" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def write(course: PathLike, assignment: str, outcomes: dict[str, Outcome], changes: list[Change] | None = None,
          previous: Run | None = None, graded: dict[str, StudentResult] | None = None) -> str:
    """Write the report for a graded assignment; return the score table.

    Args:
    - outcomes (dict): {student: Outcome} of this grading.
    - changes (list): what changed since the previous grading (coursekit.pipeline.regrade.changes), or
      None for the first one; ``previous``: that run's record (when, tests version).
    - graded (dict): {student: StudentResult} as the gradebook now has them (read if not given).
    """
    course = Path(course)
    folder = course / "reports" / assignment
    folder.mkdir(parents=True, exist_ok=True)
    graded = gradebook_results(course, assignment) if graded is None else graded
    students = sorted(outcomes)
    errors = {s: o.error for s, o in outcomes.items() if not o.ok}
    notes = {s: o.note for s, o in outcomes.items() if o.ok and o.note}
    source = course_folder(course, "source", assignment=assignment)
    tamper = [(s, f.cell, f.line, f.what) for s in students
              for f in scan_folder(course_folder(course, "submitted", s, assignment), source)
              + scan_notebook(course_folder(course, "submitted", s, assignment) / f"{assignment}.ipynb")
              + scan_graded(course_folder(course, "autograded", s, assignment) / f"{assignment}.ipynb")]
    manual = sorted(s for s, o in outcomes.items() if o.needs_manual_grading())
    modes = sorted({o.sandbox for o in outcomes.values() if o.sandbox})
    books, written_max, maximum = submissions(course, assignment, students)
    rates = _plots(folder, graded, {s: b.total for s, b in books.items()}, maximum)

    found = mistakes(graded)
    complete = sum(1 for r in graded.values() if r.cells) or 1
    with open(folder / "mistakes.csv", "w", newline="") as f:
        csv.writer(f).writerows([("test cell", "mistake", "students", "share of graded students", "who"),
                                 *[(cell, kind.label, len(kind.students), f"{len(kind.students) / complete:.2f}",
                                    " ".join(kind.students)) for cell, kinds in found.items() for kind in kinds]])
    with open(folder / "tamper.csv", "w", newline="") as f:
        csv.writer(f).writerows([("student", "cell", "line", "finding"), *tamper])
    with open(folder / ERRORS, "w", newline="") as f:
        csv.writer(f).writerows([("student", "graded", "error"), *[(s, "no", e) for s, e in sorted(errors.items())],
                                 *[(s, "yes", e) for s, e in sorted(notes.items())]])

    table = score_table(graded, students, errors)
    feedback = {s for s in students if (course_folder(course, "feedback", s, assignment) / f"{assignment}.html").exists()}
    scores = score_table_html(assignment, graded, students, errors, books, written_max, maximum, feedback, notes)
    similar = _similarity(course, assignment, folder, students)
    sheet = grading_sheet(course, assignment)
    if sheet is not None:
        (folder / "grading_sheet.html").write_text(sheet)
    base = formgrader_url()
    to_grade = [(s, _points(books[s].to_grade) if s in books else "",
                 " ".join(_formgrader_link(base, path, label) for label, path in formgrader_pages(s, assignment, books.get(s))),
                 _feedback_link(s, assignment, feedback)) for s in manual]
    (folder / "report.html").write_text(page(f"{assignment}: grading report", f"""
<p>{len(students)} submissions, {len(students) - len(errors)} graded, {len(errors)} not graded,
{len(manual)} needing manual grading.</p>
<p>Grading kernels: {html.escape("; ".join(modes) or "none started")}.</p>
<h2>Scores</h2>
<p>Points per part as the autograder gave them{", the written answers' as graded by hand" if written_max else ""},
the points still to grade by hand, the late penalty and the total as <code>grades.csv</code> has it. Each
student's name opens their feedback page; "student" and "grade" open their pages in formgrader at
<code>{html.escape(base)}</code> (set <code>FORMGRADER_URL</code> when grading to change it; a report opened
through a Jupyter server links that server's formgrader).</p>
{scores}
<img src="score_histogram.png" alt="score histogram">
<h2>Failure rate per test cell</h2><img src="failure_rates.png" alt="failure rate per test cell">
<h3>What the class got wrong</h3>
<p>Per test cell, the mistakes that its failure messages name (their hints, or the message itself),
each with the students who made it; a name opens that student's feedback at the test cell
(mistakes.csv has them all).</p>
{_mistakes_table(assignment, found, rates, graded, feedback)}
<h2>Changes since the last grading</h2>
{_changes(changes, previous)}
<h2>Similar answers</h2>
{_similar_answers(similar)}
<h2>Tamper report</h2>
<p>Answer cells that import forbidden modules or touch the test machinery, and Python files handed
in next to the notebook (the grader keeps such code from changing verdicts; this list is for a
human to look at).</p>
{_table(tamper, ["student", "cell", "line", "finding"])}
<h2>Errors</h2>{_table(sorted(errors.items()) + sorted(notes.items()), ["student", "error"])}
<h2>Needs manual grading</h2>{_table(to_grade, ["student", "points to grade", "formgrader", "feedback"], raw=(2, 3))}
{'<p>The <a href="grading_sheet.html">grading sheet</a> has each written question with its model answer and rubric.</p>' if sheet else ""}
"""))
    summary = [table, "", f"Grading kernels: {'; '.join(modes) or 'none started'}"]
    if tamper:
        summary.append(f"Tamper report ({len(tamper)} findings):")
        summary += [f"  {s}: {f'cell {c}, line {line}' if line else c}: {what}" for s, c, line, what in tamper]
    summary.append(f"Report: {folder / 'report.html'}")
    return "\n".join(summary)
