"""The check author's reference (docs/reference/, `make docs`) is current, and documents each
helper of the judge's vocabulary with an example (and its arguments, where it takes several)."""
import filecmp
import inspect
import re

import pytest

from coursekit import judge
from coursekit.tools import reference


def test_the_reference_is_current(tmp_path):
    reference.write(tmp_path)
    compared = filecmp.dircmp(tmp_path, reference.FOLDER)
    pages = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.html"))
    stale = [page for page in pages if not (reference.FOLDER / page).exists()
             or (reference.FOLDER / page).read_bytes() != (tmp_path / page).read_bytes()]
    extra = sorted(str(path.relative_to(reference.FOLDER)) for path in reference.FOLDER.rglob("*.html")
                   if str(path.relative_to(reference.FOLDER)) not in pages)
    assert pages and not stale and not extra, f"run `make docs`: {stale or extra} differ ({compared.diff_files})"


def _parameters(function):
    return [p for p in inspect.signature(function).parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


@pytest.mark.parametrize("name", judge.VOCABULARY)
def test_every_helper_of_the_vocabulary_says_how_it_is_used(name):
    helper = getattr(judge, name)
    doc = inspect.getdoc(helper) or ""
    assert doc, f"{name} has no docstring"
    if inspect.isclass(helper):
        return  # (a class's methods are checked below)
    assert "Example" in doc, f"{name}'s docstring has no example"
    if len(_parameters(helper)) >= 3:
        assert "Args:" in doc, f"{name} takes {len(_parameters(helper))} arguments and its docstring says none"


@pytest.mark.parametrize("method", ["new", "function", "array", "standin", "factory", "scaler", "rng", "run"])
def test_the_notebooks_methods_say_how_they_are_used(method):
    assert "Example" in inspect.getdoc(getattr(judge.Notebook, method))


DOCUMENTS = [reference.COURSE_ROOT / "README.md", *sorted((reference.COURSE_ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_of_the_docs_opens_a_file_of_the_repository(document):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text())
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    missing = [link for link in local if not (document.parent / link).exists()]
    assert not missing, f"{document.name} links to missing files: {missing}"
