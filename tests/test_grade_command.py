"""`make grade`: parallel, same scores as stock nbgrader, robust to broken submissions, deterministic."""
import re
import shutil

import nbformat
import pytest

from conftest import FIXTURES, assert_feedback_hides_hidden_tests
from coursekit.pipeline.grade_class import grade_class
from coursekit.pipeline.gradebook import results
from coursekit.tools.scratch import copy_course, cpu_hogs, grade_submissions, grade_submissions_stock, regrade_copy
from coursekit.judge.solutions import source_notebook
from coursekit.tools.submissions import Blank, RawFile, Solution, load_fixtures, submit
from coursekit.pipeline.tamper import scan_code

pytestmark = [pytest.mark.slow, pytest.mark.ps1]

CATALOG = load_fixtures(FIXTURES / "ps1_submissions.py")
BUGS = {bug.name: bug for bug in CATALOG.BUGS}
TEST_CELLS = {cell.metadata.nbgrader.grade_id for cell in nbformat.read(source_notebook("ps1"), as_version=4).cells
              if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade")}
# The infinite loop costs every later cell its time limit: shorter ones (still far above what an
# honest cell takes) make its gradings quicker (broken_graded's and stock nbgrader's of the sample,
# compared under the same limits), and change no score.
SHORT_LIMITS = "c.Execute.timeout = 4\nc.TimeLimitedExecute.timeout_after_timeout = 1\n"
SAMPLE_BUGS = ("linear_grad_biases_mean", "tanh_no_upstream", "mse_in_place")
CHEAT = CATALOG.CHEATS[0]
# Named as the session's gradings name them (the catalog's, the cheats', broken_graded)
SAMPLE = {"solution": Solution(), "blank": Blank(), CHEAT.name: CHEAT, "infinite_loop": CATALOG.BROKEN["infinite_loop"][0],
          **{name: BUGS[name] for name in SAMPLE_BUGS}}


@pytest.fixture(scope="module")
def broken_graded(tmp_path_factory):
    submissions = {name: submission for name, (submission, _) in CATALOG.BROKEN.items()}
    return grade_submissions("ps1", submissions, tmp_path_factory.mktemp("broken"), jobs=2, config=SHORT_LIMITS)


@pytest.mark.reads("solution", "blank", *SAMPLE_BUGS, assignment="ps1", kind="catalog")
@pytest.mark.reads(CHEAT.name, assignment="ps1", kind="cheats")
def test_same_scores_as_stock_nbgrader_on_a_busy_machine_cell_by_cell(graded, broken_graded, tmp_path):
    with cpu_hogs():  # (time limits count CPU time: load makes grading slower, never different)
        stock = grade_submissions_stock("ps1", SAMPLE, tmp_path / "stock", config=SHORT_LIMITS)
    ours = {**graded("ps1", "catalog"), **graded("ps1", "cheats"), "infinite_loop": broken_graded["infinite_loop"]}
    for student in SAMPLE:
        assert ours[student].cells, student
        assert ours[student].cells == stock[student].cells, student


def test_dask_cluster_grades_like_the_local_pool(tmp_path):
    from distributed import LocalCluster

    course = copy_course("ps1", tmp_path)
    for student in ("solution", "blank", "tanh_no_upstream"):
        submit(course, student, "ps1", SAMPLE.get(student) or BUGS[student])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        outcome = grade_class("ps1", course, dask=cluster.scheduler_address, progress=False)
    graded = results(course, "ps1")
    assert all(o.ok for o in outcome.values())
    assert graded["solution"].total == 18 and graded["blank"].total == 0
    assert graded["tanh_no_upstream"].lost() == {"tanh", "training"}
    assert (course / "feedback" / "solution" / "ps1" / "ps1.html").exists()


@pytest.mark.parametrize("name", sorted(CATALOG.BROKEN))
def test_broken_submission_is_graded_or_reported(broken_graded, name):
    result = broken_graded[name]
    kind, expected = CATALOG.BROKEN[name][1]
    if kind == "error":
        assert not result.cells and expected in result.error, f"{name}: {result.error!r}"
    else:
        assert result.cells and not result.error, f"{name} was not graded: {result.error}"
        assert result.lost() == expected, f"{name} lost points in {result.lost()}"
        assert set(result.max_cells) == TEST_CELLS, f"{name}: a test cell is not graded"


def test_deleted_test_cells_are_put_back_and_graded_under_stock_nbgrader_too(broken_graded, tmp_path):
    from coursekit.pipeline.plugins.sanitize import RESTORED_NOTE

    deleted = {"deleted_test_cells": CATALOG.BROKEN["deleted_test_cells"][0]}
    stock = grade_submissions_stock("ps1", deleted, tmp_path)["deleted_test_cells"]
    ours = broken_graded["deleted_test_cells"]
    assert stock.cells == ours.cells and ours.total == ours.max_total == 18
    assert ours.note == "ps1.ipynb: test cells tanh_hidden, mlp_visible were missing and were put back"
    course = ours.autograded.parents[3]
    assert RESTORED_NOTE.split("**")[1] in (course / "feedback" / "deleted_test_cells" / "ps1" / "ps1.html").read_text()
    cells = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nbformat.read(ours.autograded, as_version=4).cells]
    assert cells.index("tanh_hidden") == cells.index("tanh_visible") + 2  # in its place, below the note


def test_infinite_loop_and_memory_hog_fail_with_a_clear_reason(broken_graded):
    from coursekit.pipeline.results import failure_messages

    loop = failure_messages(broken_graded["infinite_loop"].autograded)
    assert re.search(r"used more than its \d s of CPU time .* was stopped", loop["tanh_visible"][-1][1])
    hog = failure_messages(broken_graded["memory_hog"].autograded)
    assert "MSELoss" in hog["mse_visible"][-1][1]


def test_failed_regrade_removes_the_old_grade(tmp_path):
    course = copy_course("ps1", tmp_path)
    submit(course, "zoe", "ps1", Solution())
    grade_class("ps1", course, jobs=1, progress=False)
    assert results(course, "ps1")["zoe"].total == 18
    submit(course, "zoe", "ps1", RawFile("oops", b"\x00\x01 not a notebook"))
    outcome = grade_class("ps1", course, jobs=1, progress=False)
    assert not outcome["zoe"].ok and "not" in outcome["zoe"].error
    assert "zoe" not in results(course, "ps1"), "the old score still stands"
    assert not (course / "autograded" / "zoe" / "ps1").exists()
    assert not (course / "feedback" / "zoe" / "ps1").exists()


def test_failed_regrade_keeps_what_a_ta_graded_by_hand(tmp_path):
    from nbgrader.api import Gradebook

    course = copy_course("ps1", tmp_path)
    submit(course, "zoe", "ps1", Solution())
    grade_class("ps1", course, jobs=1, progress=False)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        gradebook.find_grade("linear_visible", "ps1", "ps1", "zoe").manual_score = 1.5
        gradebook.find_comment("linear", "ps1", "ps1", "zoe").manual_comment = "tidy"
        gradebook.db.commit()
    submit(course, "zoe", "ps1", RawFile("oops", b"\x00\x01 not a notebook"))
    grade_class("ps1", course, jobs=1, progress=False)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grades = gradebook.find_submission_notebook("ps1", "ps1", "zoe").grades
        assert {g.name: g.manual_score for g in grades if g.manual_score is not None} == {"linear_visible": 1.5}
        assert all(g.auto_score is None and g.needs_manual_grade for g in grades), "the old autograde still stands"
        assert gradebook.find_comment("linear", "ps1", "ps1", "zoe").manual_comment == "tidy"
    assert "zoe" not in results(course, "ps1"), "counted as graded, with zeros, in the report and the regrade diff"


@pytest.mark.reads("solution", "blank", *SAMPLE_BUGS, assignment="ps1", kind="catalog")
def test_regrading_on_a_busy_machine_gives_identical_scores(graded, broken_graded, tmp_path):
    first = {**graded("ps1", "catalog"), **broken_graded}
    with cpu_hogs():
        again = {**regrade_copy(graded("ps1", "catalog"), ["solution", "blank", *SAMPLE_BUGS], tmp_path / "catalog"),
                 **regrade_copy(broken_graded, ["deleted_test_cells", "reordered_cells", "infinite_loop"], tmp_path / "broken")}
    assert len(again) == 8
    for student, result in again.items():
        assert result.cells and result.cells == first[student].cells, student


def test_make_grade_writes_grades_report_tamper_list_and_errors(tmp_path):
    import csv
    import subprocess
    import sys

    course = copy_course("ps1", tmp_path)
    shutil.copytree(FIXTURES.parent.parent / "release", course / "release")
    submit(course, "solution", "ps1", Solution())
    submit(course, "cheat", "ps1", CHEAT)
    submit(course, "ivan", "ps1", RawFile("x", b"not a notebook"))
    output = subprocess.run([sys.executable, "-m", "coursekit.pipeline.grade_class", "ps1", "--course", str(course), "--jobs", "2"],
                            capture_output=True, text=True, check=True).stdout
    assert "NOT GRADED: ps1.ipynb is not a notebook" in output
    assert "cheat: cell tanh" in output
    with open(course / "grades.csv", newline="") as f:
        exported = {row["student_id"]: row for row in csv.DictReader(f)}
    assert exported["ivan"]["status"].startswith("not graded: ps1.ipynb is not a notebook") and exported["ivan"]["score"] == ""
    assert exported["solution"]["status"] == "graded" and float(exported["solution"]["score"]) == 18
    folder = course / "reports" / "ps1"
    page = (folder / "report.html").read_text()
    for section in ("Scores", "Failure rate per test cell", "Tamper report", "Errors"):
        assert section in page
    for png in ("score_histogram.png", "failure_rates.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ivan" in (folder / "errors.csv").read_text()


def test_tamper_report_says_what_each_cheat_does():
    assert any("imports builtins" == f.what for f in scan_code("tanh", CATALOG.CHEATS[1].cells["tanh"]))
    assert any("changes np.allclose" == f.what for f in scan_code("tanh", CATALOG.CHEATS[0].cells["tanh"]))
    assert [f.what for f in scan_code("sgd", "setattr(layer, 'W', W)\nsetattr(np, 'allclose', all)")] == \
        ["uses setattr on np"], "an optimizer may set a layer's attributes, not a module's"


def test_tamper_report_names_code_too_deeply_nested_to_parse():
    assert [f.what for f in scan_code("linear", "x = " + "-" * 5000 + "1")] == \
        ["does not parse: nested too deeply for Python's parser"]


def test_tamper_report_allows_torch_only_where_the_task_needs_it():
    code = "import torch.nn.functional as F\nfrom torch import nn"
    assert scan_code("pytorch", code) == [], "ps3's PyTorch part is written with torch"
    assert [f.what for f in scan_code("softmax", code)] == ["imports torch.nn.functional", "imports from torch"]


def test_feedback_never_shows_hidden_tests(broken_graded):
    feedback = list(broken_graded["reordered_cells"].autograded.parents[3].glob("feedback/*/ps1/ps1.html"))
    assert len(feedback) >= 5
    assert_feedback_hides_hidden_tests("ps1", feedback)
    reordered = (broken_graded["reordered_cells"].autograded.parents[3] / "feedback" / "reordered_cells"
                 / "ps1" / "ps1.html").read_text()
    assert "NameError" in reordered and "Cell In[" not in reordered, "a traceback is shown"


def test_feedback_renders_in_headless_chromium(broken_graded, tmp_path):
    import subprocess

    from matplotlib.image import imread

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs Debian's package where it runs as root)")
    page = broken_graded["reordered_cells"].autograded.parents[3] / "feedback" / "reordered_cells" / "ps1" / "ps1.html"
    screenshot = tmp_path / "feedback.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1400",
                    f"--screenshot={screenshot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = imread(screenshot)[..., :3]
    ink = (pixels.mean(axis=2) < 0.8).mean()
    assert ink > 0.01, f"the screenshot is blank ({ink:.2%} of pixels are not light)"


def test_fast_metadata_check_accepts_and_rejects_what_nbgrader_does():
    import copy

    from nbgrader.nbgraderformat import ValidationError
    from nbgrader.preprocessors import CheckCellMetadata as Stock

    from coursekit.pipeline.plugins.sanitize import CheckCellMetadata as Fast
    from coursekit.tools.submissions import release_notebook

    def corrupt(change):
        notebook = copy.deepcopy(release_notebook("ps1"))
        change(next(c.metadata.nbgrader for c in notebook.cells if c.metadata.nbgrader.get("grade")))
        return notebook

    cases = {"release": release_notebook("ps1"),
             "points not a number": corrupt(lambda meta: meta.update(points="many")),
             "grade not a boolean": corrupt(lambda meta: meta.update(grade="yes")),
             "grade cell without points": corrupt(lambda meta: meta.pop("points"))}
    for name, notebook in cases.items():
        verdicts = []
        for check in (Stock(), Fast()):
            try:
                check.preprocess(copy.deepcopy(notebook), {})
                verdicts.append("valid")
            except ValidationError:
                verdicts.append("invalid")
        assert verdicts[0] == verdicts[1] == ("valid" if name == "release" else "invalid"), (name, verdicts)


def test_feedback_exporter_writes_the_page_that_nbconvert_does():
    """The same document as nbconvert's HTMLExporter (which passes its page through
    BeautifulSoup): images without alt text get one, the cells' areas get a tabindex."""
    import re

    import nbformat
    from bs4 import BeautifulSoup
    from nbconvert.exporters import HTMLExporter

    from coursekit.pipeline.plugins.feedback_page import FeedbackHTMLExporter
    from coursekit.tools.submissions import release_notebook

    notebook = release_notebook("ps1")
    notebook.cells[:0] = [nbformat.v4.new_markdown_cell("<img src='a.png'> ![](b.png) <img alt='' src=c>"),
                          nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
                              "display_data", data={"image/png": "iVBORw0KGgo=", "text/html": "<img src=d tabindex=3>"})])]
    pages = [exporter().from_notebook_node(notebook)[0]
             for exporter in (HTMLExporter, FeedbackHTMLExporter, FeedbackHTMLExporter)]  # the last from cache
    pages = [re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "UUID", page) for page in pages]
    assert pages[1] == pages[2]
    assert "jp-Notebook" in pages[0] and str(BeautifulSoup(pages[1], features="html.parser")) == pages[0]
    assert pages[0].count('tabindex="0"') > 20 and pages[0].count('alt="No description') >= 2


def test_a_kernel_that_dies_at_start_up_is_replaced(tmp_path):
    """Kernels started in parallel can race for a free port: the loser dies before running a cell.
    Here the first kernel's port is taken on purpose; the notebook still runs, on a second kernel."""
    import socket

    import nbformat
    from jupyter_client.manager import AsyncKernelManager

    from coursekit.pipeline.plugins.execute import TimeLimitedExecute

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    resources = {"metadata": {"path": str(tmp_path)}}

    def run(**options):
        """(executed notebook, kernels started) when the first kernel's shell port is taken."""
        started = []
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()

            class FirstKernelLosesTheRace(AsyncKernelManager):
                def __init__(self, **kwargs):
                    super().__init__(**kwargs)
                    if not started:  # (with port caching it would choose a free port)
                        self.cache_ports, self.shell_port = False, taken.getsockname()[1]
                    started.append(self)

            execute = TimeLimitedExecute(kernel_manager_class=FirstKernelLosesTheRace, startup_timeout=30, **options)
            executed, _ = execute.preprocess(nbformat.from_dict(notebook), resources)
        return executed, len(started)

    executed, kernels = run()
    assert kernels == 2
    assert executed.cells[0].outputs[0].text == "42\n"
    with pytest.raises(RuntimeError, match="Kernel died"):  # a kernel that never starts is still an error
        run(kernel_starts=1)


def test_python_files_handed_in_next_to_the_notebook_are_ignored_and_reported(tmp_path):
    """A planted ipykernel_launcher.py or numpy.py would run before the kernel starts (each gets the Tanh
    points of a wrong Tanh from stock nbgrader): make grade grades the notebook alone."""
    from coursekit.pipeline.tamper import scan_folder

    graded = grade_submissions("ps1", CATALOG.PLANTED_FILES, tmp_path / "ours", jobs=2, feedback=False)
    for name, submission in CATALOG.PLANTED_FILES.items():
        assert graded[name].cells, f"{name}: {graded[name].error}"
        assert graded[name].parts()["tanh"] == 0, f"{name} kept the tanh points"
        folder = submit(tmp_path / "scan", name, "ps1", submission)
        (planted,) = [filename for filename, _ in submission.files if filename.endswith(".py")]
        assert [f.what.split(",")[0] for f in scan_folder(folder)] == [f"adds {planted}"]


def test_tamper_report_reads_added_cells_and_skips_unchanged_helper_files(tmp_path):
    import nbformat

    from coursekit.judge.solutions import source_notebook
    from coursekit.tools.submissions import release_notebook
    from coursekit.pipeline.tamper import scan_folder, scan_notebook

    notebook = release_notebook("ps1")
    notebook.cells.insert(3, nbformat.v4.new_code_cell("import os\nos.system('ls')"))
    nbformat.write(notebook, tmp_path / "ps1.ipynb")
    assert [(f.cell, f.line, f.what) for f in scan_notebook(tmp_path / "ps1.ipynb")] == [("(added cell 3)", 1, "imports os")]

    shipped = source_notebook("ps1").parent
    for helper in ("gradcheck.py", "figures.py"):  # what `nbgrader submit` hands back with the notebook
        (tmp_path / helper).write_bytes((shipped / helper).read_bytes())
    assert scan_folder(tmp_path, shipped) == []
    (tmp_path / "gradcheck.py").write_text("check_close = lambda *args, **kwargs: None\n")
    assert [f.what.split(",")[0] for f in scan_folder(tmp_path, shipped)] == ["adds gradcheck.py"]


def test_the_notebook_clock_starts_with_the_first_cell_not_the_kernel(tmp_path):
    """A kernel slow to start (a loaded machine) must not use up an honest notebook's time."""
    import asyncio

    import nbformat
    from jupyter_client.manager import AsyncKernelManager

    from coursekit.pipeline.plugins.execute import TimeLimitedExecute

    class SlowToStart(AsyncKernelManager):
        async def _async_post_start_kernel(self, **kw):
            await asyncio.sleep(2)
            return await super()._async_post_start_kernel(**kw)

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    execute = TimeLimitedExecute(kernel_manager_class=SlowToStart, notebook_timeout=1.5)
    executed, _ = execute.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert executed.cells[0].outputs[0].text == "42\n"
