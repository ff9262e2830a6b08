"""Tooling for the autograded deep-learning course.

- gradcheck: finite differences and one-line failure messages (ships to students).
- torch_reference: PyTorch float64 reference values for the hidden tests.
- solutions: the model solutions, read from the source notebooks.
- submissions: builds student submissions (solutions, bugs, variants) from notebooks.
- grading: runs nbgrader on a course directory and reads the gradebook.
- demo: grades the shipped demo class and prints its score table.
"""
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parent.parent
