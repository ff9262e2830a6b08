"""Shared fixtures: every assignment's catalog, one autograding run of each, and its secret lines."""
from pathlib import Path

import nbformat
import pytest

from coursekit import COURSE_ROOT
from coursekit.tools.scratch import grade_submissions
from coursekit.judge.solutions import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END, marked_lines, source_notebook
from coursekit.tools.scaffold import PLACEHOLDERS
from coursekit.tools.submissions import Blank, Solution, load_fixtures

FIXTURES = Path(__file__).parent / "fixtures"
# Every assignment in source/ has its submissions (bugs, variants, cheats, demo class) in fixtures/.
ASSIGNMENTS = sorted(path.name for path in (COURSE_ROOT / "source").glob("ps*"))
CATALOGS = {assignment: load_fixtures(FIXTURES / f"{assignment}_submissions.py") for assignment in ASSIGNMENTS}


def catalog_written(assignment):
    """Skip the calling test if the assignment's catalog is still to write (`make new-assignment`
    left it empty, marked TO_WRITE): the session's summary lists it."""
    if getattr(CATALOGS[assignment], "TO_WRITE", False):
        pytest.skip(f"{assignment}'s catalog is to write (tests/fixtures/{assignment}_submissions.py)")


def pytest_terminal_summary(terminalreporter):
    to_write = [f"{a}: tests/fixtures/{a}_submissions.py is marked TO_WRITE (the tests that need a whole catalog, its "
                "size, cheats and planted copy, were skipped; its bugs and variants were graded)"
                for a in ASSIGNMENTS if getattr(CATALOGS[a], "TO_WRITE", False)]
    to_write += [f"{a}: source/{a}/{a}.ipynb still has the scaffold's {placeholder!r}" for a in ASSIGNMENTS
                 for placeholder in PLACEHOLDERS if placeholder in source_notebook(a).read_text()]
    if to_write:
        terminalreporter.write_sep("=", "still to write", yellow=True)
        for line in to_write:
            terminalreporter.write_line(line)


def _submissions(assignment, kind):
    catalog = CATALOGS[assignment]
    if kind == "cheats":
        return {cheat.name: cheat for cheat in catalog.CHEATS}
    submissions = {"solution": Solution(), "blank": Blank()}
    submissions.update({bug.name: bug for bug in catalog.BUGS})
    submissions.update({variant.name: variant for variant in catalog.VARIANTS})
    return submissions


# --- markers: `-m ps3` runs one assignment's tests, `-m "not slow"` the quick loop (make quick) ----

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: grades a class or runs a whole workflow (left out by make quick)")
    config.addinivalue_line("markers", "reads(*names, assignment=None, kind=None): catalog submissions a test reads "
                            "from the session's grading (the rest need not be graded)")
    for assignment in ASSIGNMENTS:
        config.addinivalue_line("markers", f"{assignment}: a test of {assignment} (make test A={assignment})")


@pytest.hookimpl(tryfirst=True)  # before -m selects
def pytest_collection_modifyitems(items):
    """Mark each test parametrized by an assignment with it."""
    for item in items:
        assignment = getattr(getattr(item, "callspec", None), "params", {}).get("assignment")
        if assignment in ASSIGNMENTS:
            item.add_marker(assignment)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_finish(session):
    """Note which catalog submissions the selected tests read (CATALOG_NEEDS), so that
    `-k one_bug` grades one bug, not the whole catalog. A test parametrized by an assignment reads
    its ``name``, or what its ``reads`` marker names, or the whole kind; a test of no assignment
    says what it reads in ``reads`` markers that name it: ``reads(*names, assignment=, kind=)``."""
    CATALOG_NEEDS.clear()
    for item in session.items:
        if "graded" not in getattr(item, "fixturenames", ()):
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        kind = "cheats" if "cheat" in item.originalname else "catalog"
        if "name" in params and "assignment" in params:
            CATALOG_NEEDS.setdefault((params["assignment"], kind), set()).add(params["name"])
            continue
        reads = list(item.iter_markers("reads"))
        for marker in reads:
            assignment = marker.kwargs.get("assignment", params.get("assignment"))
            CATALOG_NEEDS.setdefault((assignment, marker.kwargs.get("kind", kind)), set()).update(marker.args)
        if not reads and "assignment" in params:
            CATALOG_NEEDS.setdefault((params["assignment"], kind), set()).update(_submissions(params["assignment"], kind))


CATALOG_NEEDS = {}  # (assignment, kind) -> names of the submissions the selected tests read


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """graded(assignment, kind) -> {name: StudentResult}, autograded by nbgrader once per session: kind
    "catalog" is the solution, the blank release, every bug and every variant; "cheats" the cheats
    (of each, the ones that the selected tests read)."""
    done = {}

    def grade(assignment, kind):
        if (assignment, kind) not in done:
            wanted = CATALOG_NEEDS.get((assignment, kind))
            submissions = {name: submission for name, submission in _submissions(assignment, kind).items()
                           if wanted is None or name in wanted}
            done[assignment, kind] = grade_submissions(assignment, submissions,
                                                       tmp_path_factory.mktemp(f"{assignment}-{kind}"), feedback=False)
        return done[assignment, kind]

    return grade


SOLUTIONS = (SOLUTION_BEGIN, SOLUTION_END)
HIDDEN_TESTS = (HIDDEN_BEGIN, HIDDEN_END)


def secret_lines(assignment, regions, min_length):
    """Lines of the source notebook inside the marker ``regions`` (e.g. [HIDDEN_TESTS]) that are
    never also shown outside them (a visible test or the skeleton may repeat a line), of at least
    ``min_length`` characters: what must never reach a student. The hidden tests include the
    assignment's judge module (coursekit/judge/<assignment>.py), if it has one."""
    secret, shown = set(), set()
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        outside = cell.source
        for begin, end in regions:
            secret.update(marked_lines(cell.source, begin, end))
            outside = "\n".join(marked_lines(outside, begin, end, inside=False))
        shown.update(outside.splitlines())
    judge_module = COURSE_ROOT / "coursekit" / "judge" / f"{assignment}.py"
    if HIDDEN_TESTS in regions and judge_module.exists():
        secret.update(line.strip() for line in judge_module.read_text().splitlines())
        for shipped in source_notebook(assignment).parent.glob("*.py"):  # the judge may repeat a helper's line
            shown.update(shipped.read_text().splitlines())
    shown = {line.strip() for line in shown}
    return {line for line in secret if line.strip() not in shown and len(line.strip()) >= min_length
            and not line.strip().startswith(("import ", "from "))}  # (an import tells nothing of a test)


def assert_feedback_hides_hidden_tests(assignment, paths):
    """No feedback page shows a line of the hidden tests."""
    hidden = secret_lines(assignment, [HIDDEN_TESTS], min_length=20)
    assert len(hidden) >= 5
    for path in paths:
        text = path.read_text()
        leaked = [line for line in hidden if line in text or line.replace('"', "&quot;") in text]
        assert not leaked, f"{path} shows hidden test lines: {leaked[:2]}"
