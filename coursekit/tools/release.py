"""`make release`'s second step: run each source notebook as autograding does (judged test cells
go to coursekit.judge), which records the PyTorch values its tests use (COURSEKIT_RECORD_TORCH=1,
coursekit/judge/torch_cache/); fails if a cell raised.

Usage: python -m coursekit.tools.release ASSIGNMENT
"""
import sys

import nbformat

from coursekit.judge.solutions import source_notebook


def run_notebook(notebook, folder, assignment, kernel_manager_class=None, timeout=120):
    """Execute ``notebook`` (nbformat, changed in place) in ``folder`` as autograding does: judged
    test cells go to coursekit.judge. The kernel is not sandboxed unless ``kernel_manager_class``
    says so: this runs trusted notebooks (the source notebooks, when `make release` records the
    PyTorch values their tests use)."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets.config import Config

    from coursekit.pipeline.nbgrader_plugins import TimeLimitedExecute

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


def main(argv=None):
    """``python -m coursekit.tools.release ASSIGNMENT``."""
    (assignment,) = argv or sys.argv[1:]
    failed = [cell.metadata.get("nbgrader", {}).get("grade_id", index) for index, cell in enumerate(run_source(assignment).cells)
              if any(o.output_type == "error" for o in cell.get("outputs", []))]
    if failed:
        raise SystemExit(f"source/{assignment}: cells failed: {failed}")


if __name__ == "__main__":
    main()
