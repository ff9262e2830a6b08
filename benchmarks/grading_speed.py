"""How long grading ps1 submissions takes with stock `nbgrader autograde`.

Usage: .venv/bin/python benchmarks/grading_speed.py [--students N]

Grades N copies of the model solution in a scratch copy of the course and prints the wall
time per submission. Figures go in the README; no test asserts a time.
"""
import argparse
import tempfile
import time

from coursekit.grading import copy_course, nbgrader
from coursekit.submissions import Solution, release_notebook, submit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=5)
    parser.add_argument("--assignment", default="ps1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        course = copy_course(args.assignment, scratch)
        nbgrader(course, "generate_assignment", args.assignment, "--force")
        release = release_notebook(args.assignment, course)
        for i in range(args.students):
            submit(course, f"student{i:03d}", args.assignment, Solution(), release)
        start = time.perf_counter()
        nbgrader(course, "autograde", args.assignment, "--force")
        elapsed = time.perf_counter() - start
    print(f"stock nbgrader autograde {args.assignment}: {args.students} submissions in {elapsed:.1f} s, "
          f"{elapsed / args.students:.1f} s per submission")


if __name__ == "__main__":
    main()
