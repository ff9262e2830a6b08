"""formgrader's pages as the course wants them: their math rendered by MathJax that the Jupyter
server itself serves (the jupyter_server_mathjax extension), not from a CDN that a course server
may not reach.

nbgrader's "formgrade" template imports a ``mathjax`` macro by name, and nbconvert looks for it
first in the template's own folders under every Jupyter data path: with the course's templates
on JUPYTER_PATH, ``templates/nbconvert/templates/formgrade/mathjax.html.j2`` replaces the macro
for formgrader's pages alone.
"""
import os
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


def render_math_offline() -> None:
    """Put the course's templates on JUPYTER_PATH (nbgrader_config.py calls it: formgrader's server reads it)."""
    paths = [path for path in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if path]
    if str(TEMPLATES) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(TEMPLATES), *paths])
