"""Limits that load cannot move (coursekit.pipeline.limits): a kernel's time is the CPU time of its
process tree, backstopped by the wall clock less the load's delay, and every check runs under its
own CPU time and memory budget."""
import resource
import subprocess
import sys
import textwrap
import time

import nbformat
import numpy as np
import pytest

from coursekit import judge
from coursekit.judge.torch_reference import MissingValue
from coursekit.pipeline import limits
from coursekit.pipeline.plugins.execute import UNRESPONSIVE
from coursekit.tools.release import run_notebook
from coursekit.tools.scratch import cpu_hogs

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end:\n    pass\n"


def test_a_process_trees_cpu_time_counts_its_threads_and_its_children_living_or_ended():
    script = textwrap.dedent(f"""
        import os, subprocess, sys, threading, time
        burn = {BURN!r}
        threads = [threading.Thread(target=exec, args=(burn.format(seconds=0.4).replace("process_time", "thread_time"),))
                   for _ in range(2)]
        [t.start() for t in threads]; [t.join() for t in threads]
        subprocess.run([sys.executable, "-c", burn.format(seconds=0.4)])  # ended, and reaped
        subprocess.Popen([sys.executable, "-c", burn.format(seconds=0.4) + "time.sleep(60)"])  # living
        time.sleep(60)
    """)
    tree = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline, used = time.monotonic() + 30, 0
        while used < 1.6 and time.monotonic() < deadline:  # (0.4 s for each thread and each child)
            time.sleep(0.2)
            used, _ = limits.tree_usage(tree.pid)
    finally:
        tree.kill()
        tree.wait()
    assert 1.6 <= used < 3, used
    assert limits.tree_usage(tree.pid) == (0, 0)  # ended: no tree


def test_the_time_a_busy_machine_holds_a_kernel_back_is_not_counted_as_waiting():
    tree = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=60)])
    try:
        with cpu_hogs():
            time.sleep(0.5)  # (the hogs start)
            started, (_, delayed) = time.monotonic(), limits.tree_usage(tree.pid)
            time.sleep(3)
            took, (_, delay) = time.monotonic() - started, limits.tree_usage(tree.pid)
    finally:
        tree.kill()
        tree.wait()
    assert delay - delayed > took / 2  # (three hogs a core beside it: it waits most of the time)


def _notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_a_busy_machine_makes_a_cell_slower_not_stopped(tmp_path):
    """1.5 s of computing under a 2.5 s limit, beside three hogs a core: it takes several times
    longer on the wall clock (a wall-clock limit stopped it), and it is not stopped."""
    with cpu_hogs():
        started = time.monotonic()
        cell, after = run_notebook(_notebook(BURN.format(seconds=1.5), "print('next')"), tmp_path, None,
                                   timeout=2.5).cells
        took = time.monotonic() - started
    assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    assert after.outputs[0].text == "next\n"
    assert took > 2.5  # the load was real: the old wall-clock limit would have stopped the cell


def test_a_cell_past_its_cpu_time_is_stopped_and_says_what_it_used(tmp_path):
    loop, caught, after = run_notebook(_notebook(
        "while True:\n    pass",
        "while True:\n    try:\n        sum(range(10 ** 9))\n    except KeyboardInterrupt:\n        pass",  # ignores interrupts
        "print('next')"), tmp_path, None, timeout=1).cells
    assert [o.ename for o in loop.outputs] == ["CellTimeoutError"]
    assert "used more than its 1 s of CPU time" in loop.outputs[0].evalue
    assert [o.ename for o in caught.outputs] == ["CellTimeoutError"]
    # the kernel that does not stop when asked is given up: what follows fails at once, saying why
    assert [(o.ename, o.evalue) for o in after.outputs] == [("DeadKernel", f"not run: {UNRESPONSIVE} in an earlier cell")]


def test_a_cell_that_waits_is_stopped_by_the_wall_clock_backstop(tmp_path):
    started = time.monotonic()
    sleeper, after = run_notebook(_notebook("import time\ntime.sleep(600)", "print('next')"), tmp_path, None,
                                  timeout=0.5).cells
    assert time.monotonic() - started < 30
    assert "ran for more than 1.5 s without finishing" in sleeper.outputs[-1].evalue
    assert after.outputs[0].text == "next\n"


def _kernel_that_answers(reply):
    return lambda request: reply


def test_a_check_that_allocates_past_its_budget_fails_its_cell_and_the_grader_keeps_its_memory():
    def greedy(kernel):
        kernel.run(["seed", 1])
        np.ones((4, 2 ** 30 // 8))  # 4 GB

    before, limit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrlimit(resource.RLIMIT_AS)
    outcome = limits.bounded_verdict(greedy, [], (), _kernel_that_answers('[{"ok": null}]'))
    assert outcome[0] == "TestFailure" and "more than 1 GB of memory" in outcome[1]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 2 ** 10  # KB: refused, not taken
    assert resource.getrlimit(resource.RLIMIT_AS) == limit  # put back


def test_a_check_that_computes_past_its_budget_fails_its_cell(tmp_path):
    def endless(kernel):
        while True:
            pass

    started = time.monotonic()
    outcome = limits.bounded_verdict(endless, [], (), _kernel_that_answers(""), cpu_seconds=1)
    assert outcome[0] == "TestFailure" and "more than 1 s of CPU time" in outcome[1]
    assert time.monotonic() - started < 10
    # and the tamper report says so
    from coursekit.pipeline.tamper import scan_graded

    cell = nbformat.v4.new_code_cell("judge('tanh_hidden')", metadata={"nbgrader": {"grade": True, "grade_id": "tanh_hidden"}},
                                     outputs=[nbformat.v4.new_output("error", ename=outcome[0], evalue=outcome[1], traceback=[])])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "graded.ipynb")
    assert [(f.cell, f.what) for f in scan_graded(tmp_path / "graded.ipynb")] == \
        [("tanh_hidden", "a check ran out of its time or memory budget")]


def test_a_check_that_waits_for_pytorch_on_a_busy_machine_is_not_stopped(monkeypatch):
    """The PyTorch process's computing is the judge's own: a wait for it past the wall-clock
    backstop (a slow reply on a loaded machine) does not stop the check; the same wait spent
    by the check itself does."""
    from coursekit.judge import torch_reference

    def slow_pytorch(request):
        time.sleep(1.0)  # past the backstop of 3 x 0.2 s
        return torch_reference._pack(output=np.full(2, 7.0))

    monkeypatch.setattr(torch_reference, "_exchange", slow_pytorch)
    monkeypatch.setattr(torch_reference, "_read_cached", lambda path: pytest.fail("read from the cache"))
    monkeypatch.delenv(torch_reference.CACHE_ONLY, raising=False)
    monkeypatch.delenv(torch_reference.RECORD, raising=False)

    def waits_for_pytorch(kernel):
        x = np.random.default_rng().normal(size=3)  # (a key no cache holds)
        assert torch_reference.value("sum", (x,)).tolist() == [7.0, 7.0]

    def waits_itself(kernel):
        time.sleep(1.0)

    assert limits.bounded_verdict(waits_for_pytorch, [], (), _kernel_that_answers(""), cpu_seconds=0.2) is None
    outcome = limits.bounded_verdict(waits_itself, [], (), _kernel_that_answers(""), cpu_seconds=0.2)
    assert outcome[0] == "TestFailure" and "more than 0.6 s" in outcome[1]


def test_a_checks_verdict_and_its_kernels_silence_cross_from_its_process():
    def check(kernel):
        (value,) = kernel.run(["seed", 3])
        if value != 2.5:
            raise AssertionError("wrong")

    assert limits.bounded_verdict(check, [], (), _kernel_that_answers('[{"ok": {"f": 2.5}}]')) is None
    assert limits.bounded_verdict(check, [], (), _kernel_that_answers('[{"ok": {"f": 1.0}}]')) == \
        ("AssertionError", "wrong")

    def silent(request):
        raise judge.KernelSilent("the kernel is gone")

    assert limits.bounded_verdict(check, [], (), silent) == ("NoReply", "the kernel is gone")


def test_the_courses_own_faults_still_stop_the_grading():
    def incomplete(kernel):
        raise MissingValue("no cached PyTorch value")

    with pytest.raises(MissingValue, match="no cached PyTorch value"):
        limits.bounded_verdict(incomplete, [], (), _kernel_that_answers(""))
