"""`make new-assignment` (coursekit.tools.scaffold): the new assignment passes the suite's tests of an
assignment as it stands, and its empty catalog is reported as to write instead of failing."""
import os
import shutil
import subprocess
import sys

import pytest

from coursekit import COURSE_ROOT
from coursekit.pipeline.course import nbgrader
from coursekit.tools.scaffold import scaffold

pytestmark = pytest.mark.slow

COPIED = ["source", "release", "coursekit", "tests", "student", "nbgrader_config.py", "pyproject.toml"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A copy of this course with a new assignment, ps9, scaffolded and released."""
    root = tmp_path_factory.mktemp("course")
    for name in COPIED:
        if (COURSE_ROOT / name).is_dir():
            shutil.copytree(COURSE_ROOT / name, root / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy(COURSE_ROOT / name, root / name)
    run = {"cwd": root, "check": True, "capture_output": True, "text": True,
           "env": {**os.environ, "COURSEKIT_RECORD_TORCH": "1"}}
    subprocess.run([sys.executable, "-m", "coursekit.tools.scaffold", "ps9"], **run)
    nbgrader(root, "generate_assignment", "ps9", "--log-level=WARN")
    subprocess.run([sys.executable, "-m", "coursekit.tools.release", "ps9"], **run)
    return root


def test_scaffold_refuses_to_overwrite_an_assignment(course):
    with pytest.raises(SystemExit, match="exists already"):
        scaffold("ps9", course)
    with pytest.raises(SystemExit, match="named ps<number>"):
        scaffold("homework", course)


def test_a_new_assignment_passes_its_tests_and_its_catalog_is_to_write(course):
    """The suite's tests of ps9 (notebooks, release, judge, catalog, similarity, demo) run in the
    copy: those that need a catalog are skipped as to write, the rest pass."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "ps9", "-q", "-rs", "-p", "no:cacheprovider"],
                          cwd=course, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "still to write" in done.stdout and "ps9: tests/fixtures/ps9_submissions.py is marked TO_WRITE" in done.stdout
    assert "ps9: source/ps9/ps9.ipynb still has the scaffold's '(title)'" in done.stdout
    assert "ps9's catalog is to write" in done.stdout
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 8 and " skipped" in summary, summary
