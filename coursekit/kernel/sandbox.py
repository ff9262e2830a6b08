"""Grading kernels in a sandbox: student code cannot reach the course, the grader or other kernels.

Every grading kernel runs
- as a user of its own (a uid no other process has, in no group): its processes count against
  its own process limit, and it owns nothing outside its sandbox;
- in PID, mount, IPC, UTS and network namespaces of its own: it sees no other process and no
  network (it talks to the grader over Unix sockets in its kernel folder);
- on a file system of read-only views (system libraries, the interpreter, the virtual
  environment, the course package) and one writable folder, a size-capped tmpfs that holds a
  copy of the notebook's working folder and is its cwd, HOME and TMPDIR. The course directory,
  the gradebook, other submissions and the grader's files are not there;
- with limits on memory, processes, file size, open files and CPU time;
- until its notebook is done: when the kernel ends, the namespace and every process in it end.

Launched kernels (every grading kernel of stock ``nbgrader autograde`` in this course, through
``TimeLimitedExecute.kernel_manager_class`` in nbgrader_config.py) are started by bubblewrap
(SandboxedKernelManager). ``make grade`` forks its kernels from a warm zygote that itself runs
under bubblewrap (coursekit.kernel.warm_kernels); each fork enters namespaces of its own
(enter_forked_sandbox) before it becomes a kernel, so kernels of one zygote cannot see each other.

Two modes, picked by what the machine offers (sandbox_mode(); the run's output and report say which):
- ``root``: the grader is root, and each kernel runs as a host uid of its own.
- ``rootless``: the grader is an ordinary user (an instructor on a JupyterHub), and each kernel
  runs in a user namespace of its own, as a uid of its own inside it (the instructor's on the
  host). It has every namespace above, the same view and limits and no capability; its process
  limit counts the processes of its own namespace (Linux counts RLIMIT_NPROC per user namespace),
  so one kernel's fork bomb does not reach a neighbour or the instructor. It cannot make user
  namespaces of its own.
Where neither is possible (not root, and no unprivileged user namespaces: many Kubernetes pods),
grading stops before it touches anything, with SandboxUnavailable's one line.
Debian's ``bubblewrap`` package provides ``bwrap`` (``make`` installs it where it runs as root).
"""
import atexit
import functools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from queue import Empty
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Type, default

from coursekit import COURSE_ROOT, IN_THE_KERNEL, SANDBOX_SETUP
from coursekit.kernel.confine import SCRATCH, SCRATCH_BYTES, STAGING, kernel_environment

# Unix socket paths are limited to 107 bytes: kernel folders live in a short directory, in a
# folder of the grader's own (kernels_base()).
KERNELS_BASE = os.environ.get("COURSEKIT_KERNELS_BASE", "/tmp")
# Each kernel gets a random uid from this range (no passwd entry needed): two kernels that
# run at the same time almost never share one, and if they did they still could not see each other.
UIDS = (1_500_000_000, 1_600_000_000)
# A message from the kernel larger than this drops its connection instead of filling the grader's memory.
MAX_MESSAGE_BYTES = 16 * 2 ** 20
# A message to a kernel that stopped reading fails after this long instead of blocking the grader.
SEND_TIMEOUT_MS = 2000
RECONNECT_MS = 5


ROOT, ROOTLESS = "root", "rootless"
# Where to read how to make a machine gradable (the refusal names it).
RUN_A_COURSE = "docs/run-a-course.md"


class SandboxUnavailable(RuntimeError):
    """Grading kernels cannot be sandboxed on this machine; the message is one line with the remedies."""


def bwrap() -> str:
    """The bubblewrap executable, or SandboxUnavailable saying how to get it."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable("grading kernels run in a bubblewrap sandbox, and `bwrap` is not installed: "
                                 f"install Debian's bubblewrap package (make does it when run as root; see {RUN_A_COURSE})")
    return found


@functools.cache
def sandbox_mode() -> str:
    """``ROOT`` or ``ROOTLESS``: how this process's grading kernels are sandboxed (see the module's
    docstring). Raises SandboxUnavailable (one line: what is missing, and the remedies)."""
    executable = bwrap()
    if os.geteuid() == 0:
        return ROOT
    why = user_namespaces_refused(executable)
    if why:
        raise SandboxUnavailable(
            f"cannot sandbox grading kernels: this process is not root and cannot make user namespaces ({why}); "
            "grade as root, or allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
            "on Kubernetes, a grading pod whose security profile allows them), or grade on Dask workers "
            f"that can (make grade DASK=...): see {RUN_A_COURSE}")
    return ROOTLESS


def describe(mode: str) -> str:
    """What ``mode`` means, for a run's output and its report."""
    if mode == ROOT:
        return "root mode (each kernel runs as a host user of its own)"
    return f"rootless mode (each kernel runs in a user namespace of its own, as uid {os.getuid()} on the host)"


def user_namespaces_refused(executable: str | None = None) -> str:
    """Why bubblewrap cannot give an ordinary user a sandbox of nested user namespaces here ("" if it can)."""
    try:
        probe = subprocess.run([executable or bwrap(), "--unshare-user", "--disable-userns", "--ro-bind", "/", "/",
                                "--", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return "" if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["bwrap failed"])[-1]


# What a kernel sees of the course package: the helpers the visible tests use, the judge's agent
# and what the zygote runs. None of it holds a solution, a reference value or a hidden test
# (those stay with the judge: coursekit.judge).
KERNEL_MODULES = tuple(dict.fromkeys(["__init__.py", *(path for name in IN_THE_KERNEL + SANDBOX_SETUP for path in (
    f"{name.split('.')[0]}/__init__.py", f"{name.replace('.', '/')}.py"))]))


def _read_only_view():
    """Host paths a sandbox sees read-only, each at its own path."""
    paths = ["/usr", "/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", sys.base_prefix, sys.prefix]
    paths += [str(COURSE_ROOT / "coursekit" / name) for name in KERNEL_MODULES]
    return [path for path in dict.fromkeys(paths) if os.path.exists(path)]


def parent_directories(argv: list[str], path: str | Path, made: set[str]) -> None:
    """bwrap arguments that create the parents of ``path`` readable by everyone (bwrap's own are not)."""
    for parent in reversed(Path(path).parents):
        if str(parent) != "/" and str(parent) not in made:
            made.add(str(parent))
            argv += ["--perms", "0755", "--dir", str(parent)]


def bwrap_argv(folder: str | Path, *, own_pid_namespace: bool = True, uid: int | None = None) -> list[str]:
    """bwrap's arguments up to the command, for a sandbox whose writable host folder is ``folder``.

    ``own_pid_namespace`` is False for the zygote, whose forks make one each (the grader must see
    their process ids to stop them). ``uid``: the kernel's uid, which it has from the start in
    rootless mode (in root mode it becomes that uid later, in coursekit.kernel.confine).
    """
    rootless = sandbox_mode() == ROOTLESS
    argv = [bwrap(), "--die-with-parent", "--unshare-ipc", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--dev", "/dev"]
    if own_pid_namespace:  # a launched kernel, its namespace's init: bwrap's own process, outside, is out of its reach
        if rootless:  # its own user namespace, and none of its own after it
            argv += ["--unshare-user", "--disable-userns", "--uid", str(uid), "--gid", str(uid)]
        argv += ["--as-pid-1", "--unshare-pid", "--proc", "/proc"]
    elif rootless:  # the zygote: root of a user namespace whose forks each make one of their own (they
        # write their uid maps in this /proc, then mount one of their own over it)
        argv += ["--unshare-user", "--uid", "0", "--gid", "0", "--bind", "/proc", "/proc"]
    else:
        argv += ["--dir", "/proc"]
    for link in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    made: set[str] = set()
    for path in _read_only_view():
        parent_directories(argv, path, made)
        argv += ["--ro-bind", path, path]
    parent_directories(argv, folder, made)
    argv += ["--bind", str(folder), str(folder), "--perms", "0755", "--dir", "/sandbox"]
    if own_pid_namespace:
        argv += ["--size", str(SCRATCH_BYTES), "--perms", "0700", "--tmpfs", SCRATCH]
    else:
        argv += ["--dir", SCRATCH, "--dir", STAGING]
    # the sandbox's own root and the folders made on it are read-only (rootless, they belong to the
    # kernel's uid: writable, and the zygote's shared by its kernels), and so is the zygote's /dev
    argv += ["--remount-ro", "/", "--remount-ro", "/dev", "--cap-drop", "ALL"]
    if rootless and own_pid_namespace:  # its own user already; confine lowers its namespace's quotas, then drops these
        return argv + ["--cap-add", "CAP_SYS_RESOURCE", "--cap-add", "CAP_SETPCAP"]
    # root inside keeps only what it needs to set the sandbox up; the kernel itself keeps nothing
    capabilities = ["CHOWN", "DAC_OVERRIDE", "SETUID", "SETGID"] + ([] if own_pid_namespace else ["SYS_ADMIN"])
    if rootless:  # a fork maps its uid to the zygote's root, which takes SETFCAP (user_namespaces(7))
        capabilities.append("SETFCAP")
    for capability in capabilities:
        argv += ["--cap-add", f"CAP_{capability}"]
    return argv


@functools.cache
def kernels_base() -> str:
    """This grader's folder for its kernels' folders, which no other user may enter (mode 0700).

    A kernel can write its own folder (its sockets are there), and rootless its files are the
    grader's on the host: a program it leaves there with the setuid bit would run as the grader
    for anyone who can reach it. The folder and what is in it go when the process that made it ends.
    """
    base = tempfile.mkdtemp(prefix="ck-", dir=KERNELS_BASE)
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and remove_tree(base))  # type: ignore[func-returns-value]
    return base


def remove_tree(path: str | Path) -> None:
    """Remove ``path`` and everything in it, also folders a kernel made unreadable (mode 0111)."""
    folders = [str(path)]
    while folders:
        folder = folders.pop()
        try:
            os.chmod(folder, 0o700)
            folders += [entry.path for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


class KernelFolder:
    """The host folder of one kernel: its connection file and sockets, and in ``src/`` a copy of
    the files of the notebook's working folder (not the notebooks), which the sandbox copies into
    its scratch folder. Owned by the kernel's uid (rootless: by the grader's, which is the kernel's on the host)."""

    def __init__(self, base=None):
        self.uid = secrets.randbelow(UIDS[1] - UIDS[0]) + UIDS[0]
        self.path = Path(tempfile.mkdtemp(prefix="ck-", dir=base or kernels_base()))
        os.chmod(self.path, 0o755)

    def prepare(self, cwd: str | Path | None) -> None:
        """Copy the working folder ``cwd`` (helper files a notebook imports) and matplotlib's font
        list, and hand the folder to the kernel's uid."""
        source = self.path / "src"
        if source.exists():  # prepared already (a fork that fell back to a launch)
            return
        source.mkdir()
        budget = SCRATCH_BYTES // 2
        for path in sorted(Path(cwd).iterdir()) if cwd and Path(cwd).is_dir() else []:
            if path.is_file() and path.suffix != ".ipynb" and path.stat().st_size <= budget:
                budget -= path.stat().st_size
                shutil.copyfile(path, source / path.name)
        fonts = font_list()
        if fonts is not None:  # else every kernel that plots builds it anew (0.4 s of CPU)
            (source / ".matplotlib").mkdir()
            shutil.copyfile(fonts, source / ".matplotlib" / fonts.name)
        if sandbox_mode() == ROOT:  # (rootless, the kernel's uid is this process's own on the host)
            for path in [self.path, *self.path.rglob("*")]:
                os.chown(path, self.uid, self.uid)

    def remove(self) -> None:
        remove_tree(self.path)


@functools.cache
def font_list() -> Path | None:
    """matplotlib's cached font list (fontlist-*.json) of this process's user (built here once if
    there is none yet), or None."""
    try:
        import matplotlib

        if not list(Path(matplotlib.get_cachedir()).glob("fontlist-*.json")):
            import matplotlib.font_manager  # noqa: F401 - builds and saves the list
        return max(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"), default=None)
    except Exception:  # noqa: BLE001 - no matplotlib, or no cache: kernels build their own
        return None


def course_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a process started in a sandbox: it imports the course's package from the course
    being graded (the files of its view), however the package is installed."""
    return {**env, "PYTHONPATH": str(COURSE_ROOT)}


class SandboxProvisioner(LocalProvisioner):
    """LocalProvisioner that starts the kernel command inside bubblewrap."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        folder = self.parent.folder  # type: ignore[union-attr]  # (its parent is its kernel manager)
        folder.prepare(kwargs.pop("cwd", None))
        # (bwrap's own environment too: nothing of the grader's that the kernel may not have)
        kwargs["env"] = course_environment(kernel_environment(kwargs.get("env") or os.environ))
        inner = [sys.executable, "-m", "coursekit.kernel.confine", str(folder.path), str(folder.uid), "--", *cmd]
        argv = bwrap_argv(folder.path, uid=folder.uid)
        return await super().launch_kernel(argv + ["--", *inner], cwd="/", **kwargs)


def _limited_context(owner):
    """A ZeroMQ context whose sockets drop a message from the kernel larger than MAX_MESSAGE_BYTES
    (and its connection) instead of filling the grader's memory, and give up sending after
    SEND_TIMEOUT_MS (zmq.Again) instead of waiting forever for a connection that is gone."""
    owner._created_context = True  # destroyed with its owner
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    context.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    # a socket that connects before the kernel has bound its end retries soon, not after 0.1 s
    # (and less and less often, up to jupyter_client's 0.1 s, if the kernel never binds it)
    context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    context.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
    return context


class SandboxedKernelClient(AsyncKernelClient):
    @default("context")
    def _context_default(self):
        return _limited_context(self)

    async def _async_wait_for_ready(self, timeout=None):
        """jupyter_client's wait: kernel_info until its reply comes and IOPub is connected.

        jupyter_client waits 0.2 s for IOPub before it asks again, then for 0.2 s of silence on
        it: up to two fifths of a second of every notebook's grading. This asks again after
        0.05 s and then waits only for the idle status of its own request (what follows belongs
        to no cell, and nbclient ignores it).
        """
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            # (any kernel_info reply: one to an earlier request, whose answer came late, will do)
            if reply and reply["msg_type"] == "kernel_info_reply":
                # its busy status went out before the reply: a short wait tells whether IOPub is connected
                if await self._iopub_answered(_parent(reply), time.monotonic() + 0.05):
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    async def _iopub_answered(self, request, deadline):
        """Whether IOPub brings a message about ``request`` before ``deadline``; reads up to its idle status."""
        heard = False
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await self.iopub_channel.get_msg(timeout=left)
            except Empty:
                break
            if _parent(message) == request:
                heard = True
                if message["msg_type"] == "status" and message["content"].get("execution_state") == "idle":
                    break
        return heard

    wait_for_ready = _async_wait_for_ready


def _parent(message):
    return message.get("parent_header", {}).get("msg_id")


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the sandbox (see the module's docstring).

    The kernel talks over Unix sockets in its folder (``transport = "ipc"``), and interrupts
    go over its control channel: the grader cannot signal into the sandbox's PID namespace.
    """

    folder = None
    provisioner_class = SandboxProvisioner

    client_factory = Type(klass="jupyter_client.asynchronous.AsyncKernelClient",
                          default_value=SandboxedKernelClient, config=True)

    @default("context")
    def _context_default(self):
        return _limited_context(self)

    def kernel_folder(self) -> KernelFolder:
        """A new folder for the next kernel (the zygote's kernels need theirs where it sees them)."""
        return KernelFolder()

    async def _async_pre_start_kernel(self, **kw):
        self.transport = "ipc"
        if self.folder is not None:
            self.folder.remove()
        self.folder = self.kernel_folder()
        self.connection_file = str(self.folder.path / "kernel.json")
        self.ip = str(self.folder.path / "k")
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or os.urandom(8).hex()
            self.provisioner = self.provisioner_class(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_interrupt_kernel(self):
        if not self.has_kernel:
            raise RuntimeError("Cannot interrupt kernel. No kernel is running!")
        self._connect_control_socket()
        self.session.send(self._control_socket, self.session.msg("interrupt_request", content={}))

    async def _async_wait(self, pollinterval=0.1):
        # a killed sandbox ends within milliseconds: poll often instead of sleeping 0.1 s first
        await super()._async_wait(pollinterval=min(pollinterval, 0.005))

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart)
        if self.folder is not None:
            self.folder.remove()
            self.folder = None

    # AsyncKernelManager binds its public names to KernelManager's functions, not to overrides
    interrupt_kernel = _async_interrupt_kernel
    cleanup_resources = _async_cleanup_resources
