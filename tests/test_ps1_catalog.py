"""Mutation tests for ps1's grading: every bug loses points in its part, every variant keeps full marks."""
import nbformat
import pytest

from conftest import FIXTURES
from coursekit.grading import failure_messages, grade_submissions, part_of
from coursekit.solutions import answer_cells, source_notebook
from coursekit.submissions import Solution, load_fixtures

CATALOG = load_fixtures(FIXTURES / "ps1_submissions.py")
BUGS = {bug.name: bug for bug in CATALOG.BUGS}
VARIANTS = {variant.name: variant for variant in CATALOG.VARIANTS}
# Training uses every class, so any bug may cost its points too; every other part is isolated.
SHARED_PARTS = {"training"}


def test_catalog_is_big_and_well_formed():
    cells = set(answer_cells(nbformat.read(source_notebook("ps1"), as_version=4)))
    assert len(BUGS) == len(CATALOG.BUGS) >= 30
    assert len(VARIANTS) == len(CATALOG.VARIANTS) >= 10
    assert {bug.cell for bug in BUGS.values()} == cells, "every answer cell has bugs in the catalog"
    for bug in BUGS.values():
        answers = bug.answers("ps1")  # raises if the edit no longer applies to the solution
        assert answers[bug.cell] != Solution().answers("ps1")[bug.cell]


def test_solution_gets_full_marks(ps1_graded):
    result = ps1_graded["solution"]
    assert result.cells and result.total == result.max_total == 18


def test_blank_release_scores_zero_in_every_cell(ps1_graded):
    result = ps1_graded["blank"]
    assert set(result.cells) == set(ps1_graded["solution"].cells), "every test cell was graded"
    assert result.total == 0


@pytest.mark.parametrize("name", sorted(BUGS))
def test_bug_loses_points_only_in_its_part(ps1_graded, name):
    bug, result = BUGS[name], ps1_graded[name]
    assert result.cells, f"{name} was not graded"
    assert bug.cell in result.lost(), f"{name} kept full marks in {bug.cell}: {result.cells}"
    assert result.lost() <= {bug.cell} | SHARED_PARTS, f"{name} also lost points in {result.lost()}"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_correct_variant_keeps_full_marks(ps1_graded, name):
    result = ps1_graded[name]
    assert result.cells and result.total == result.max_total, \
        f"{name} lost points: {failure_messages(result.autograded)}"


@pytest.mark.parametrize("name", sorted(BUGS))
def test_failure_message_is_one_line_with_hint(ps1_graded, name):
    bug, result = BUGS[name], ps1_graded[name]
    messages = failure_messages(result.autograded)
    in_part = [(ename, text) for grade_id, errors in messages.items() if part_of(grade_id) == bug.cell
               for ename, text in errors]
    assert in_part, f"{name}: no failure message in {bug.cell}"
    for ename, text in in_part:
        assert ename in ("TestFailure", "AssertionError"), f"{name}: {ename}: {text}"
        assert text and "\n" not in text, f"{name}: message is not one line: {text!r}"
    if bug.says:
        assert any(bug.says in text for _, text in in_part), \
            f"{name}: no message says {bug.says!r}: {[t for _, t in in_part]}"


CHEATS = {cheat.name: cheat for cheat in CATALOG.CHEATS}


@pytest.fixture(scope="module")
def ps1_cheats_graded(tmp_path_factory):
    return grade_submissions("ps1", CHEATS, tmp_path_factory.mktemp("ps1-cheats"), jobs=2)


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheat_does_not_save_a_wrong_answer(ps1_cheats_graded, name):
    """Each cheat wraps a wrong Tanh (most: one that ignores grad_output); whatever it patches,
    Tanh loses the points of the tests it tries to fake."""
    result = ps1_cheats_graded[name]
    assert result.cells, f"{name} was not graded"
    assert "tanh" in result.lost(), f"{name} kept Tanh points: {result.cells}"
    if CATALOG.WRONG_TANH.strip() in CHEATS[name].cells["tanh"]:
        assert result.parts()["tanh"] == 0, f"{name} kept Tanh points: {result.cells}"
    assert result.lost() <= {"tanh"} | SHARED_PARTS
