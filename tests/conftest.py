"""Shared fixtures: the ps1 catalog and one autograding run of every ps1 submission."""
from pathlib import Path

import pytest

from coursekit.grading import grade_submissions
from coursekit.submissions import Blank, Solution, load_fixtures

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def ps1_catalog():
    return load_fixtures(FIXTURES / "ps1_submissions.py")


@pytest.fixture(scope="session")
def ps1_graded(ps1_catalog, tmp_path_factory):
    """{name: Result}: the solution, the blank release, every bug and every variant, autograded by nbgrader."""
    submissions = {"solution": Solution(), "blank": Blank()}
    submissions.update({bug.name: bug for bug in ps1_catalog.BUGS})
    submissions.update({variant.name: variant for variant in ps1_catalog.VARIANTS})
    return grade_submissions("ps1", submissions, tmp_path_factory.mktemp("ps1-catalog"), jobs=2)
