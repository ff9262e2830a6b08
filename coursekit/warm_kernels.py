"""Grading kernels forked from a warm process, so that no submission waits for Python to start.

A fresh kernel spends about a second importing IPython, ipykernel and NumPy (and two more
importing PyTorch for ps3) before the first cell runs. `make grade` instead starts one *zygote*,
shared by its local workers (each Dask worker starts its own): a process that has made those
imports once and then forks a kernel for each notebook. The child is a new process like any
other kernel: its own process group, working directory and environment, started with the same
command-line arguments, and nothing the student's code does in it reaches the zygote or the
next kernel.

nbgrader picks it up through ``TimeLimitedExecute.kernel_manager_class`` (set by
coursekit.grade, not in nbgrader_config.py, so stock ``nbgrader autograde`` is unchanged). A
kernel command the zygote cannot run, or a zygote that died, falls back to an ordinary launch.
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import List

LAUNCHER = ["-m", "ipykernel_launcher"]
# What every kernel imports before the first cell: ipykernel (its debugger too) and what it
# loads while it starts, NumPy, and coursekit.guard with the test helpers it snapshots.
ALWAYS = ["ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.debugger",
          "IPython.core.completerlib", "IPython.core.oinspect", "IPython.extensions.storemagic", "psutil",
          "sqlite3", "tornado.platform.asyncio",
          "numpy", "numpy.random", "numpy.testing", "coursekit.guard", "coursekit.gradcheck",
          "coursekit.reference_checks", "coursekit.solutions", "coursekit.torch_reference"]

# Heavy modules worth importing once in the zygote when a notebook uses them (each is known to
# start no thread on import: a fork keeps only the thread that forks).
HEAVY = {"torch"}

_zygotes = {}  # preloaded modules -> the zygote of this process
LOCK_TIMEOUT = 30  # seconds; a busy zygote for that long is treated as gone


def heavy_imports(notebook):
    """The HEAVY modules that the code cells of ``notebook`` (an nbformat notebook) import."""
    import ast

    found = set()
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


class ForkedKernelManager(AsyncKernelManager):
    """AsyncKernelManager whose kernels are forked from a zygote that preloaded ``preload``."""

    preload = List([], help="Modules the zygote imports besides ipykernel and NumPy.").tag(config=True)

    async def _async_pre_start_kernel(self, **kw):
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = ForkingProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)


class ForkingProvisioner(LocalProvisioner):
    """LocalProvisioner that asks this process's zygote for the kernel process."""

    async def launch_kernel(self, cmd, **kwargs):
        if cmd[0] != sys.executable or cmd[1:3] != LAUNCHER:
            return await super().launch_kernel(cmd, **kwargs)
        warm = zygote(self.parent.preload)
        try:
            pid = warm.fork(cmd[3:], kwargs.get("cwd") or os.getcwd(), kwargs.get("env") or dict(os.environ))
        except (OSError, ValueError):  # the zygote is gone (killed by a submission?): start another next time
            _zygotes.pop(warm.preload, None)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedProcess(pid)
        self.pid = self.pgid = pid  # the kernel leads its own process group
        self.cwd = kwargs.get("cwd")
        return self.connection_info


class ForkedProcess:
    """What LocalProvisioner needs of a subprocess.Popen, for a kernel that is the zygote's child.

    The zygote reaps its children, so a kernel that exited no longer exists.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -signal.SIGKILL  # unknown: only its parent could learn it
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)


class Zygote:
    """A warm process (``python -m coursekit.warm_kernels MODULE...``) that forks kernels on request.

    Processes forked from the one that started it (the workers of `make grade`) share it.
    """

    def __init__(self, preload):
        self.preload = preload
        self.process = subprocess.Popen([sys.executable, "-m", "coursekit.warm_kernels", *preload],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = multiprocessing.Lock()  # one request and its reply at a time
        self.owner = os.getpid()

    def exited(self):
        """Whether the zygote is known to have exited (only the process that started it can tell)."""
        return os.getpid() == self.owner and self.process.poll() is not None

    def fork(self, argv, cwd, env):
        """Start a kernel with ipykernel_launcher's ``argv`` in ``cwd`` with ``env``; returns its pid.

        Raises OSError if the zygote is gone (a process that shares it cannot poll it: it is not its parent).
        """
        if not self.lock.acquire(timeout=LOCK_TIMEOUT):
            raise OSError("the zygote is busy")
        try:
            self.process.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "env": env}) + "\n")
            self.process.stdin.flush()
            reply = self.process.stdout.readline()
        finally:
            self.lock.release()
        if not reply:
            raise OSError("the zygote did not answer")
        return json.loads(reply)["pid"]


def zygote(preload=()):
    """This process's zygote for kernels that import ALWAYS and ``preload``, started if need be.

    Starting it before forking worker processes lets them share it.
    """
    key = tuple(ALWAYS + list(preload))
    if key not in _zygotes or _zygotes[key].exited():
        _zygotes[key] = Zygote(key)
    return _zygotes[key]


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
        pid = os.fork()
        if pid == 0:
            _become_kernel(request, requests, replies)
        replies.write(json.dumps({"pid": pid}) + "\n")
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


def _become_kernel(request, requests, replies):
    """In the forked child: turn into `python -m ipykernel_launcher ARGV` run in ``cwd`` with ``env``."""
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        requests.close()
        replies.close()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # the kernel ends if the zygote does (as a launched kernel ends with the process that started it)
        sys.argv = [LAUNCHER[1], *request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except Exception:  # noqa: BLE001 - say why, where a kernel's errors go, then exit as a kernel would
        import traceback

        traceback.print_exc()
    finally:
        os._exit(0)


if __name__ == "__main__":
    _serve(sys.argv[1:])
