"""Grade the shipped demo class with stock nbgrader and print its score table.

Usage: python -m coursekit.demo [--course DIR] [--fixtures FILE] ASSIGNMENT

Submits the fictional students of ``tests/fixtures/<assignment>_submissions.py`` (DEMO_CLASS)
into ``submitted/``, then runs ``nbgrader autograde``, ``generate_feedback`` and ``export``
exactly as an instructor would.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import nbformat

from coursekit import COURSE_ROOT
from coursekit.grading import nbgrader, results
from coursekit.submissions import load_fixtures, release_notebook, submit


def problem_with(path):
    """Why a submitted notebook cannot be graded, or None if it can be read."""
    if not path.exists():
        return f"{path.name} is missing"
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"{path.name} is not a notebook (not JSON: {str(error).splitlines()[0]})"
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds
        return f"{path.name} is not a valid notebook ({type(error).__name__}: {str(error).splitlines()[0]})"
    return None


def score_table(course, assignment, students):
    """The per-student table: points per part, total, and why a student has no grade."""
    graded = results(course, assignment)
    parts = None
    for result in graded.values():
        if result.cells:
            parts = list(result.max_parts())
            maxima = result.max_parts()
            break
    header = f"{'student':<10}" + "".join(f"{p:>10}" for p in parts) + f"{'total':>10}  note"
    lines = [header, f"{'(max)':<10}" + "".join(f"{maxima[p]:>10g}" for p in parts)
             + f"{sum(maxima.values()):>10g}", "-" * len(header)]
    for student in students:
        path = Path(course) / "submitted" / student / assignment / f"{assignment}.ipynb"
        result = graded.get(student)
        problem = problem_with(path)
        if result is None or not result.cells or problem:
            lines.append(f"{student:<10}" + "".join(f"{'-':>10}" for _ in parts) + f"{'-':>10}"
                         f"  NOT GRADED: {problem or 'autograding failed'}")
            continue
        scores = result.parts()
        lines.append(f"{student:<10}" + "".join(f"{scores[p]:>10g}" for p in parts)
                     + f"{result.total:>10g}")
    return "\n".join(lines)


def run(assignment, course, fixtures):
    course = Path(course)
    demo_class = load_fixtures(fixtures).DEMO_CLASS
    release = release_notebook(assignment, course)
    for student, (submission, _) in demo_class.items():
        for folder in ("submitted", "autograded", "feedback"):
            shutil.rmtree(course / folder / student / assignment, ignore_errors=True)
        submit(course, student, assignment, submission, release)
    print(f"Submitted {len(demo_class)} demo students; autograding {assignment} with nbgrader...", flush=True)
    # nbgrader exits non-zero when a submission cannot be graded; the table reports it
    nbgrader(course, "autograde", assignment, "--force", check=False)
    nbgrader(course, "generate_feedback", assignment, "--force", check=False)
    nbgrader(course, "export")
    print(score_table(course, assignment, list(demo_class)))
    print(f"\nFeedback: {course / 'feedback'}/<student>/{assignment}/  Grades: {course / 'grades.csv'}")


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
