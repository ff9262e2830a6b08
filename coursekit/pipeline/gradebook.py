"""What the last grading left in a course, read back: each student's scores from the gradebook
(StudentResult, with the failure messages of their autograded notebook), and the submissions that
the last `make grade` could not grade (reports/<ps>/errors.csv, which the report writes and the
export reads)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook, MissingEntry

from coursekit.pipeline.course import PathLike, course_folder, gradebook_file
from coursekit.pipeline.results import StudentResult

ERRORS = "errors.csv"  # student, graded ("no": could not be graded; "yes": graded, with a note), error


def score_less_penalty(submission: Any) -> float:
    """A submission's score as nbgrader's export counts it (grades.csv, the report, the LMS files):
    its points less its late penalty, at least 0 (``submission``: nbgrader's SubmittedAssignment)."""
    return max(0.0, submission.score - (submission.late_submission_penalty or 0.0))


def waiting_for_a_ta(submission: Any) -> list:
    """The grades of a submission (nbgrader's SubmittedAssignment) that a TA has still to give."""
    return [grade for notebook in submission.notebooks for grade in notebook.grades if grade.needs_manual_grade]


def not_graded(course: PathLike, assignment: str) -> dict[str, str]:
    """{student: reason} for the submissions of ``assignment`` that the last `make grade` could not grade."""
    path = Path(course) / "reports" / assignment / ERRORS
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["student"]: row["error"] for row in csv.DictReader(f) if row.get("graded") == "no"}



def results(course_root: PathLike, assignment: str) -> dict[str, StudentResult]:
    """{student: StudentResult} for every student with an autograded submission of ``assignment``."""
    found = {}
    with Gradebook(f"sqlite:///{gradebook_file(course_root)}") as gradebook:
        for student in gradebook.students:
            try:
                submission = gradebook.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            code = [grade for notebook in submission.notebooks for grade in notebook.grades if grade.cell_type == "code"]
            if all(grade.auto_score is None for grade in code):
                continue  # no autograder score at all: not graded (a failed regrade keeps only what a TA graded)
            # (a test cell that the notebook lacks has no score: it counts as 0)
            cells = {grade.name: grade.score for grade in code}
            max_cells = {grade.name: grade.max_score for grade in code}
            notebook = course_folder(course_root, "autograded", student.id, assignment) / f"{assignment}.ipynb"
            found[student.id] = StudentResult(student.id, cells, max_cells, notebook if notebook.exists() else None)
    return found
