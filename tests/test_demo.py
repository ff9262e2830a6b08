"""`make demo`'s job: each assignment's demo class is graded, with feedback, export, a report and a score table."""
import csv
import re
import subprocess
import sys

import nbformat
import pytest

from conftest import ASSIGNMENTS, CATALOGS, assert_feedback_hides_hidden_tests
from coursekit import COURSE_ROOT
from coursekit.pipeline import similarity
from coursekit.pipeline.course import nbgrader
from coursekit.tools.scratch import copy_course
from coursekit.judge.solutions import source_notebook, written_cells

pytestmark = pytest.mark.slow
DOCS = [COURSE_ROOT / "README.md", COURSE_ROOT / "docs" / "demo.md"]


def printed_table(output):
    """The score table in what `make demo` printed: from its header to the line before the first blank one."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("student "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def documented_tables(assignment):
    """{document: the table shown after its ``<!-- make demo: <assignment> -->`` marker}."""
    marker = re.escape(f"<!-- make demo: {assignment} -->")
    return {path.name: found.group(1).rstrip("\n") for path in DOCS
            if path.exists() and (found := re.search(marker + r"\n```\n(.*?)```", path.read_text(), re.S))}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_demo_grades_the_class_and_prints_the_table(tmp_path, assignment):
    demo_class = CATALOGS[assignment].DEMO_CLASS
    course = copy_course(assignment, tmp_path)
    nbgrader(course, "generate_assignment", assignment, "--force")
    done = subprocess.run([sys.executable, "-m", "coursekit.tools.demo", assignment, "--course", str(course)],
                          capture_output=True, text=True, check=True)
    output = done.stdout
    # what a newcomer reads is the progress bar and the table: no library's warnings around them
    assert [line for line in (done.stdout + done.stderr).splitlines() if "WARNING" in line] == []
    header = next(line for line in output.splitlines() if line.startswith("student"))
    assert header.split()[-2:] == ["total", "note"] and "(max)" in output
    rows = {line.split()[0]: line.split() for line in output.splitlines() if line.split()}
    documented = documented_tables(assignment)
    # (a new assignment's demo class is still to write: its table goes in docs/demo.md then)
    assert documented or getattr(CATALOGS[assignment], "TO_WRITE", False), f"no document shows {assignment}'s table (docs/demo.md should)"
    for document, table in documented.items():
        assert table == printed_table(output), f"{document}'s {assignment} table is not what make demo prints:\n{printed_table(output)}"
    for student, (_, expected) in demo_class.items():
        if expected is None:
            assert "NOT GRADED:" in " ".join(rows[student]), rows[student]
        else:
            assert float(rows[student][-1]) == expected, f"{student}: {rows[student]}"
            assert (course / "feedback" / student / assignment / f"{assignment}.html").exists()
    with open(course / "grades.csv") as f:
        exported = {row["student_id"]: row for row in csv.DictReader(f) if row["assignment"] == assignment}
    for student in ("ada", "blake"):  # the model solution and the untouched release
        assert float(exported[student]["score"]) == demo_class[student][1]
    report = (course / "reports" / assignment / "report.html").read_text()
    assert "What the class got wrong" in report and 'href="similarity.html"' in report
    assert "similar answers" in (course / "reports" / assignment / "similarity.html").read_text()
    if CATALOGS[assignment].DEMO_COPY:  # (None in a catalog still to write)
        copier, original, parts = CATALOGS[assignment].DEMO_COPY
        with open(course / "reports" / assignment / "similarity.csv") as f:
            rows = list(csv.reader(f))[1:]
        pairs = [(part, a, b) for part, a, b, _ in rows if b != similarity.MODEL]
        assert sorted(pairs) == sorted((part, *sorted((copier, original))) for part in parts), "the planted pair alone"
        followers = {a for part, a, b, _ in rows if b == similarity.MODEL}
        assert "ada" in followers and original not in followers
        assert f"<td>{' and '.join(sorted((copier, original)))}</td>" in report.split("<h2>Similar answers</h2>")[1]
    assert len((course / "reports" / assignment / "mistakes.csv").read_text().splitlines()) > 1
    manual = report.split("<h2>Needs manual grading</h2>")[1]
    written = written_cells(nbformat.read(source_notebook(assignment), as_version=4))
    if written:
        assert "<td>ada</td>" in manual and "<td>blake</td>" not in manual, \
            "written answers are listed for manual grading (a blank one scores 0 without a human)"
        sheet = (course / "reports" / assignment / "grading_sheet.html").read_text()
        assert 'href="grading_sheet.html"' in manual and sheet.count("Model answer and rubric") == len(written)
        assert all(f"<code>{grade_id}</code>" in sheet for grade_id in written) and sheet.count("Rubric (") == len(written)
    else:
        assert "None." in manual and not (course / "reports" / assignment / "grading_sheet.html").exists()
    assert_feedback_hides_hidden_tests(assignment, course.glob(f"feedback/*/{assignment}/{assignment}.html"))
