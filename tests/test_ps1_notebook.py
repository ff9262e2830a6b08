"""ps1's source and release notebooks: they run, the release is current, and nothing leaks."""
import filecmp
import json
import shutil

import nbformat
from nbclient import NotebookClient

from coursekit import COURSE_ROOT
from coursekit.grading import copy_course, nbgrader
from coursekit.solutions import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END, marked_lines, source_notebook
from coursekit.submissions import fill, release_notebook, solution_answers
from coursekit.torch_reference import CACHE_ONLY

RELEASE = COURSE_ROOT / "release" / "ps1"


def run(notebook, cwd):
    """Execute a notebook; return {grade_id or index: [error or stderr outputs]} for cells that failed."""
    NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    failed = {}
    for i, cell in enumerate(notebook.cells):
        bad = [o for o in cell.get("outputs", [])
               if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")]
        if bad:
            failed[cell.metadata.get("nbgrader", {}).get("grade_id", i)] = bad
    return failed


def test_source_notebook_passes_every_test_with_recorded_torch_values(monkeypatch):
    """Also proves coursekit/torch_cache complete: a value missing from it is an error here."""
    monkeypatch.setenv(CACHE_ONLY, "1")
    notebook = nbformat.read(source_notebook("ps1"), as_version=4)
    assert run(notebook, source_notebook("ps1").parent) == {}


def test_source_is_committed_without_outputs():
    for cell in nbformat.read(source_notebook("ps1"), as_version=4).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.metadata.nbgrader.grade_id


def test_visible_tests_pass_without_torch(tmp_path):
    """A student without PyTorch (or the course tooling) can run every visible test."""
    shutil.copytree(RELEASE, tmp_path / "ps1")
    notebook = fill(release_notebook("ps1"), solution_answers("ps1"))
    blocker = nbformat.v4.new_code_cell("import sys\nsys.modules['torch'] = None\nsys.modules['coursekit'] = None")
    notebook.cells.insert(0, blocker)
    assert run(notebook, tmp_path / "ps1") == {}


def test_release_is_what_nbgrader_builds_from_source(tmp_path):
    course = copy_course("ps1", tmp_path)
    nbgrader(course, "generate_assignment", "ps1", "--force")
    built = course / "release" / "ps1"
    assert sorted(p.name for p in built.iterdir()) == sorted(p.name for p in RELEASE.iterdir())
    assert json.loads((built / "ps1.ipynb").read_text()) == json.loads((RELEASE / "ps1.ipynb").read_text()), \
        "release/ps1 is stale: run `make release` and commit it"
    for path in built.iterdir():
        if path.suffix != ".ipynb":
            assert filecmp.cmp(path, RELEASE / path.name, shallow=False), f"release/ps1/{path.name} is stale"


def test_release_leaks_no_solution_and_no_hidden_test():
    source = nbformat.read(source_notebook("ps1"), as_version=4)
    visible_lines = set()
    secret_lines = set()
    for cell in source.cells:
        secret = (marked_lines(cell.source, SOLUTION_BEGIN, SOLUTION_END)
                  + marked_lines(cell.source, HIDDEN_BEGIN, HIDDEN_END))
        secret_lines.update(line for line in secret if len(line) > 15)
        visible_lines.update(line.strip() for line in cell.source.splitlines()
                             if line.strip() not in secret)
    # lines that also appear in the student's skeleton (e.g. an import) are not secrets
    secret_lines -= visible_lines
    assert len(secret_lines) > 50
    assert sorted(p.name for p in RELEASE.iterdir()) == ["figures.py", "gradcheck.py", "ps1.ipynb"]
    release = nbformat.read(RELEASE / "ps1.ipynb", as_version=4)
    texts = {"ps1.ipynb": "\n".join(cell.source for cell in release.cells)}
    texts.update({p.name: p.read_text() for p in RELEASE.iterdir() if p.suffix == ".py"})
    for name, text in texts.items():
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "coursekit", "import torch"):
            assert marker not in text, f"{name} contains {marker!r}"
        leaked = secret_lines & {line.strip() for line in text.splitlines()}
        assert not leaked, f"{name} contains solution or hidden-test lines: {sorted(leaked)[:3]}"
    for cell in release.cells:
        assert cell.get("outputs", []) == []
