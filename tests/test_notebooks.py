"""Every assignment's source and release notebooks: they run, the release is current, nothing leaks."""
import ast
import filecmp
import json
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ASSIGNMENTS, HIDDEN_TESTS, SOLUTIONS, secret_lines
from coursekit import COURSE_ROOT
from coursekit.pipeline.course import nbgrader
from coursekit.pipeline.results import part_of
from coursekit.tools.release import run_notebook
from coursekit.tools.scratch import copy_course
from coursekit.judge.solutions import source_notebook
from coursekit.tools.submissions import fill, release_notebook, solution_answers
from coursekit.judge.torch_reference import CACHE_ONLY

each_assignment = pytest.mark.parametrize("assignment", ASSIGNMENTS)


def release_folder(assignment):
    return COURSE_ROOT / "release" / assignment


def run(notebook, cwd, assignment=None):
    """Execute a notebook (with the judge if ``assignment`` is given, as grading does); return
    {grade_id or index: [error or stderr outputs]} for cells that failed."""
    if assignment:
        run_notebook(notebook, cwd, assignment)
    else:
        NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    failed = {}
    for i, cell in enumerate(notebook.cells):
        bad = [o for o in cell.get("outputs", [])
               if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")]
        if bad:
            failed[cell.metadata.get("nbgrader", {}).get("grade_id", i)] = bad
    return failed


@each_assignment
def test_source_notebook_passes_every_test_with_recorded_torch_values(monkeypatch, capfd, assignment):
    """Also proves coursekit/judge/torch_cache complete: a value missing from it is an error here;
    and that the kernel `make release` runs it in (in `make demo` too) prints no warning."""
    monkeypatch.setenv(CACHE_ONLY, "1")
    notebook = nbformat.read(source_notebook(assignment), as_version=4)
    assert run(notebook, source_notebook(assignment).parent, assignment) == {}
    assert [line for line in capfd.readouterr().err.splitlines() if "WARNING" in line] == []


@each_assignment
def test_source_is_committed_without_outputs(assignment):
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.metadata.nbgrader.grade_id


@each_assignment
def test_visible_tests_pass_without_torch(tmp_path, assignment):
    """A student without PyTorch (or the course tooling) can run every visible test, except those
    of a part written in PyTorch (ps3's "pytorch"), which say that they need it."""
    shutil.copytree(release_folder(assignment), tmp_path / assignment)
    notebook = fill(release_notebook(assignment), solution_answers(assignment))
    blocker = nbformat.v4.new_code_cell("import sys\nsys.modules['torch'] = None\nsys.modules['coursekit'] = None")
    notebook.cells.insert(0, blocker)
    failed = run(notebook, tmp_path / assignment)
    needs_torch = {cell for cell in failed if isinstance(cell, str) and part_of(cell) == "pytorch"}
    assert set(failed) == needs_torch
    for cell in needs_torch:
        (output,) = failed[cell]
        assert output.ename == "TestFailure" and "needs PyTorch" in output.evalue, output


@each_assignment
def test_release_is_what_nbgrader_builds_from_source(tmp_path, assignment):
    course = copy_course(assignment, tmp_path)
    nbgrader(course, "generate_assignment", assignment, "--force")
    built, release = course / "release" / assignment, release_folder(assignment)
    assert sorted(p.name for p in built.iterdir()) == sorted(p.name for p in release.iterdir())
    assert json.loads((built / f"{assignment}.ipynb").read_text()) == \
        json.loads((release / f"{assignment}.ipynb").read_text()), \
        f"release/{assignment} is stale: run `make release` and commit it"
    for path in built.iterdir():
        if path.suffix != ".ipynb":
            assert filecmp.cmp(path, release / path.name, shallow=False), f"release/{assignment}/{path.name} is stale"


def _unguarded_torch_imports(source):
    """The imports of torch in ``source`` that are not inside ``try: ... except ImportError:``."""
    tree = ast.parse(source)
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(h.type is not None and "ImportError" in ast.unparse(h.type)
                                             for h in node.handlers):
            guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return [node for node in ast.walk(tree) if id(node) not in guarded and (
        isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names)
        or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch")]


def test_torch_import_check_tells_guarded_from_unguarded():
    assert _unguarded_torch_imports("import numpy as np\ntry:\n    import torch\nexcept ImportError:\n    torch = None") == []
    assert len(_unguarded_torch_imports("import torch\nfrom torch import nn")) == 2


@each_assignment
def test_release_leaks_no_solution_and_no_hidden_test(assignment):
    secrets = secret_lines(assignment, [SOLUTIONS, HIDDEN_TESTS], min_length=16)
    assert len(secrets) >= 10  # (the leak check has lines to look for)
    release = nbformat.read(release_folder(assignment) / f"{assignment}.ipynb", as_version=4)
    notebook_text = "\n".join(cell.source for cell in release.cells)
    for cell in release.cells:
        if cell.cell_type == "code":
            assert not _unguarded_torch_imports(cell.source), \
                f"students without PyTorch must be able to run the notebook: {cell.source[:80]!r}"
    texts = {f"{assignment}.ipynb": notebook_text}
    texts.update({p.name: p.read_text() for p in release_folder(assignment).iterdir() if p.suffix == ".py"})
    for name, text in texts.items():
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "coursekit"):
            assert marker not in text, f"{name} contains {marker!r}"
        leaked = secrets & {line.strip() for line in text.splitlines()}
        assert not leaked, f"{name} contains solution or hidden-test lines: {sorted(leaked)[:3]}"
    for cell in release.cells:
        assert cell.get("outputs", []) == []


@each_assignment
def test_every_test_cell_with_points_has_its_check_in_the_judge(assignment):
    """Every test cell with points has its check in coursekit/judge/<assignment>.py (a kernel has
    no reference to run a hidden test with), every such cell's hidden region is the one call that
    hands it to the judge, and no check is left without a cell. A 0-point cell (it only shows
    that training runs) may run in the kernel, and then calls no judge."""
    from coursekit import judge
    from coursekit.judge.solutions import marked_lines

    checks = judge.checks(assignment)
    cells = [cell for cell in nbformat.read(source_notebook(assignment), as_version=4).cells
             if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade")
             and (cell.metadata.nbgrader.get("points") or cell.metadata.nbgrader.grade_id in checks)]
    ids = {cell.metadata.nbgrader.grade_id for cell in cells}
    assert set(checks) <= ids, f"checks without a cell: {sorted(set(checks) - ids)}"
    assert ids == set(checks), f"test cells of {assignment} without a check: {sorted(ids - set(checks))}"
    for cell in cells:
        hidden = marked_lines(cell.source, *HIDDEN_TESTS)
        assert not hidden or judge.split_call("\n".join(hidden)) == ("", cell.metadata.nbgrader.grade_id), cell.source
    for cell in nbformat.read(source_notebook(assignment), as_version=4).cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade_id") not in checks:
            assert judge.split_call(cell.source)[1] is None, cell.source


@pytest.fixture(scope="module")
def kernel_metadata():
    """What JupyterLab writes into a notebook's metadata when this environment's python3 kernel
    connects (the kernel the course's hub gives students): its kernelspec, and the language_info
    of its kernel_info reply (which nbclient copies into the notebook it runs)."""
    from jupyter_client.kernelspec import KernelSpecManager

    ran = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    NotebookClient(ran, timeout=60, kernel_name="python3").execute()
    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
            "language_info": ran.metadata.language_info}


@each_assignment
def test_jupyterlab_opens_and_saves_the_release_unchanged(tmp_path, assignment, kernel_metadata):
    """A released notebook is not "modified" the moment a student opens it: JupyterLab's changes on
    opening (the connected kernel's kernelspec and language_info, `make release` writes them:
    coursekit.tools.release.kernel_metadata) change nothing, and saving it through jupyter_server's
    contents manager, as JupyterLab's save does, writes the same bytes. tests/test_jupyterlab.py
    opens ps1 in JupyterLab itself."""
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from traitlets.config import Config

    release = (release_folder(assignment) / f"{assignment}.ipynb").read_bytes()
    notebook = nbformat.reads(release.decode(), as_version=4)
    nbformat.validate(notebook)
    changed = {key: (notebook.metadata.get(key), value) for key, value in kernel_metadata.items()
               if notebook.metadata.get(key) != value}
    assert not changed, f"JupyterLab changes the metadata of release/{assignment} on opening: run `make release`: {changed}"
    (tmp_path / "nb.ipynb").write_bytes(release)
    contents = FileContentsManager(root_dir=str(tmp_path), config=Config({"NotebookNotary": {"db_file": ":memory:"}}))
    model = contents.get("nb.ipynb", content=True)
    model["content"]["metadata"].update(kernel_metadata)  # (what JupyterLab sets; the same)
    contents.save({"type": "notebook", "format": "json", "content": model["content"]}, "nb.ipynb")
    assert (tmp_path / "nb.ipynb").read_bytes() == release
