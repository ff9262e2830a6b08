"""Kernels forked from a warm zygote (coursekit.kernel.warm_kernels) behave like kernels jupyter_client launches."""
import nbformat
import psutil
import pytest

from coursekit.kernel import warm_kernels
from coursekit.pipeline.plugins.execute import TimeLimitedExecute
from coursekit.kernel.sandbox import SandboxedKernelManager
from coursekit.kernel.warm_kernels import ForkedKernelManager

STARTED = []  # the process id that stops each kernel started by run()
ANCESTORS = {}  # that process id -> the ids of its ancestors


class Recorded(ForkedKernelManager):
    async def _async_post_start_kernel(self, **kw):
        STARTED.append(self.provisioner.pid)
        ANCESTORS[self.provisioner.pid] = [parent.pid for parent in psutil.Process(self.provisioner.pid).parents()]
        return await super()._async_post_start_kernel(**kw)


def run(folder, *cells, **options):
    """The outputs of each cell, run by a forked kernel in ``folder``."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    options.setdefault("kernel_manager_class", Recorded)
    execute = TimeLimitedExecute(**options)
    executed, _ = execute.preprocess(notebook, {"metadata": {"path": str(folder)}})
    return [cell.outputs for cell in executed.cells]


def text(outputs):
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def test_forked_kernel_has_its_notebooks_files_and_environment(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    monkeypatch.setenv("NBGRADER_PROBE", "set by the grader")
    (outputs,) = run(tmp_path, "import os, helper\n"
                               "print(helper.VALUE, os.environ['NBGRADER_PROBE'])\n"
                               "print(os.getpgid(0) == os.getpid())\n"
                               "import time; time.sleep(0.5)")
    assert text(outputs).splitlines() == ["42 set by the grader", "True"], "the kernel leads its own process group"


def test_forked_kernels_are_forked_not_launched(tmp_path):
    run(tmp_path, "import time; time.sleep(0.5)", "print(1)")
    assert warm_kernels.zygote().process.pid in ANCESTORS[STARTED[-1]], "the kernel was launched"
    assert not psutil.pid_exists(STARTED[-1]), "the kernel outlived its notebook"


def test_timeout_interrupts_a_forked_kernel_and_the_next_cell_runs(tmp_path):
    loop, after = run(tmp_path, "while True:\n    pass", "print('still alive')", timeout=2)
    assert "CellTimeoutError" in [o.ename for o in loop if o.output_type == "error"]
    assert text(after) == "still alive\n"


@pytest.mark.parametrize("mode", ["Context", "Plain"])
def test_forked_kernels_format_tracebacks_as_launched_kernels_do(tmp_path, mode):
    # the zygote has formatted tracebacks already (to fill caches): a kernel's must not change
    (tmp_path / "helper.py").write_text("def check(x):\n    assert x == 1, f'x is {x}'\n")
    cells = ("import helper\nhelper.check(2)", "def f():\n    return 1 / 0\nf()", "syntax error(")
    options = {"allow_errors": True, "extra_arguments": [f"--InteractiveShell.xmode={mode}"]}
    forked = run(tmp_path, *cells, **options)
    launched = run(tmp_path, *cells, **options, kernel_manager_class=SandboxedKernelManager)
    errors = [[o for o in outputs if o.output_type == "error"] for outputs in forked]
    assert [[e.ename for e in cell] for cell in errors] == [["AssertionError"], ["ZeroDivisionError"], ["SyntaxError"]]
    assert errors == [[o for o in outputs if o.output_type == "error"] for outputs in launched]


def test_student_code_cannot_reach_the_next_kernel(tmp_path):
    run(tmp_path, "import numpy\nnumpy.pi = 3")
    (outputs,) = run(tmp_path, "import numpy\nprint(numpy.pi)")
    assert text(outputs).startswith("3.14159")


def _ancestors_of_a_kernel(folder):
    run(folder, "print(1)")
    return ANCESTORS[STARTED[-1]]


def test_processes_forked_after_the_zygote_share_it(tmp_path):
    import concurrent.futures
    import multiprocessing

    shared = warm_kernels.zygote()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        ancestors = list(pool.map(_ancestors_of_a_kernel, [tmp_path] * 4))
    assert all(shared.process.pid in chain for chain in ancestors), "a worker started a zygote of its own"
    assert warm_kernels.zygote() is shared and shared.process.poll() is None


def test_a_killed_zygote_is_replaced(tmp_path):
    killed = warm_kernels.zygote()
    killed.process.kill()
    killed.process.wait(timeout=10)
    run(tmp_path, "print(1)")
    replaced = warm_kernels.zygote()
    assert replaced is not killed and replaced.process.poll() is None


@pytest.mark.parametrize(("code", "expected"), [("import torch", ["torch"]), ("from torch import nn", ["torch"]),
                                                ("import numpy as np\n%matplotlib inline", []), ("from . import torch", [])])
def test_heavy_imports_are_found_in_code_cells(code, expected):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code), nbformat.v4.new_markdown_cell("import torch")])
    assert warm_kernels.heavy_imports(notebook) == expected
