"""Checks that a wrong answer cannot pass by recognising them (tests/fixtures/tricks.py): each
trick, a wrong answer that recognises a check (its inputs, the shape it measures, the judge's
stand-ins, an identity that satisfies "with np.einsum", the evaluation data), is graded in one
batch with honest students and with its control, the same wrong answer without the trick. The
trick earns nothing its control does not, in any cell; the control loses points in the cells the
trick aims at (so the comparison means something); the honest students keep full marks exactly.
By `make grade` for every trick and its control, and by stock `nbgrader autograde` for one trick of
each family per assignment, which must get `make grade`'s scores cell by cell (both run the same
judge: the stock path is the same, and the comparison with the control carries over)."""
import pytest

from conftest import CATALOGS, FIXTURES
from coursekit.pipeline.tamper import scan_notebook
from coursekit.tools.scratch import grade_submissions, grade_submissions_stock
from coursekit.tools.submissions import Solution, load_fixtures, release_notebook

TRICKS = load_fixtures(FIXTURES / "tricks.py").TRICKS

pytestmark = pytest.mark.slow

CASES = [(assignment, trick.trick.name) for assignment, tricks in TRICKS.items() for trick in tricks]
# Tricks that tell the judge's stand-ins by how they behave (a probing call): no reading of the
# code can name them; the composite checks with the student's own layers are what stops them.
BY_BEHAVIOUR = {"ps2_detected_judge_mlp1_skips_relu_probing_its_layers", "ps3_detected_judge_mlp_relu_only_for_negative_inputs"}
GRADERS = ["make grade", "stock autograde"]


def _stock_sample(tricks):
    """One trick of each family."""
    return list({trick.family: trick for trick in reversed(tricks)}.values())


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    done = {}

    def graded(assignment, grader):
        if (assignment, grader) not in done:
            submissions = {"honest_solution": Solution(), "honest_variant": CATALOGS[assignment].VARIANTS[0]}
            for trick in TRICKS[assignment] if grader == "make grade" else _stock_sample(TRICKS[assignment]):
                submissions[trick.trick.name] = trick.trick
                if grader == "make grade":
                    submissions[trick.control.name] = trick.control
            workdir = tmp_path_factory.mktemp(f"{assignment}_{grader.split()[0]}")
            done[assignment, grader] = (grade_submissions(assignment, submissions, workdir, feedback=False)
                                        if grader == "make grade" else grade_submissions_stock(assignment, submissions, workdir))
        return done[assignment, grader]

    return graded


def _trick(assignment, name):
    (trick,) = [trick for trick in TRICKS[assignment] if trick.trick.name == name]
    return trick


def test_every_family_has_several_tricks_and_every_trick_a_control():
    families = {}
    for assignment, tricks in TRICKS.items():
        for trick in tricks:
            families.setdefault(trick.family, []).append(trick)
            assert trick.control.name == trick.trick.name + "_control" and trick.cells
    assert set(families) == {"fixed inputs", "loops", "detected judge", "einsum identity", "memorised data"}
    assert all(len(tricks) >= 2 for tricks in families.values()), {f: len(t) for f, t in families.items()}


@pytest.mark.parametrize("grader", GRADERS)
@pytest.mark.parametrize("assignment", sorted(TRICKS))
def test_honest_students_beside_the_tricks_keep_full_marks(batch, assignment, grader):
    for name in ("honest_solution", "honest_variant"):
        result = batch(assignment, grader)[name]
        assert result.cells and result.total == result.max_total, f"{name}: {result.error or result.cells}"


@pytest.mark.parametrize(("assignment", "name"), CASES)
def test_a_trick_earns_nothing_its_control_does_not(batch, assignment, name):
    trick, results = _trick(assignment, name), batch(assignment, "make grade")
    tricked, control = results[name], results[trick.control.name]
    assert tricked.cells and control.cells, f"not graded: {tricked.error or control.error}"
    assert any(control.cells[cell] < control.max_cells[cell] for cell in trick.cells), \
        f"the control of {name} loses nothing in {trick.cells}: the pair proves nothing"
    gained = {cell: (score, control.cells[cell]) for cell, score in tricked.cells.items() if score > control.cells[cell]}
    assert not gained, f"{name} earned more than its control in {gained}"
    stock = batch(assignment, "stock autograde")
    if name in stock:  # (one trick of each family)
        assert stock[name].cells == tricked.cells, f"stock autograde grades {name} otherwise than make grade"


@pytest.mark.parametrize(("assignment", "name"), CASES)
def test_the_tamper_report_names_what_a_trick_adds(tmp_path, assignment, name):
    """Code that recognises a check is named in the tamper report (findings the model solution has not)."""
    if name in BY_BEHAVIOUR:
        pytest.skip("recognises the judge's objects or inputs by their behaviour alone")
    release, found = release_notebook(assignment), {}
    for submission in (_trick(assignment, name).trick, Solution()):
        path = tmp_path / f"{submission.name}.ipynb"
        path.write_bytes(submission.content(assignment, release))
        found[submission.name] = {(f.cell, f.what) for f in scan_notebook(path)}
    assert found[name] - found["solution"], f"{name} is not named by the tamper report"
