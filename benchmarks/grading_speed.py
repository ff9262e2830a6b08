"""Grading speed: stock sequential `nbgrader autograde` against `make grade`, on the same submissions.

Usage: .venv/bin/python benchmarks/grading_speed.py [--students 40] [--jobs N]

Takes the first N submissions of the ps1 bug catalog and variants (a realistic mix), grades
them once with stock `nbgrader autograde ps1` (then `nbgrader generate_feedback ps1`, the rest of
what `make grade` does) and once with `make grade`'s grader, each in a scratch copy of the
course, and prints the times, the CPU time the whole machine spent per submission, the ratios,
the floor (the time to execute one notebook's own cells in a kernel) and the machine's parallel
capacity (how much faster its cores together run CPU-bound work than one after the other).
Figures go in the README; no test asserts a time.
"""
import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from traitlets.config.loader import PyFileConfigLoader

from coursekit import COURSE_ROOT
from coursekit.pipeline.course import nbgrader
from coursekit.pipeline.grade_class import DEFAULT_JOBS, grade_class
from coursekit.tools.scratch import copy_course
from coursekit.tools.submissions import fill, load_fixtures, release_notebook, solution_answers, submit


def class_of(n):
    catalog = load_fixtures(COURSE_ROOT / "tests" / "fixtures" / "ps1_submissions.py")
    pool = catalog.BUGS + catalog.VARIANTS
    return {f"s{i:03d}_{pool[i % len(pool)].name}": pool[i % len(pool)] for i in range(n)}


def make_course(scratch, submissions):
    course = copy_course("ps1", scratch)
    release = release_notebook("ps1", COURSE_ROOT)
    for student, submission in submissions.items():
        submit(course, student, "ps1", submission, release)
    return course


def timed(fn):
    """(seconds, CPU seconds of the whole machine) taken by fn()."""
    start, cpu = time.perf_counter(), _busy(psutil.cpu_times())
    fn()
    return time.perf_counter() - start, _busy(psutil.cpu_times()) - cpu


def _busy(times):
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def _spin(_=None, steps=10_000_000):
    total = 0
    for i in range(steps):
        total += i
    return total


def parallel_capacity(repeats=5):
    """How many times faster the machine runs one CPU-bound task per core, all at once, than
    the same tasks one after the other (the most that parallel workers can gain); the median
    of ``repeats`` measurements, since a virtual machine's cores may share a physical one."""
    cores = os.cpu_count()
    ratios = []
    with concurrent.futures.ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_spin, range(cores), [1] * cores))  # the workers have started
        for _ in range(repeats):
            one_by_one, _ = timed(lambda: [_spin() for _ in range(cores)])
            together, _ = timed(lambda: list(pool.map(_spin, range(cores))))
            ratios.append(one_by_one / together)
    return statistics.median(ratios)


def floor(repeats=3):
    """Seconds to start a grading kernel and run the solution notebook's cells in it, as
    autograding does (what grading a submission cannot avoid)."""
    notebook = fill(release_notebook("ps1", COURSE_ROOT), solution_answers("ps1"))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(COURSE_ROOT)).load_config()
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    times = []
    for _ in range(repeats):
        copy = nbformat.from_dict(notebook)
        client = NotebookClient(copy, kernel_name="python3", extra_arguments=config.Execute.extra_arguments,
                                resources={"metadata": {"path": str(COURSE_ROOT / "release" / "ps1")}})
        start = time.perf_counter()
        client.execute()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    args = parser.parse_args()
    submissions = class_of(args.students)
    with tempfile.TemporaryDirectory() as scratch:
        stock = make_course(Path(scratch) / "stock", submissions)
        nbgrader(stock, "generate_assignment", "ps1", "--force")
        stock_time, stock_cpu = timed(lambda: nbgrader(stock, "autograde", "ps1", "--force", check=False))
        feedback_time, feedback_cpu = timed(lambda: nbgrader(stock, "generate_feedback", "ps1", "--force", check=False))
        ours = make_course(Path(scratch) / "ours", submissions)
        ours_time, ours_cpu = timed(lambda: grade_class("ps1", ours, jobs=args.jobs, progress=False))
    notebook_floor = floor()
    capacity = parallel_capacity()
    n = args.students

    def row(what, seconds, cpu):
        print(f"  {what:<48} {seconds:6.1f} s  ({seconds / n:.2f} s and {cpu / n:.2f} s of CPU per submission)")

    print(f"{n} ps1 submissions on {os.cpu_count()} cores (Python {sys.version.split()[0]})")
    row("stock nbgrader autograde, sequential", stock_time, stock_cpu)
    row("  then stock nbgrader generate_feedback", feedback_time, feedback_cpu)
    row(f"make grade, {args.jobs} workers (autograde and feedback)", ours_time, ours_cpu)
    print(f"  speed-up over stock autograde: {stock_time / ours_time:.1f}x")
    print(f"  speed-up over stock autograde + generate_feedback: {(stock_time + feedback_time) / ours_time:.1f}x")
    print(f"  floor: executing one notebook's cells in a kernel takes {notebook_floor:.2f} s")
    print(f"  parallel capacity: {os.cpu_count()} CPU-bound processes at once run {capacity:.2f}x as fast as one by one")


if __name__ == "__main__":
    main()
