"""The check author's reference, docs/reference/: the judge's vocabulary (``coursekit.judge``,
which exports gradcheck's helpers too) and gradcheck, from their docstrings, by pdoc.

    python -m coursekit.tools.reference [folder]     (make docs)

tests/test_docs.py rebuilds it and compares: a docstring changed without ``make docs`` fails.
"""
import sys
from pathlib import Path

from coursekit import COURSE_ROOT

FOLDER = COURSE_ROOT / "docs" / "reference"
MODULES = ["coursekit.judge", "coursekit.shipped.gradcheck", r"!coursekit\.judge\..*"]  # (the judge's parts: its package says it all)


def write(folder: Path = FOLDER) -> None:
    """The reference's pages in ``folder``: one for the judge, one for gradcheck, and an index."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="markdown", show_source=False, search=False,
                          footer_text="make docs writes these pages from the docstrings")
    pdoc.pdoc(*MODULES, output_directory=Path(folder))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER)
