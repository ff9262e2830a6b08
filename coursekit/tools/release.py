"""`make release`'s second step: run each source notebook as autograding does (judged test cells
go to coursekit.judge), which records the PyTorch values its tests use (COURSEKIT_RECORD_TORCH=1,
coursekit/judge/torch_cache/); fails if a cell raised. Then the source and release notebooks get
the metadata JupyterLab writes when the course's kernel connects (kernel_metadata), so that a
student's notebook is not "modified" the moment it opens.

Usage: python -m coursekit.tools.release ASSIGNMENT
"""
import sys

import nbformat

from coursekit import COURSE_ROOT
from coursekit.judge.solutions import source_notebook


def run_notebook(notebook, folder, assignment, kernel_manager_class=None, timeout=120):
    """Execute ``notebook`` (nbformat, changed in place) in ``folder`` as autograding does: judged
    test cells go to coursekit.judge. The kernel is not sandboxed unless ``kernel_manager_class``
    says so: this runs trusted notebooks (the source notebooks, when `make release` records the
    PyTorch values their tests use)."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets.config import Config

    from coursekit.pipeline.plugins.execute import TimeLimitedExecute

    config = Config()
    if kernel_manager_class is None and zmq.has("curve"):
        # A plain kernel talks over local TCP, readable by any user of the machine (ipykernel warns
        # so at every start); its kernelspec offers CurveZMQ, which jupyter_client then sets up.
        config.KernelManager.transport_encryption = "auto"
    execute = TimeLimitedExecute(kernel_manager_class=kernel_manager_class or AsyncKernelManager, timeout=timeout,
                                 notebook_timeout=20 * timeout, allow_errors=True, shutdown_kernel="immediate",
                                 config=config)
    return execute.preprocess(notebook, {"metadata": {"path": str(folder)}, "nbgrader": {"assignment": assignment}})[0]


def run_source(assignment):
    """Execute the source notebook of ``assignment``; returns it with its outputs."""
    path = source_notebook(assignment)
    return run_notebook(nbformat.read(path, as_version=4), path.parent, assignment)


def kernel_metadata(ran, kernel_name="python3"):
    """The notebook metadata JupyterLab sets when a ``kernel_name`` kernel connects: the kernelspec's
    name, display name and language, and the language_info of the kernel's kernel_info reply, which
    nbclient copied into ``ran``, a notebook this environment's kernel ran.

    A notebook without them (nbformat's minimal {"name": "python"}) changes, and shows as modified,
    the moment JupyterLab opens it. They are this environment's kernel's, which is the one students
    get on the course's hub (its environment is made from the same python3); a student whose
    kernel reports another Python version still sees the notebook change on opening."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel_name)
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": kernel_name},
            "language_info": ran.metadata.language_info}


def set_kernel_metadata(path, metadata):
    """Give the notebook at ``path`` ``metadata`` (kernel_metadata()); True if it changed."""
    notebook = nbformat.read(path, as_version=4)
    if all(notebook.metadata.get(key) == value for key, value in metadata.items()):
        return False
    notebook.metadata.update(metadata)
    nbformat.write(notebook, path)
    return True


def main(argv=None):
    """``python -m coursekit.tools.release ASSIGNMENT``."""
    (assignment,) = argv or sys.argv[1:]
    ran = run_source(assignment)
    failed = [cell.metadata.get("nbgrader", {}).get("grade_id", index) for index, cell in enumerate(ran.cells)
              if any(o.output_type == "error" for o in cell.get("outputs", []))]
    if failed:
        raise SystemExit(f"source/{assignment}: cells failed: {failed}")
    # (nbgrader's generate_assignment copies the source's metadata: once the source has it, the
    # release built from it has it too; the release is given it here the first time)
    metadata = kernel_metadata(ran)
    for path in (source_notebook(assignment), COURSE_ROOT / "release" / assignment / f"{assignment}.ipynb"):
        if set_kernel_metadata(path, metadata):
            print(f"{path.relative_to(COURSE_ROOT)}: the kernel's metadata, as JupyterLab sets it on opening")


if __name__ == "__main__":
    main()
