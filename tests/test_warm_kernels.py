"""Kernels forked from a warm zygote (coursekit.warm_kernels) behave like kernels jupyter_client launches."""
import os

import nbformat
import pytest

from coursekit import warm_kernels
from coursekit.nbgrader_plugins import TimeLimitedExecute
from coursekit.warm_kernels import ForkedKernelManager


def run(folder, *cells, **options):
    """The outputs of each cell, run by a forked kernel in ``folder``."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    options.setdefault("kernel_manager_class", ForkedKernelManager)
    execute = TimeLimitedExecute(**options)
    executed, _ = execute.preprocess(notebook, {"metadata": {"path": str(folder)}})
    return [cell.outputs for cell in executed.cells]


def text(outputs):
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def test_forked_kernel_runs_in_the_notebooks_folder_with_its_environment(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    monkeypatch.setenv("COURSEKIT_PROBE", "set by the grader")
    (outputs,) = run(tmp_path, "import os, helper\n"
                               "print(os.getcwd(), helper.VALUE, os.environ['COURSEKIT_PROBE'])\n"
                               "print(os.getpgid(0) == os.getpid(), os.getppid())")
    first, second = text(outputs).splitlines()
    assert first == f"{tmp_path} 42 set by the grader"
    leads_its_group, parent = second.split()
    assert leads_its_group == "True", "interrupts and kills go to the kernel's own process group"
    assert int(parent) == warm_kernels.zygote().process.pid != os.getpid(), "the kernel was forked, not launched"


def test_timeout_interrupts_a_forked_kernel_and_the_next_cell_runs(tmp_path):
    loop, after = run(tmp_path, "while True:\n    pass", "print('still alive')", timeout=2)
    assert "CellTimeoutError" in [o.ename for o in loop if o.output_type == "error"]
    assert text(after) == "still alive\n"


@pytest.mark.parametrize("mode", ["Context", "Plain"])
def test_forked_kernels_format_tracebacks_as_launched_kernels_do(tmp_path, mode):
    # the zygote has formatted tracebacks already (to fill caches): a kernel's must not change
    from jupyter_client.manager import AsyncKernelManager

    (tmp_path / "helper.py").write_text("def check(x):\n    assert x == 1, f'x is {x}'\n")
    cells = ("import helper\nhelper.check(2)", "def f():\n    return 1 / 0\nf()", "syntax error(")
    options = {"allow_errors": True, "extra_arguments": [f"--InteractiveShell.xmode={mode}"]}
    forked = run(tmp_path, *cells, **options)
    launched = run(tmp_path, *cells, **options, kernel_manager_class=AsyncKernelManager)
    errors = [[o for o in outputs if o.output_type == "error"] for outputs in forked]
    assert [[e.ename for e in cell] for cell in errors] == [["AssertionError"], ["ZeroDivisionError"], ["SyntaxError"]]
    assert errors == [[o for o in outputs if o.output_type == "error"] for outputs in launched]


def test_student_code_cannot_reach_the_next_kernel(tmp_path):
    run(tmp_path, "import numpy\nnumpy.pi = 3")
    (outputs,) = run(tmp_path, "import numpy\nprint(numpy.pi)")
    assert text(outputs).startswith("3.14159")


def _kernel_parent(folder):
    (outputs,) = run(folder, "import os\nprint(os.getppid())")
    return int(text(outputs))


def test_processes_forked_after_the_zygote_share_it(tmp_path):
    import concurrent.futures
    import multiprocessing

    shared = warm_kernels.zygote()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        parents = list(pool.map(_kernel_parent, [tmp_path] * 4))
    assert parents == [shared.process.pid] * 4, "each worker started a zygote of its own"


def test_a_killed_zygote_is_replaced(tmp_path):
    killed = warm_kernels.zygote()
    run(tmp_path, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    killed.process.wait(timeout=10)
    assert _kernel_parent(tmp_path) == warm_kernels.zygote().process.pid != killed.process.pid


@pytest.mark.parametrize(("code", "expected"), [("import torch", ["torch"]), ("from torch import nn", ["torch"]),
                                                ("import numpy as np\n%matplotlib inline", []), ("from . import torch", [])])
def test_heavy_imports_are_found_in_code_cells(code, expected):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code), nbformat.v4.new_markdown_cell("import torch")])
    assert warm_kernels.heavy_imports(notebook) == expected
