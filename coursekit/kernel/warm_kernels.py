"""Grading kernels forked from a warm process, so that no submission waits for Python to start.

A fresh kernel spends about a second importing IPython, ipykernel and NumPy (and two more
importing PyTorch for ps3) before the first cell runs. `make grade` instead starts one *zygote*,
shared by its local workers (each Dask worker starts its own): a process that has made those
imports once and then forks a kernel for each notebook. The zygote runs under bubblewrap with
the sandbox's read-only view (coursekit.kernel.sandbox), and each fork enters namespaces of its own
and becomes its own user before it turns into a kernel (coursekit.kernel.confine): it sees neither the
zygote nor any other kernel, and nothing the student's code does in it reaches the next one.

nbgrader picks it up through ``TimeLimitedExecute.kernel_manager_class`` (set by
coursekit.pipeline.grade_class; stock ``nbgrader autograde`` launches each kernel under bubblewrap instead). A
kernel command the zygote cannot run, or a zygote that died, falls back to such a launch.
"""
import atexit
import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jupyter_client.connect import KernelConnectionInfo
from traitlets import List

from coursekit import IN_THE_KERNEL
from coursekit.kernel.confine import enter_forked_sandbox, kernel_environment
from coursekit.kernel.sandbox import (ROOTLESS, KernelFolder, SandboxedKernelManager, SandboxProvisioner, bwrap_argv,
                                     course_environment, kernels_base, remove_tree, sandbox_mode)

if TYPE_CHECKING:
    from nbformat import NotebookNode

LAUNCHER = ["-m", "ipykernel_launcher"]
# What every kernel imports before the first cell: ipykernel (its debugger too) and what it
# loads while it starts, NumPy, the helpers of the visible tests and the judge's agent.
ALWAYS = ["ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.debugger",
          "IPython.core.completerlib", "IPython.core.oinspect", "IPython.extensions.storemagic", "psutil",
          "sqlite3", "tornado.platform.asyncio", "zmq",
          "numpy", "numpy.random", "numpy.testing", *(f"coursekit.{name}" for name in IN_THE_KERNEL)]

# Heavy modules worth importing once in the zygote when a notebook uses them (each is known to
# start no thread on import: a fork keeps only the thread that forks).
HEAVY = {"torch"}

_zygotes: dict[tuple, "Zygote"] = {}  # preloaded modules -> the zygote of this process
LOCK_TIMEOUT = 30  # seconds; a busy zygote for that long is treated as gone
REPLY_TIMEOUT = 30  # seconds; a zygote that does not answer a request in that time is treated as gone


def heavy_imports(notebook: "NotebookNode") -> list[str]:
    """The HEAVY modules that the code cells of ``notebook`` (an nbformat notebook) import."""
    import ast

    found: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return sorted(found & HEAVY)


class ForkingProvisioner(SandboxProvisioner):
    """SandboxProvisioner that asks this process's zygote for the kernel process."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if cmd[0] != sys.executable or cmd[1:3] != LAUNCHER:
            return await super().launch_kernel(cmd, **kwargs)
        folder = self.parent.folder  # type: ignore[union-attr]  # (its parent is its kernel manager)
        folder.prepare(kwargs.get("cwd"))
        warm = zygote(self.parent.preload)  # type: ignore[union-attr]
        try:
            pid = warm.fork(cmd[3:], folder, kwargs.get("env") or dict(os.environ))
        except (OSError, ValueError):  # the zygote is gone: start another next time, launch this one
            _zygotes.pop(warm.preload, None)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedProcess(pid)  # type: ignore[assignment]  # (what it uses of a Popen)
        self.pid, self.pgid = pid, None  # the init process of the kernel's PID namespace
        self.cwd = kwargs.get("cwd")
        return self.connection_info


class ForkedKernelManager(SandboxedKernelManager):
    """SandboxedKernelManager whose kernels are forked from a zygote that preloaded ``preload``."""

    preload: List = List([], help="Modules the zygote imports besides ipykernel and NumPy.").tag(config=True)
    provisioner_class = ForkingProvisioner

    def kernel_folder(self) -> KernelFolder:
        return KernelFolder(base=zygote(self.preload).base)  # inside the folder the zygote sees


class ForkedProcess:
    """What LocalProvisioner needs of a subprocess.Popen, for a kernel that is the zygote's child.

    The process is the init process of the kernel's PID namespace: its end ends the kernel and
    everything it started. The zygote's child that waits for it reaps it.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -signal.SIGKILL  # unknown: only its parent could learn it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)  # type: ignore[arg-type]  # (not None here)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """A warm process (``python -m coursekit.kernel.warm_kernels MODULE...``, under bubblewrap) that
    forks kernels on request, in kernel folders under ``base``.

    Processes forked from the one that started it (the workers of `make grade`) share it.
    """

    def __init__(self, preload):
        self.preload = preload
        self.base = tempfile.mkdtemp(prefix="ck-z", dir=kernels_base())
        os.chmod(self.base, 0o755)
        command = [sys.executable, "-m", "coursekit.kernel.warm_kernels", *preload]
        argv = bwrap_argv(self.base, own_pid_namespace=False)
        self.process = subprocess.Popen(argv + ["--chdir", "/", "--", *command],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=course_environment(dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")))
        self.lock = multiprocessing.Lock()  # one request and its reply at a time
        self.owner = os.getpid()

    def exited(self) -> bool:
        """Whether the zygote is known to have exited (only the process that started it can tell)."""
        return os.getpid() == self.owner and self.process.poll() is not None

    def fork(self, argv: list[str], folder: KernelFolder, env: dict[str, str]) -> int:
        """Start a kernel with ipykernel_launcher's ``argv`` in the sandbox of ``folder`` (a
        KernelFolder, prepared) with ``env``; returns the process id that stops it.

        Raises OSError if the zygote is gone (a process that shares it cannot poll it: it is not its parent).
        """
        if not self.lock.acquire(timeout=LOCK_TIMEOUT):
            raise OSError("the zygote is busy")
        try:
            request = {"argv": argv, "folder": str(folder.path), "uid": folder.uid, "env": env,
                       "rootless": sandbox_mode() == ROOTLESS}
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            answered, _, _ = select.select([self.process.stdout], [], [], REPLY_TIMEOUT)
            reply = self.process.stdout.readline() if answered else ""
        finally:
            self.lock.release()
        if not reply:
            raise OSError("the zygote did not answer")
        answer = json.loads(reply)
        if "pid" not in answer:
            raise OSError(answer.get("error", reply))
        return answer["pid"]

    def stop(self) -> None:
        """End the zygote (its kernels end with it) and remove its folder."""
        if os.getpid() != self.owner:
            return
        self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        remove_tree(self.base)


def zygote(preload: Iterable[str] = ()) -> Zygote:
    """This process's zygote for kernels that import ALWAYS and ``preload``, started if need be.

    Starting it before forking worker processes lets them share it.
    """
    key = tuple(ALWAYS + list(preload))
    if key not in _zygotes or _zygotes[key].exited():
        if key in _zygotes:
            _zygotes[key].stop()
        _zygotes[key] = Zygote(key)
    return _zygotes[key]


@atexit.register
def _stop_zygotes():
    for warm in _zygotes.values():
        if os.getpid() == warm.owner:
            warm.stop()


def _serve(preload):
    """The zygote: import ``preload``, then fork one kernel per request line until stdin closes."""
    import importlib

    # `python -m` put this directory first on sys.path; a kernel finds modules as
    # ipykernel_launcher leaves it: without it, until IPython adds the kernel's own directory.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    _warm_tracebacks()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # exited kernels are reaped by the system
    # The pipes to the worker get private descriptors; kernels get stdin from /dev/null and
    # stdout on stderr, as a kernel started by jupyter_client would.
    requests, replies = os.fdopen(os.dup(0), "r"), os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    for line in requests:
        request = json.loads(line)
        report, reported = os.pipe()
        if os.fork() == 0:
            os.close(report)
            _become_kernel(request, requests, replies, reported)
        os.close(reported)
        answered, _, _ = select.select([report], [], [], REPLY_TIMEOUT)
        pid = int(os.read(report, 64) or 0) if answered else 0
        os.close(report)
        replies.write(json.dumps({"pid": pid} if pid else {"error": "the kernel's sandbox did not start"}) + "\n")
        replies.flush()


def _warm_tracebacks():
    """Format one traceback as a kernel's shell does, with IPython's default theme, in its
    default mode and in Plain mode (which grading kernels use: see nbgrader_config.py).

    A kernel's first failing test otherwise spends about 0.1 s compiling pygments' Python lexer
    and importing what IPython's traceback formatter uses. Only caches are filled: the kernels'
    tracebacks are the same as those of a kernel that starts cold.
    """
    try:
        from IPython.core import ultratb
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:
        return
    for mode in dict.fromkeys([InteractiveShell.xmode.default_value, "Plain"]):
        try:
            raise ValueError("warming up the traceback formatter")
        except ValueError:
            formatter = ultratb.AutoFormattedTB(mode=mode, theme_name=InteractiveShell.colors.default_value, tb_offset=1)
            formatter.structured_traceback(*sys.exc_info())


def _become_kernel(request, requests, replies, reported):
    """In the forked child: enter the kernel's sandbox, and turn into `python -m ipykernel_launcher
    ARGV` with ``env``. Every process in between ends the kernel if the zygote ends."""
    try:
        requests.close()
        replies.close()
        enter_forked_sandbox(request["folder"], request["uid"], reported, request["rootless"])
        os.setsid()
        os.environ.clear()
        os.environ.update(kernel_environment(request["env"]))
        sys.argv = [LAUNCHER[1], *request["argv"]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except Exception:  # noqa: BLE001 - say why, where a kernel's errors go, then exit as a kernel would
        import traceback

        traceback.print_exc()
    finally:
        os._exit(0)


if __name__ == "__main__":
    _serve(sys.argv[1:])
