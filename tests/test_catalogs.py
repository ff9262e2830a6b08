"""Mutation tests for every assignment's grading: each bug loses points in its own part, each
correct variant keeps full marks, each cheat loses the points of the part it tries to fake."""
import nbformat
import pytest

from conftest import ASSIGNMENTS, CATALOGS, catalog_written
from coursekit.pipeline.results import failure_messages, part_of
from coursekit.judge.solutions import answer_cells, source_notebook
from coursekit.tools.submissions import Solution
from coursekit.pipeline.tamper import scan_code

pytestmark = pytest.mark.slow

# Training uses every class, so any bug may cost its points too; every other part is isolated.
SHARED_PARTS = {"training"}
BUGS = [(a, bug.name) for a in ASSIGNMENTS for bug in CATALOGS[a].BUGS]
VARIANTS = [(a, variant.name) for a in ASSIGNMENTS for variant in CATALOGS[a].VARIANTS]
CHEATS = [(a, cheat.name) for a in ASSIGNMENTS for cheat in CATALOGS[a].CHEATS]


def _find(items, name):
    (item,) = [item for item in items if item.name == name]
    return item


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalog_is_big_and_well_formed(assignment):
    catalog_written(assignment)
    catalog = CATALOGS[assignment]
    cells = set(answer_cells(nbformat.read(source_notebook(assignment), as_version=4)))
    assert len({bug.name for bug in catalog.BUGS}) == len(catalog.BUGS) >= 40
    assert len({variant.name for variant in catalog.VARIANTS}) == len(catalog.VARIANTS) >= 12
    assert {bug.cell for bug in catalog.BUGS} == cells, "every answer cell has bugs in the catalog"
    for bug in catalog.BUGS:
        answers = bug.answers(assignment)  # raises if the edit no longer applies to the solution
        assert answers[bug.cell] != Solution().answers(assignment)[bug.cell]


@pytest.mark.reads("solution", "blank")
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_marks_and_blank_release_zero(graded, assignment):
    graded = graded(assignment, "catalog")
    solution, blank = graded["solution"], graded["blank"]
    assert solution.cells and solution.total == solution.max_total > 0
    assert not failure_messages(solution.autograded), "every test cell of the solution passes (0-point ones too)"
    assert set(blank.cells) == set(solution.cells), "every test cell was graded"
    assert blank.total == 0


@pytest.mark.parametrize(("assignment", "name"), BUGS)
def test_bug_loses_points_only_in_its_part(graded, assignment, name):
    bug, result = _find(CATALOGS[assignment].BUGS, name), graded(assignment, "catalog")[name]
    assert result.cells, f"{name} was not graded"
    assert bug.cell in result.lost(), f"{name} kept full marks in {bug.cell}: {result.cells}"
    assert result.lost() <= {bug.cell} | SHARED_PARTS, f"{name} also lost points in {result.lost()}"


@pytest.mark.parametrize(("assignment", "name"), VARIANTS)
def test_correct_variant_keeps_full_marks(graded, assignment, name):
    result = graded(assignment, "catalog")[name]
    assert result.cells and result.total == result.max_total, \
        f"{name} lost points: {failure_messages(result.autograded)}"


@pytest.mark.parametrize(("assignment", "name"), BUGS)
def test_failure_message_is_one_line_with_hint(graded, assignment, name):
    bug, result = _find(CATALOGS[assignment].BUGS, name), graded(assignment, "catalog")[name]
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


@pytest.mark.parametrize(("assignment", "name"), CHEATS)
def test_cheat_does_not_save_a_wrong_answer(graded, assignment, name):
    """Each cheat wraps a wrong answer in one part (CHEATED_PART; most: WRONG_ANSWER, which fails
    every test of that part) with code that tries to make the tests pass anyway."""
    catalog, result = CATALOGS[assignment], graded(assignment, "cheats")[name]
    part = catalog.CHEATED_PART
    assert result.cells, f"{name} was not graded"
    assert part in result.lost(), f"{name} kept {part} points: {result.cells}"
    if catalog.WRONG_ANSWER.strip() in _find(catalog.CHEATS, name).cells[part]:
        assert result.parts()[part] == 0, f"{name} kept {part} points: {result.cells}"
    if name in getattr(catalog, "KILLS_ITS_KERNEL", ()):  # the parts after it are lost with the kernel
        order = list(result.max_parts())
        assert result.lost() <= set(order[order.index(part):]), f"{name} lost points before {part}: {result.cells}"
    else:
        assert result.lost() <= {part} | SHARED_PARTS


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_tamper_report_finds_every_cheat_and_no_correct_variant(assignment):
    catalog = CATALOGS[assignment]
    for cheat in catalog.CHEATS:
        findings = scan_code(catalog.CHEATED_PART, cheat.cells[catalog.CHEATED_PART])
        assert findings, f"{cheat.name} is not reported"
        assert all(f.cell == catalog.CHEATED_PART and f.line >= 1 for f in findings)
    for variant in catalog.VARIANTS:
        for cell, code in variant.cells.items():
            assert scan_code(cell, code) == [], f"{variant.name} is reported"
