"""The course's nbgrader plugins (coursekit.pipeline.plugins), each on cells built in memory: what
grading runs only show as a whole (a restored test's place, a duplicate's metadata, a hidden test's
code, the export's rows) checked one plugin at a time."""
import copy
import csv

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader import preprocessors as stock
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from traitlets import Instance
from traitlets.config import Configurable

from coursekit.judge.solutions import HIDDEN_BEGIN, HIDDEN_END
from coursekit.pipeline.course import this_environment_first
from coursekit.pipeline.plugins.export import CourseExport
from coursekit.pipeline.plugins.feedback import BoundedFeedback, GetGrades, HideHiddenTests
from coursekit.pipeline.plugins.sanitize import (RESTORED_NOTE, CheckCellMetadata, DeduplicateIds, RestoreDeletedTests,
                                                 restore_tests, restored_tests)


def _meta(grade_id, grade=False, solution=False, points=0):
    return {"nbgrader": {"grade": grade, "solution": solution, "locked": not solution, "grade_id": grade_id,
                         "points": points, "schema_version": 3}}


def answer(grade_id, source="# YOUR CODE HERE"):
    return new_code_cell(source, metadata=_meta(grade_id, solution=True))


def graded_cell(grade_id, source="assert True", points=1):
    return new_code_cell(source, metadata=_meta(grade_id, grade=True, points=points))


def written(grade_id, points=3):
    return new_markdown_cell("YOUR ANSWER HERE", metadata=_meta(grade_id, grade=True, solution=True, points=points))


def ids(notebook):
    return [cell.metadata.get("nbgrader", {}).get("grade_id", cell.source if cell.source == RESTORED_NOTE else "-")
            for cell in notebook.cells]


class _Course(Configurable):
    """What nbgrader's converter is to its preprocessors: the owner of a CourseDirectory."""

    coursedir = Instance(CourseDirectory)


def _source():
    return new_notebook(cells=[new_markdown_cell("# ps1"), answer("linear"), graded_cell("linear_visible"), graded_cell("linear_hidden"),
                               answer("tanh"), graded_cell("tanh_hidden")])


# RestoreDeletedTests


def test_a_deleted_test_cell_is_put_back_after_the_cell_before_it_below_a_note():
    submission = new_notebook(cells=[new_markdown_cell("# ps1"), answer("linear", "class Linear: ..."), graded_cell("linear_visible"),
                                     new_code_cell("print('my own cell')"), answer("tanh", "class Tanh: ...")])
    assert restore_tests(submission, _source()) == ["linear_hidden", "tanh_hidden"]
    assert ids(submission) == ["-", "linear", "linear_visible", RESTORED_NOTE, "linear_hidden", "-", "tanh", RESTORED_NOTE,
                               "tanh_hidden"]
    assert submission.cells[4].source == "assert True" and submission.cells[4].metadata == graded_cell("linear_hidden").metadata
    assert restored_tests(submission) == ["linear_hidden", "tanh_hidden"]


def test_a_test_with_no_graded_cell_before_it_goes_after_the_first_plain_cell_or_first_and_answers_stay_out():
    submission = new_notebook(cells=[new_markdown_cell("# my ps1"), new_code_cell("print('all I kept')")])
    assert restore_tests(submission, _source()) == ["linear_visible", "linear_hidden", "tanh_hidden"]
    assert ids(submission) == ["-", RESTORED_NOTE, "linear_visible", RESTORED_NOTE, "linear_hidden", RESTORED_NOTE, "tanh_hidden",
                               "-"]
    only_answers = new_notebook(cells=[answer("tanh")])
    assert restore_tests(only_answers, _source()) == ["linear_visible", "linear_hidden", "tanh_hidden"]
    assert ids(only_answers) == [RESTORED_NOTE, "linear_visible", RESTORED_NOTE, "linear_hidden", "tanh", RESTORED_NOTE,
                                 "tanh_hidden"]


def test_a_missing_answer_is_not_put_back_even_one_that_is_graded():
    autograded_answer = new_code_cell("def f(): ...", metadata=_meta("f", grade=True, solution=True, points=2))
    source = new_notebook(cells=[answer("linear"), autograded_answer, written("why"), graded_cell("f_check")])
    submission = new_notebook(cells=[new_markdown_cell("# my ps1")])
    assert restore_tests(submission, source) == ["f_check"] and ids(submission) == ["-", RESTORED_NOTE, "f_check"]


def test_a_complete_submission_is_left_as_it_is():
    source = _source()
    submission = copy.deepcopy(source)
    assert restore_tests(submission, source) == [] and submission == source and restored_tests(submission) == []


def test_the_preprocessor_reads_the_assignments_source_notebook(tmp_path):
    import nbformat

    (tmp_path / "source" / "ps1").mkdir(parents=True)
    nbformat.write(_source(), tmp_path / "source" / "ps1" / "ps1.ipynb")
    course = _Course(coursedir=CourseDirectory(root=str(tmp_path)))
    submission = new_notebook(cells=[answer("linear"), graded_cell("linear_visible"), graded_cell("linear_hidden"), answer("tanh")])
    RestoreDeletedTests(parent=course).preprocess(submission, {"nbgrader": {"assignment": "ps1", "notebook": "ps1"}})
    assert restored_tests(submission) == ["tanh_hidden"]
    alone = new_notebook(cells=[answer("linear")])
    RestoreDeletedTests().preprocess(alone, {"nbgrader": {"assignment": "ps1", "notebook": "ps1"}})
    assert ids(alone) == ["linear"], "no course to read the source from: nothing changes"


# DeduplicateIds


def test_a_duplicated_cell_becomes_a_plain_cell_that_passes_the_metadata_check():
    def notebook():
        return new_notebook(cells=[answer("linear", "first copy"), answer("linear", "second copy"), graded_cell("linear_visible")])

    deduplicated, _ = DeduplicateIds().preprocess(notebook(), {})
    assert [cell.source for cell in deduplicated.cells if "nbgrader" in cell.metadata] == ["second copy", "assert True"]
    assert "nbgrader" not in deduplicated.cells[0].metadata
    CheckCellMetadata().preprocess(deduplicated, {})
    stocks, _ = stock.DeduplicateIds().preprocess(notebook(), {})
    with pytest.raises(Exception):  # (what the course's version is for: nbgrader's own fails the submission)
        CheckCellMetadata().preprocess(stocks, {})


# HideHiddenTests


def test_feedback_shows_no_hidden_test_code_and_one_line_errors():
    cell = graded_cell("tanh_hidden", f"check_visible()\n{HIDDEN_BEGIN}\njudge('tanh_hidden')\n{HIDDEN_END}\nprint('done')")
    cell.outputs = [new_output("error", ename="AssertionError", evalue="the sign?",
                               traceback=["Traceback", "  judge('tanh_hidden')  <- the hidden code", "AssertionError: the sign?"])]
    unbalanced = graded_cell("linear_hidden", f"{HIDDEN_BEGIN}\nsecret_check()")
    plain = new_code_cell(f"# {HIDDEN_BEGIN} in a student's own cell", outputs=[new_output("error", ename="E", evalue="e",
                                                                                          traceback=["a", "b"])])
    notebook, _ = HideHiddenTests().preprocess(new_notebook(cells=[cell, unbalanced, plain]), {})
    assert notebook.cells[0].source == "check_visible()\nprint('done')"
    assert notebook.cells[0].outputs[0].traceback == ["AssertionError: the sign?"]
    assert notebook.cells[1].source == "# (test code hidden)"
    assert notebook.cells[2].source == plain.source and notebook.cells[2].outputs[0].traceback == ["a", "b"]


# BoundedFeedback


def test_a_feedback_page_cuts_a_long_cell_and_outputs_past_its_budget():
    long = new_code_cell("x" * 5000)
    printed = new_code_cell("print()", outputs=[new_output("stream", name="stdout", text="y" * 3000) for _ in range(3)])
    notebook, _ = BoundedFeedback(max_cell_bytes=1000, max_page_bytes=8000).preprocess(new_notebook(cells=[long, printed]), {})
    assert notebook.cells[0].source.startswith("x" * 1000 + "\n\n[cut: this cell is 5 KB; the page shows 1 KB of it]")
    texts = [output.text for output in notebook.cells[1].outputs]
    assert texts == ["y" * 3000, "y" * 3000, "\n[cut: the page shows no more outputs]\n"]
    small = new_notebook(cells=[new_code_cell("x = 1", outputs=[new_output("stream", name="stdout", text="1")])])
    assert BoundedFeedback().preprocess(copy.deepcopy(small), {})[0] == small


# The gradebook's plugins: GetGrades and CourseExport


@pytest.fixture
def gradebook(tmp_path):
    """ps1: a test cell (2 points) and a written answer (3 points). ada autograded, her answer not yet
    graded by hand; bob's submission could not be graded; cy handed nothing in."""
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with this_environment_first(), Gradebook(url) as gradebook:
        gradebook.update_or_create_assignment("ps1")
        gradebook.add_notebook("ps1", "ps1")
        gradebook.add_grade_cell("linear_visible", "ps1", "ps1", max_score=2, cell_type="code")
        gradebook.add_grade_cell("why", "ps1", "ps1", max_score=3, cell_type="markdown")
        gradebook.add_solution_cell("why", "ps1", "ps1")
        for student in ("ada", "bob", "cy"):
            gradebook.add_student(student)
        for student in ("ada", "bob"):
            gradebook.add_submission("ps1", student)
        grades = {grade.name: grade for grade in gradebook.find_submission("ps1", "ada").notebooks[0].grades}
        grades["linear_visible"].auto_score, grades["linear_visible"].needs_manual_grade = 2, False
        gradebook.db.commit()
        yield gradebook, url


def test_the_feedback_knows_which_answers_wait_for_a_ta(gradebook):
    _, url = gradebook
    notebook = new_notebook(cells=[graded_cell("linear_visible", points=2), written("why")])
    resources = {"nbgrader": {"notebook": "ps1", "assignment": "ps1", "student": "ada", "db_url": url}}
    notebook, resources = GetGrades().preprocess(notebook, resources)
    graded, waiting = (cell.metadata.nbgrader for cell in notebook.cells)
    assert (graded["score"], graded["points"], graded["ungraded"]) == (2, 2, False)
    assert (waiting["points"], waiting["ungraded"]) == (3, True)
    assert resources["nbgrader"]["ungraded_points"] == 3 and resources["nbgrader"]["score"] == 2


def test_the_export_has_a_row_per_student_with_a_status(gradebook, tmp_path):
    db, _ = gradebook
    (tmp_path / "reports" / "ps1").mkdir(parents=True)
    (tmp_path / "reports" / "ps1" / "errors.csv").write_text("student,graded,error\nbob,no,ps1.ipynb is not a notebook\n")
    course = _Course(coursedir=CourseDirectory(root=str(tmp_path)))
    CourseExport(parent=course, to=str(tmp_path / "grades.csv")).export(db)
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert list(rows["ada"]) == CourseExport.COLUMNS
    assert (rows["ada"]["status"], rows["ada"]["score"], rows["ada"]["max_score"]) == ("awaiting hand grading", "2.0", "5.0")
    assert (rows["bob"]["status"], rows["bob"]["score"]) == ("not graded: ps1.ipynb is not a notebook", "")
    assert (rows["cy"]["status"], rows["cy"]["score"]) == ("not submitted", "0.0")
    # once a TA has graded ada's written answer, she is graded
    grades = {grade.name: grade for grade in db.find_submission("ps1", "ada").notebooks[0].grades}
    grades["why"].manual_score, grades["why"].needs_manual_grade = 1, False  # (as formgrader leaves it)
    db.db.commit()
    CourseExport(parent=course, to=str(tmp_path / "grades.csv")).export(db)
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert (rows["ada"]["status"], rows["ada"]["score"]) == ("graded", "3.0")
    CourseExport(parent=course, to=str(tmp_path / "ada.csv"), student=["ada"]).export(db)
    assert (tmp_path / "ada.csv").read_text().count("\n") == 2, "the header and ada's row alone"
