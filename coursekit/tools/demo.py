"""Grade the shipped demo class and print its score table.

Usage: python -m coursekit.tools.demo [--course DIR] [--fixtures FILE] ASSIGNMENT

Submits the fictional students of ``tests/fixtures/<assignment>_submissions.py`` (DEMO_CLASS)
into ``submitted/``, grades them as `make grade` does (nbgrader's autograde and feedback on
parallel workers, then ``nbgrader export`` and the instructor report) and prints the table.
"""
import argparse
import shutil
import sys
from pathlib import Path

from coursekit import COURSE_ROOT
from coursekit.pipeline import report
from coursekit.pipeline.course import course_folder, nbgrader
from coursekit.pipeline.grade_class import grade_class
from coursekit.judge.solutions import release_notebook
from coursekit.tools.submissions import load_fixtures, submit


def run(assignment, course, fixtures):
    course = Path(course)
    demo_class = load_fixtures(fixtures).DEMO_CLASS
    release = release_notebook(assignment, course)
    for student, (submission, _) in demo_class.items():
        for step in ("submitted", "autograded", "feedback"):
            shutil.rmtree(course_folder(course, step, student, assignment), ignore_errors=True)
        submit(course, student, assignment, submission, release)
    print(f"Submitted {len(demo_class)} demo students; grading {assignment}...", flush=True)
    results = grade_class(assignment, course)
    nbgrader(course, "export")
    print(report.write(course, assignment, results))
    print(f"Feedback: {course / 'feedback'}/<student>/{assignment}/  Grades: {course / 'grades.csv'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment")
    parser.add_argument("--course", default=COURSE_ROOT, help="course directory (default: this repository)")
    parser.add_argument("--fixtures", help="fixture module with DEMO_CLASS "
                        "(default: tests/fixtures/<assignment>_submissions.py)")
    args = parser.parse_args(argv)
    fixtures = args.fixtures or COURSE_ROOT / "tests" / "fixtures" / f"{args.assignment}_submissions.py"
    run(args.assignment, args.course, fixtures)


if __name__ == "__main__":
    sys.exit(main())
