"""Similarity report speed: a class of N ps1 submissions compared part by part.

Usage: .venv/bin/python benchmarks/similarity_speed.py [--students 1000]

Each student's answer to a part is one of the part's independent correct answers (the model
solution or a catalog variant's own rewrite), disguised with a salt of its own (names, method
order, comments, two lines): every student is a copy of one of a few sources, the hard case for
the candidate index. Prints the time to tokenise and fingerprint the class and to compare it.
Figures go in the README; no test asserts a time.
"""
import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fixtures")]

from copies import disguise  # noqa: E402
from test_similarity import independent_answers  # noqa: E402

from coursekit.pipeline import similarity  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    args = parser.parse_args()
    sources, starters = independent_answers("ps1")
    by_part = {part: [cells[part] for cells in sources.values() if part in cells] for part in starters}
    rng = random.Random(0)
    start = time.perf_counter()
    answers = {f"s{i:04d}": {part: disguise(rng.choice(codes), salt=f"s{i}") for part, codes in by_part.items()}
               for i in range(args.students)}
    made = time.perf_counter()
    found = similarity.class_pairs(answers, starters, model=sources["solution"])
    done = time.perf_counter()
    print(f"{args.students} ps1 submissions, {len(starters)} parts: made in {made - start:.1f} s (not counted); "
          f"fingerprinted and compared, with each other and with the model solution, in {done - made:.1f} s; "
          f"{sum(map(len, found.pairs.values()))} pairs above {similarity.THRESHOLD:.0%}, "
          f"{sum(map(len, found.model.values()))} answers close to the model solution")


if __name__ == "__main__":
    main()
