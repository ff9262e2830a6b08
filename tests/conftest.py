"""Shared fixtures: every assignment's catalog, and one autograding run of each catalog."""
from pathlib import Path

import nbformat
import pytest

from coursekit import COURSE_ROOT
from coursekit.grading import grade_submissions
from coursekit.solutions import HIDDEN_BEGIN, HIDDEN_END, marked_lines, source_notebook
from coursekit.submissions import Blank, Solution, load_fixtures, release_notebook

FIXTURES = Path(__file__).parent / "fixtures"
# Every assignment in source/ has its submissions (bugs, variants, cheats, demo class) in fixtures/.
ASSIGNMENTS = sorted(path.name for path in (COURSE_ROOT / "source").glob("ps*"))
CATALOGS = {assignment: load_fixtures(FIXTURES / f"{assignment}_submissions.py") for assignment in ASSIGNMENTS}


@pytest.fixture(scope="session")
def graded_catalog(tmp_path_factory):
    """graded_catalog(assignment) -> {name: Result} for the solution, the blank release, every bug
    and every variant, autograded by nbgrader (once per session)."""
    done = {}

    def grade(assignment):
        if assignment not in done:
            catalog = CATALOGS[assignment]
            submissions = {"solution": Solution(), "blank": Blank()}
            submissions.update({bug.name: bug for bug in catalog.BUGS})
            submissions.update({variant.name: variant for variant in catalog.VARIANTS})
            done[assignment] = grade_submissions(assignment, submissions, tmp_path_factory.mktemp(f"{assignment}-catalog"),
                                                 feedback=False)
        return done[assignment]

    return grade


def hidden_only_lines(assignment, min_length=20):
    """Lines of the hidden tests that students never see (not also in a visible test)."""
    shown = {line.strip() for cell in release_notebook(assignment).cells for line in cell.source.splitlines()}
    source = nbformat.read(source_notebook(assignment), as_version=4)
    hidden = {line for cell in source.cells for line in marked_lines(cell.source, HIDDEN_BEGIN, HIDDEN_END)}
    return {line for line in hidden - shown if len(line) >= min_length}


def assert_feedback_hides_hidden_tests(assignment, paths):
    """No feedback page shows a line of the hidden tests."""
    hidden = hidden_only_lines(assignment)
    assert len(hidden) > 20
    for path in paths:
        text = path.read_text()
        leaked = [line for line in hidden if line in text or line.replace('"', "&quot;") in text]
        assert not leaked, f"{path} shows hidden test lines: {leaked[:2]}"
