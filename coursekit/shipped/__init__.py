"""Shipped to students: the helpers next to every notebook (a link in source/<ps>/, a copy in
release/<ps>/). NumPy only; no solution, no hidden test. Grading kernels import them too."""
