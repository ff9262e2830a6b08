"""`make demo`'s job: the demo class is graded, with feedback, export, a report and a score table."""
import csv
import subprocess
import sys

from conftest import FIXTURES
from coursekit.grading import copy_course, nbgrader
from coursekit.submissions import load_fixtures

DEMO_CLASS = load_fixtures(FIXTURES / "ps1_submissions.py").DEMO_CLASS


def test_demo_grades_the_class_and_prints_the_table(tmp_path):
    course = copy_course("ps1", tmp_path)
    nbgrader(course, "generate_assignment", "ps1", "--force")
    output = subprocess.run([sys.executable, "-m", "coursekit.demo", "ps1", "--course", str(course)],
                            capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in output.splitlines() if line.split()}
    for student, (_, expected) in DEMO_CLASS.items():
        if expected is None:
            assert "NOT GRADED: ps1.ipynb is not a notebook" in " ".join(rows[student])
        else:
            assert float(rows[student][-1]) == expected, f"{student}: {rows[student]}"
            assert (course / "feedback" / student / "ps1" / "ps1.html").exists()
    with open(course / "grades.csv") as f:
        exported = {row["student_id"]: row for row in csv.DictReader(f) if row["assignment"] == "ps1"}
    assert float(exported["ada"]["score"]) == 18
    assert float(exported["blake"]["score"]) == 0
    assert (course / "reports" / "ps1" / "report.html").exists()
