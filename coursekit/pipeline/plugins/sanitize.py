"""Autograde's first stage (``Autograde.sanitize_preprocessors``), on the submitted notebook before
it runs: duplicated ids made harmless, deleted test cells put back, and nbgrader's metadata check
made faster."""
import copy
import os

import jsonschema
import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell
from nbgrader import preprocessors as nbgrader_preprocessors
from nbgrader import utils
from nbgrader.nbgraderformat import common as nbgraderformat_common


class DeduplicateIds(nbgrader_preprocessors.DeduplicateIds):
    """nbgrader's DeduplicateIds (a student duplicated a graded cell: the last copy keeps the id),
    except that the other copies become plain cells. nbgrader leaves them an empty ``nbgrader``
    entry, which its own metadata check then rejects as an old format, failing the submission."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        nb, resources = super().preprocess(nb, resources)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", None) == {}:
                del cell.metadata["nbgrader"]
        return nb, resources


RESTORED_NOTE = ("**This test cell was missing from your notebook** (deleted?): the grader put it back from "
                 "the assignment, and it is graded as usual.")


class RestoreDeletedTests(nbgrader_preprocessors.NbGraderPreprocessor):
    """Put back the test cells that a submission lacks, from the assignment's source notebook, each
    after the cell that precedes it there and below a note (RESTORED_NOTE) that says so.

    A hidden test cell looks empty in the student's copy (a comment), so students delete them; a
    deleted test cell would otherwise score nothing, silently. OverwriteCells, which runs next,
    then gives each its source from the gradebook, as for any test cell.
    """

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        source = self._source_notebook(resources)
        if source is None:
            return nb, resources
        restored = restore_tests(nb, source)
        if restored:
            self.log.warning("Test cells missing from the submission, put back: %s", ", ".join(restored))
        return nb, resources

    def _source_notebook(self, resources):
        """The assignment's source notebook, from the course that runs this preprocessor (nbgrader's
        converter, which owns the CourseDirectory), or None outside a course."""
        owner = self.parent
        while owner is not None and not hasattr(owner, "coursedir"):  # the exporter's converter
            owner = getattr(owner, "parent", None)
        info = resources.get("nbgrader", {})
        if owner is None or not info.get("assignment") or not info.get("notebook"):
            return None
        folder = owner.coursedir.format_path(owner.coursedir.source_directory, ".", info["assignment"])
        path = os.path.join(folder, f"{info['notebook']}.ipynb")
        return nbformat.read(path, as_version=4) if os.path.exists(path) else None


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def restore_tests(notebook: NotebookNode, source: NotebookNode) -> list[str]:
    """Put the test cells of ``source`` (the assignment's notebook) that ``notebook`` lacks back into it,
    in place, each below RESTORED_NOTE and after the graded cell that precedes it in ``source``; a test
    with no graded cell before it goes after the submission's first cell without a grade_id (its title,
    as a rule), or first. Returns their grade_ids, in order."""
    present = {_grade_id(cell) for cell in notebook.cells} - {None}
    previous, restored = None, []
    for cell in source.cells:
        grade_id = _grade_id(cell)
        if grade_id is None or grade_id in present:
            previous = grade_id or previous
            continue
        if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
            continue
        at = next((i + 1 for i, other in enumerate(notebook.cells) if _grade_id(other) == previous), 0)
        notebook.cells[at:at] = [new_markdown_cell(RESTORED_NOTE),
                                 new_code_cell(cell.source, metadata=copy.deepcopy(cell.metadata))]
        previous = grade_id
        restored.append(grade_id)
    return restored


def restored_tests(notebook: NotebookNode) -> list[str]:
    """The grade_ids of the test cells that RestoreDeletedTests put back into ``notebook``."""
    return [_grade_id(after) for before, after in zip(notebook.cells, notebook.cells[1:])
            if before.cell_type == "markdown" and before.source == RESTORED_NOTE]


class _CompiledSchemas:
    """Stands in for the ``jsonschema`` module in nbgrader's metadata validator: ``validate``
    compiles each schema once instead of checking the schema itself again for every cell."""

    ValidationError = jsonschema.ValidationError

    def __init__(self):
        self._validators = {}

    def validate(self, instance, schema):
        key = id(schema)
        if key not in self._validators:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[key] = (schema, cls(schema))  # keep the schema alive: its id is the key
        error = jsonschema.exceptions.best_match(self._validators[key][1].iter_errors(instance))
        if error is not None:
            raise error


_COMPILED = _CompiledSchemas()


class CheckCellMetadata(nbgrader_preprocessors.CheckCellMetadata):
    """nbgrader's CheckCellMetadata, the same checks in a tenth of the time: its validator calls
    ``jsonschema.validate``, which validates the schema itself before every cell (0.3 s of each
    autograde, where the notebook's own cells take about 1 s)."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        saved = nbgraderformat_common.jsonschema
        nbgraderformat_common.jsonschema = _COMPILED
        try:
            return super().preprocess(nb, resources)
        finally:
            nbgraderformat_common.jsonschema = saved
