"""The instructor's view of a graded assignment: score table, plots, tamper report, errors.

``write()`` makes ``reports/<assignment>/``: report.html with score_histogram.png and
failure_rates.png, mistakes.csv, similarity.html and .csv, tamper.csv and errors.csv, grading_sheet.html for an assignment with written
answers, and returns the score table as text.
"""
from __future__ import annotations

import csv
import html
import re
from collections import Counter
from pathlib import Path

from coursekit.pipeline.course import PathLike, course_folder
from coursekit.pipeline.gradebook import ERRORS, results as gradebook_results
from coursekit.pipeline.results import Change, Outcome, Run, StudentResult
from coursekit.pipeline.tamper import scan_folder, scan_graded, scan_notebook


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


def mistake(message: str) -> str:
    """The kind of mistake a one-line failure message names: its hint when it has one (after the
    last "; ", or a parenthesised "...?" at its end), else its words without the case's numbers."""
    if "; " in message:
        return message.rsplit("; ", 1)[1]
    hint = _last_parenthetical(message)
    if hint and ("?" in hint or ":" in hint):
        return hint
    raised = re.search(r" raised (\w+)", message)
    if raised:
        return f"raised {raised.group(1)}"
    if " has shape " in message:
        return "the wrong shape"
    return re.sub(r"-?\d[\d.e+-]*", "#", message.split(": largest error")[0])[:120]


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


def mistakes(graded: dict[str, StudentResult]) -> dict[str, list[tuple[str, int]]]:
    """{test cell: [(mistake, students)]}, most common first: the kinds of mistake (see
    ``mistake``) that the failure messages of the graded students name, one count per student."""
    counts = {}
    for result in graded.values():
        for cell, errors in result.messages.items():
            for kind in {mistake(text) for _, text in errors}:
                counts.setdefault(cell, Counter())[kind] += 1
    return {cell: found.most_common() for cell, found in counts.items()}


def _plots(folder, graded):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    complete = [r for r in graded.values() if r.cells]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    maximum = complete[0].max_total if complete else 1
    ax.hist([r.total for r in complete], bins=range(0, int(maximum) + 2), color="tab:blue", edgecolor="white")
    ax.set_xlabel(f"score (of {maximum:g})")
    ax.set_ylabel("students")
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
    """The report's section on similar answers: the top pairs, and who follows the model solution."""
    pairs = [(part, f"{a} and {b}", f"{score:.0%}") for part, listed in found.pairs.items() for score, a, b in listed[:3]]
    close = [(part, ", ".join(f"{student} ({score:.0%})" for score, student in listed[:8])
              + (f" and {len(listed) - 8} more" if len(listed) > 8 else ""))
             for part, listed in found.model.items() if listed]
    count = sum(len(listed) for listed in found.pairs.values())
    return f"""<p>{count} pairs of students whose answer to a part looks copied (renamed, reordered or
recommented code included; lines written as the model solution writes them do not count):
<a href="similarity.html">side by side</a>, all in similarity.csv. The most similar pairs:</p>
{_table(pairs, ["part", "students", "similarity"])}
<p>Answers close to the model solution (a leaked solution, or simply the obvious way to write it):</p>
{_table(close, ["part", "students"])}"""


def _changes(changes: list[Change] | None, previous: Run | None) -> str:
    if changes is None:
        return "<p>This is the first grading of the assignment.</p>"
    since = f"the grading of {html.escape(previous.when)} (tests {html.escape(previous.tests)})" if previous else "the last grading"
    rows = [(change.student, change.cell, change.was.points(), change.now.points(), change.was.message or "passed",
             change.now.message or "passes")
            for change in changes]
    return (f"<p>Test cells whose score or message changed since {since}: {len(changes)}, of "
            f"{len({row[0] for row in rows})} students.</p>"
            + _table(rows, ["student", "test cell", "was", "now", "message then", "message now"]))


def _table(rows, header):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>None.</p>"


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
    rates = _plots(folder, graded)

    found = mistakes(graded)
    complete = sum(1 for r in graded.values() if r.cells) or 1
    with open(folder / "mistakes.csv", "w", newline="") as f:
        csv.writer(f).writerows([("test cell", "mistake", "students", "share of graded students"),
                                 *[(cell, kind, n, f"{n / complete:.2f}") for cell, kinds in found.items()
                                   for kind, n in kinds]])
    with open(folder / "tamper.csv", "w", newline="") as f:
        csv.writer(f).writerows([("student", "cell", "line", "finding"), *tamper])
    with open(folder / ERRORS, "w", newline="") as f:
        csv.writer(f).writerows([("student", "graded", "error"), *[(s, "no", e) for s, e in sorted(errors.items())],
                                 *[(s, "yes", e) for s, e in sorted(notes.items())]])

    table = score_table(graded, students, errors)
    similar = _similarity(course, assignment, folder, students)
    sheet = grading_sheet(course, assignment)
    if sheet is not None:
        (folder / "grading_sheet.html").write_text(sheet)
    (folder / "report.html").write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{assignment}: grading report</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }} pre {{ background: #f6f6f6; padding: 1em; }}</style>
</head><body>
<h1>{assignment}: grading report</h1>
<p>{len(students)} submissions, {len(students) - len(errors)} graded, {len(errors)} not graded,
{len(manual)} needing manual grading.</p>
<p>Grading kernels: {html.escape("; ".join(modes) or "none started")}.</p>
<h2>Scores</h2><pre>{html.escape(table)}</pre>
<img src="score_histogram.png" alt="score histogram">
<h2>Failure rate per test cell</h2><img src="failure_rates.png" alt="failure rate per test cell">
<h3>What the class got wrong</h3>
<p>Per test cell, the mistakes that its failure messages name (their hints), each with the share
of graded students who made it (mistakes.csv has them all).</p>
{_table([(cell, f"{100 * rate:.0f}%", "; ".join(f"{100 * n / complete:.0f}% {kind}" for kind, n in found.get(cell, [])[:4]))
         for cell, rate in sorted(rates.items(), key=lambda item: -item[1]) if rate or found.get(cell)],
        ["test cell", "failed", "mistakes"])}
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
<h2>Needs manual grading</h2>{_table([(s,) for s in manual], ["student"])}
{'<p>The <a href="grading_sheet.html">grading sheet</a> has each written question with its model answer and rubric.</p>' if sheet else ""}
</body></html>
""")
    summary = [table, "", f"Grading kernels: {'; '.join(modes) or 'none started'}"]
    if tamper:
        summary.append(f"Tamper report ({len(tamper)} findings):")
        summary += [f"  {s}: {f'cell {c}, line {line}' if line else c}: {what}" for s, c, line, what in tamper]
    summary.append(f"Report: {folder / 'report.html'}")
    return "\n".join(summary)
