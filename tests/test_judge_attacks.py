"""Attacks on the judged tests (JUDGE_ATTACKS in tests/fixtures/<assignment>_submissions.py),
graded by `make grade` in one batch with honest students: each attack loses
the points of the test cell it fakes (JUDGE_ATTACKED), and the honest students keep full marks."""
import pytest

from conftest import CATALOGS
from coursekit.tools.scratch import grade_submissions
from coursekit.tools.submissions import Solution

pytestmark = pytest.mark.slow

ASSIGNMENTS = ["ps1", "ps2", "ps3"]
CASES = [(assignment, attack.name) for assignment in ASSIGNMENTS for attack in CATALOGS[assignment].JUDGE_ATTACKS]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    done = {}

    def graded(assignment):
        if assignment not in done:
            catalog = CATALOGS[assignment]
            honest = {"honest_solution": Solution(), "honest_variant": catalog.VARIANTS[0]}
            submissions = {**honest, **{attack.name: attack for attack in catalog.JUDGE_ATTACKS}}
            done[assignment] = grade_submissions(assignment, submissions, tmp_path_factory.mktemp(assignment),
                                                 feedback=False)
        return done[assignment]

    return graded


def test_every_attack_names_the_cell_it_fakes():
    for assignment in ASSIGNMENTS:
        catalog = CATALOGS[assignment]
        assert sorted(catalog.JUDGE_ATTACKED) == sorted(attack.name for attack in catalog.JUDGE_ATTACKS)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_honest_students_in_the_batch_keep_full_marks(batch, assignment):
    for name in ("honest_solution", "honest_variant"):
        result = batch(assignment)[name]
        assert result.cells and result.total == result.max_total, f"{name}: {result.error or result.cells}"


@pytest.mark.parametrize(("assignment", "name"), CASES)
def test_attack_loses_the_points_it_fakes(batch, assignment, name):
    cell = CATALOGS[assignment].JUDGE_ATTACKED[name]
    result = batch(assignment)[name]
    assert result.cells, f"{name} was not graded: {result.error}"
    assert result.cells[cell] < result.max_cells[cell], f"{name} kept the points of {cell}"
