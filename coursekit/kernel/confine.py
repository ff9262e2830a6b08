"""Inside the sandbox, before any student code runs (see coursekit.kernel.sandbox): as root with a
few capabilities (root mode, and the rootless zygote inside its user namespace), or already as the
kernel's user (a rootless launched kernel).

This module runs in the sandbox, so it imports nothing of the grader: bubblewrap starts
``python -m coursekit.kernel.confine FOLDER UID -- KERNEL COMMAND`` for a launched kernel, and the
zygote's forks call ``enter_forked_sandbox``.
"""
import ctypes
import os
import resource
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from coursekit import COURSE_ROOT

SCRATCH = "/sandbox/work"  # the kernel's one writable folder (its cwd, HOME and TMPDIR)
STAGING = "/sandbox/kernel"  # where a forked kernel's folder is held while the others are hidden
SCRATCH_BYTES = 256 * 2 ** 20
LIMITS = {
    resource.RLIMIT_AS: 4 * 2 ** 30,  # a 50 GB allocation fails with MemoryError
    resource.RLIMIT_NPROC: 256,  # threads and processes of this kernel's uid: no fork bomb
    resource.RLIMIT_FSIZE: 64 * 2 ** 20,
    resource.RLIMIT_NOFILE: 1024,
    resource.RLIMIT_CORE: 0,
    resource.RLIMIT_CPU: 600,  # seconds; the notebook's own time limit is far shorter
}
# What a kernel may inherit of the grader's environment.
KEPT_VARIABLES = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "JPY_SESSION_NAME", "MPLBACKEND", "PYDEVD_DISABLE_FILE_VALIDATION")
# (none of the grader's own COURSEKIT_ variables: one names the socket of its PyTorch process)
KEPT_PREFIXES = ("OMP_", "OPENBLAS_", "MKL_", "NBGRADER_")  # NBGRADER_EXECUTION: autograding skips the plots

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
KEYCTL_JOIN_SESSION_KEYRING = 1
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
# What a kernel's user namespace may hold (/proc/sys/user/, per namespace): rootless, what it uses
# counts against the grader's own quotas too, so one kernel must not take them all.
NAMESPACE_QUOTAS = {"max_user_namespaces": 0, "max_mnt_namespaces": 0, "max_pid_namespaces": 0, "max_net_namespaces": 0,
                    "max_ipc_namespaces": 0, "max_uts_namespaces": 0, "max_cgroup_namespaces": 0,
                    "max_inotify_instances": 16, "max_inotify_watches": 4096, "max_fanotify_groups": 0}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _call(function, *args):
    if function(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{function.__name__}: {os.strerror(error)}")


def _mount(source, target, fstype=None, flags=0, options=None):
    encode = lambda value: None if value is None else str(value).encode()  # noqa: E731
    _call(_libc.mount, encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(options))


def die_with_parent() -> None:
    _call(_libc.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _populate_scratch(folder, uid):
    shutil.copytree(Path(folder) / "src", SCRATCH, dirs_exist_ok=True)
    for path in [Path(SCRATCH), *Path(SCRATCH).rglob("*")]:
        os.chown(path, uid, uid)


def kernel_environment(inherited: Mapping[str, str]) -> dict[str, str]:
    """The kernel's environment: a few of the grader's variables, and paths inside the sandbox."""
    env = {name: value for name, value in inherited.items()
           if name in KEPT_VARIABLES or name.startswith(KEPT_PREFIXES)}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", HOME=SCRATCH, TMPDIR=SCRATCH, USER="student",
               MPLCONFIGDIR=f"{SCRATCH}/.matplotlib", PYTHONNOUSERSITE="1")
    return env


def confine(folder: str | Path, uid: int) -> None:
    """Become the kernel's user in the scratch folder, with the limits and no capability: the last
    step before the kernel."""
    _populate_scratch(folder, uid)
    # (in a user namespace the process limit counts that namespace's processes: see sandbox's docstring)
    for limit, value in LIMITS.items():
        resource.setrlimit(limit, (value, value))
    devnull = os.open(os.devnull, os.O_RDWR)
    if not os.environ.get("COURSEKIT_SANDBOX_DEBUG"):  # its output goes to the grader over its sockets
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    os.dup2(devnull, 0)
    os.close(devnull)
    if SYS_KEYCTL is not None:  # a session keyring of its own: not the grader's, whose keys it would possess
        _libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None)
    if os.getuid() == uid:  # rootless: a user namespace of its own, whose quotas it may still lower
        limit_user_namespace()
    for capability in range(64):  # none can come back, whatever runs later (fails harmlessly without CAP_SETPCAP)
        _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    if os.getuid() != uid:  # root mode: the kernel's own host uid
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    # a fork that made its user namespace is its user already and still holds every capability in it
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _call(_libc.capset, ctypes.byref(_CapHeader(LINUX_CAPABILITY_VERSION_3, 0)), (_CapData * 2)())
    _call(_libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.chdir(SCRATCH)


def _own_user_namespace(uid):
    """Rootless: enter a new user namespace as ``uid``, mapped to the zygote's root (the grader's
    uid on the host), in which the kernel can make no user namespace of its own."""
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    _call(_libc.unshare, CLONE_NEWUSER)
    for name, text in [("uid_map", f"{uid} {outer_uid} 1"), ("setgroups", "deny"), ("gid_map", f"{uid} {outer_gid} 1")]:
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)
    with open("/proc/sys/user/max_user_namespaces", "w") as file:  # (bubblewrap's --disable-userns, for forks)
        file.write("0")
    # (its other quotas are lowered in confine(), once the fork has made the namespaces it needs)


def limit_user_namespace() -> None:
    """Lower this user namespace's quotas (NAMESPACE_QUOTAS), those it has the right to lower."""
    for name, value in NAMESPACE_QUOTAS.items():
        try:
            with open(f"/proc/sys/user/{name}", "w") as file:
                file.write(str(value))
        except OSError:  # (a kernel without that quota)
            pass


def enter_forked_sandbox(folder: str | Path, uid: int, report_fd: int, rootless: bool = False) -> None:
    """In a child of the zygote (coursekit.kernel.warm_kernels): give this kernel namespaces of its
    own (``rootless``: a user namespace too, which owns the others).

    Returns in the kernel process only, confined. The processes in between wait for the kernel
    and end with it. The zygote's child writes to ``report_fd`` the process id that the grader
    uses to stop the kernel: the init process of the kernel's PID namespace, whose end kills
    every process in it.
    """
    folder = str(folder)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote lets the system reap; these wait
    die_with_parent()
    if rootless:
        _own_user_namespace(uid)
    _call(_libc.unshare, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, f"size={SCRATCH_BYTES},mode=0700")
    # other kernels' folders disappear under an empty tmpfs; this kernel's comes back at its own path
    _mount(folder, STAGING, None, MS_BIND)
    _mount("tmpfs", os.path.dirname(folder), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    os.mkdir(folder)
    _mount(STAGING, folder, None, MS_BIND)
    _call(_libc.umount2, STAGING.encode(), MNT_DETACH)
    _mount(None, os.path.dirname(folder), None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    init = os.fork()
    if init:
        os.write(report_fd, f"{init}\n".encode())
        os.close(report_fd)
        _wait_for(init)
    os.close(report_fd)
    die_with_parent()
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    kernel = os.fork()
    if kernel:
        _wait_for(kernel)
    die_with_parent()
    confine(folder, uid)


def _wait_for(pid):
    """Reap children until ``pid`` ends, then end with its status (never returns)."""
    status = 1
    while True:
        try:
            child, code = os.wait()
        except ChildProcessError:
            break
        if child == pid:
            status = os.waitstatus_to_exitcode(code)
            break
    os._exit(status if status >= 0 else 128 - status)


def main(argv: list[str]) -> None:
    """``python -m coursekit.kernel.confine FOLDER UID -- KERNEL COMMAND``, run by bubblewrap.

    A kernel command of this interpreter (``python -m ipykernel_launcher ...``) runs in this
    process once it is confined, as the zygote's forks do: one Python start-up per kernel, not two.
    """
    folder, uid, separator, *command = argv
    assert separator == "--", argv
    env = kernel_environment(os.environ)
    grader_paths = set(filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    confine(folder, int(uid))
    if command[:3] != [sys.executable, "-m", "ipykernel_launcher"]:
        os.execve(command[0], command, env)
    os.environ.clear()
    os.environ.update(env)
    # as ipykernel_launcher would find modules: not from `python -m`'s directory nor the grader's
    # PYTHONPATH, but the course's package from the course's own folder (sandbox.course_environment)
    sys.path[:] = [str(COURSE_ROOT), *(path for path in sys.path[1:] if path not in grader_paths)]
    sys.argv = ["ipykernel_launcher", *command[3:]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
