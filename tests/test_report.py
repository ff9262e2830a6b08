"""The instructor's report: what the class got wrong, counted from the failure messages' hints."""
import pytest

from conftest import CATALOGS
from coursekit.tools.scratch import grade_submissions
from coursekit.pipeline.report import mistake, mistakes
from coursekit.tools.submissions import Solution

BUGS = {bug.name: bug for bug in CATALOGS["ps1"].BUGS}
# A class from the catalog: how many students make each mistake (one part each, distinct hints).
CLASS = {"linear_grad_biases_mean": 3, "tanh_wrong_sign": 2, "mse_no_factor_two": 1, "mlp_skips_activation": 2}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    submissions = {f"{name}_{i}": BUGS[name] for name, count in CLASS.items() for i in range(count)}
    submissions.update({"ada": Solution(), "bo": Solution()})
    return grade_submissions("ps1", submissions, tmp_path_factory.mktemp("class"), feedback=False)


def test_the_class_mistakes_are_counted_as_the_catalog_predicts(graded):
    found = mistakes(graded)
    for name, students in CLASS.items():
        bug = BUGS[name]
        cells = {cell: kinds for cell, kinds in found.items() if cell.startswith(bug.cell)}
        counted = {n for kinds in cells.values() for kind, n in kinds if bug.says in kind}
        assert counted == {students}, f"{name}: {bug.says!r} counted {counted} times, expected {students}: {cells}"
    assert not any(cell.startswith("linear") and any("sign" in kind for kind, _ in kinds) for cell, kinds in found.items())


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
