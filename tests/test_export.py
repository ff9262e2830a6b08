"""`nbgrader export` with the course's plugin (coursekit.pipeline.plugins.export.CourseExport), on
gradebooks built in memory: a status column, and no grade that pretends to be current."""
import pytest
from nbgrader.api import Gradebook

from coursekit.pipeline.course import this_environment_first
from coursekit.pipeline.plugins.export import CourseExport


@pytest.fixture
def gradebook(tmp_path):
    with this_environment_first(), Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gradebook:
        gradebook.update_or_create_assignment("ps1")
        gradebook.add_notebook("ps1", "ps1")
        gradebook.add_grade_cell("linear_forward", "ps1", "ps1", max_score=2, cell_type="code")
        for student in ("ada", "bob", "cy"):
            gradebook.add_student(student)
        gradebook.add_submission("ps1", "ada")  # autograded below
        gradebook.add_submission("ps1", "bob")  # never autograded (a stock autograde that failed)
        (grade,) = gradebook.find_submission("ps1", "ada").notebooks[0].grades
        grade.auto_score = 2
        gradebook.db.commit()
        yield gradebook


def _row(gradebook, student, failure=None):
    return CourseExport._row(gradebook, gradebook.find_assignment("ps1"), gradebook.find_student(student), failure)


def test_a_submission_that_could_not_be_graded_reads_not_graded_with_no_score(gradebook):
    row = _row(gradebook, "bob", "ps1.ipynb is not a notebook")
    assert row["status"] == "not graded: ps1.ipynb is not a notebook" and not row.get("score") and not row.get("raw_score")


def test_autograded_work_keeps_its_score_whatever_a_later_failure_says(gradebook):
    assert _row(gradebook, "ada")["status"] == "graded" and _row(gradebook, "ada")["score"] == 2
    assert _row(gradebook, "ada", "a later run failed")["status"] == "graded"


def test_a_student_who_handed_nothing_in_reads_not_submitted(gradebook):
    assert _row(gradebook, "cy")["status"] == "not submitted" and _row(gradebook, "cy")["score"] == 0.0
