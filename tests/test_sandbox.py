"""Grading kernels run in a sandbox (coursekit.kernel.sandbox): launched by bubblewrap, or forked from the zygote."""
import asyncio
import json
import os
import secrets
import socket
import subprocess
import time

import psutil
import pytest

from coursekit import COURSE_ROOT
from coursekit.kernel import warm_kernels
from coursekit.kernel.sandbox import SandboxedKernelManager
from test_warm_kernels import Recorded, STARTED, run, text

MANAGERS = {"launched": SandboxedKernelManager, "forked": Recorded}

PROBE = '''
import json, os, resource, socket, sys

def writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False

def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
    "files": sorted(os.listdir(".")), "capabilities": int(status["CapEff"].strip(), 16),
    "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "seen": {path: os.path.exists(path) for path in SEEN},
    "writable": {path: writable(path) for path in WRITES},
    "network": connects(PORT),
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[1], "memory": resource.getrlimit(resource.RLIMIT_AS)[1],
}))
'''


@pytest.fixture(params=sorted(MANAGERS))
def manager(request):
    return MANAGERS[request.param]


def test_a_kernel_sees_only_its_own_files_processes_and_no_network(tmp_path, manager):
    folder = tmp_path / "autograded" / "student" / "ps1"  # as nbgrader lays out a course
    folder.mkdir(parents=True)
    (folder / "helper.py").write_text("VALUE = 42\n")
    (folder / "ps1.ipynb").write_text("{}")
    secret = tmp_path / "gradebook.db"
    secret.write_text("grades")
    seen = [str(folder), str(secret), str(COURSE_ROOT / "tests"), str(COURSE_ROOT / "nbgrader_config.py"),
            "/root/.bashrc", "/work/main/.git", str(COURSE_ROOT / "coursekit" / "shipped" / "gradcheck.py"),
            str(COURSE_ROOT / "coursekit" / "judge" / "__init__.py"), str(COURSE_ROOT / "coursekit" / "pipeline" / "grade_class.py")]
    writes = ["scratch.txt", str(COURSE_ROOT / "coursekit" / "shipped" / "gradcheck.py"), str(COURSE_ROOT / "coursekit" / "new.py"),
              str(COURSE_ROOT / "coursekit" / "judge" / "torch_cache" / "new.npz"), "/usr/lib/new", "/tmp/new", "/new",
              "/dev/shm/new", "/dev/new"]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        code = f"SEEN, WRITES, PORT = {seen!r}, {writes!r}, {server.getsockname()[1]}\n" + PROBE
        (outputs,) = run(folder, code, kernel_manager_class=manager)
    facts = json.loads(text(outputs))
    assert facts["uid"] > 1_000_000 and facts["gid"] == facts["uid"] and facts["groups"] == []
    assert facts["capabilities"] == 0
    assert [name for name in facts["files"] if not name.startswith(".")] == ["helper.py"], \
        "a copy of the working folder's files, without the notebook"
    assert len(facts["processes"]) <= 2, f"the kernel sees other processes: {facts['processes']}"
    assert facts["seen"] == {path: path.endswith("gradcheck.py") for path in seen}
    assert facts["writable"] == {path: path == "scratch.txt" for path in writes}
    assert not facts["network"], "the kernel reached a server of the grader's"
    assert facts["nproc"] <= 256 and facts["memory"] <= 4 * 2 ** 30
    assert not (folder / "scratch.txt").exists(), "the scratch folder is the kernel's own"


def test_two_kernels_get_different_users(tmp_path, manager):
    uids = [json.loads(text(run(tmp_path, "import json, os\nprint(json.dumps(os.getuid()))",
                                kernel_manager_class=manager)[0])) for _ in range(2)]
    assert uids[0] != uids[1]


def test_no_process_of_a_kernel_outlives_its_notebook(tmp_path, manager):
    marker = f"{300 + secrets.randbelow(10 ** 6) / 10 ** 6:.6f}"  # (rootless, the kernel's host uid is the grader's)
    code = ("import os, subprocess\n"
            f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            f"    os.execvp('sleep', ['sleep', '{marker}'])\n"
            "print('started')")
    (outputs,) = run(tmp_path, code, kernel_manager_class=manager)
    assert text(outputs) == "started\n"
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
    assert not left, f"processes of the kernel outlived its notebook: {left}"


def fork_bomb(children_live, then_wait=0):
    """A cell that forks until the process limit stops it (children sleeping ``children_live``
    seconds), waits ``then_wait`` seconds and prints how many it forked."""
    return ("import os, time\n"
            "count = 0\n"
            "try:\n"
            "    while count < 5000:\n"
            "        if os.fork() == 0:\n"
            f"            time.sleep({children_live})\n"
            "            os._exit(0)\n"
            "        count += 1\n"
            "except OSError:\n"
            "    pass\n"
            f"time.sleep({then_wait})\n"
            "print(count)")


def test_a_fork_bomb_is_bounded(tmp_path, manager):
    (outputs,) = run(tmp_path, fork_bomb(60), kernel_manager_class=manager, timeout=20)
    assert int(text(outputs)) < 256
    (outputs,) = run(tmp_path, "print('next kernel')", kernel_manager_class=manager)
    assert text(outputs) == "next kernel\n"


def _fork_to_the_cap_and_hold(folder, seconds):
    return text(run(folder, fork_bomb(seconds, then_wait=seconds), timeout=40)[0])


def _start_processes_after(folder, delay):
    code = ("import subprocess, time\n"
            f"time.sleep({delay})\n"
            "print(sum(subprocess.run(['true']).returncode == 0 for _ in range(20)))")
    return text(run(folder, code, timeout=40)[0])


def test_a_fork_bomb_does_not_stop_a_neighbour_or_the_grader(tmp_path):
    """Rootless, every kernel has the grader's host uid: its process limit must count its own
    processes only (its user namespace's), not the grader's or its neighbours'."""
    import concurrent.futures
    import multiprocessing

    warm_kernels.zygote()  # one zygote for both, as make grade's workers share it
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        bomb = pool.submit(_fork_to_the_cap_and_hold, tmp_path, 8)
        neighbour = pool.submit(_start_processes_after, tmp_path, 4)
        assert neighbour.result(timeout=90) == "20\n", "the neighbour could not start its processes"
        assert [subprocess.run(["true"]).returncode for _ in range(20)] == [0] * 20, "the grader could not"
        assert 200 < int(bomb.result(timeout=90)) < 256


def test_the_sandbox_mode_is_the_one_this_user_gets():
    """Root grades in root mode, anyone else rootless (test_rootless.py runs this file as an instructor)."""
    from coursekit.kernel.sandbox import sandbox_mode

    assert sandbox_mode() == os.environ.get("COURSEKIT_EXPECT_SANDBOX", "root" if os.geteuid() == 0 else "rootless")


LEAVES_A_SETUID_PROGRAM = """
import glob, os, shutil
mine = [path for path in glob.glob("/tmp/**/ck-*", recursive=True) if os.access(path, os.W_OK)]
for folder in mine:
    os.mkdir(folder + "/keep")
    shutil.copy("/usr/bin/true", folder + "/keep/program")
    os.chmod(folder + "/keep/program", 0o4755)
    os.chmod(folder + "/keep", 0o111)
print(mine)
"""


def test_what_a_kernel_leaves_in_its_folder_no_one_else_can_reach_and_it_goes_with_the_kernel(tmp_path, manager):
    """Rootless, a kernel's files are the grader's on the host: a setuid program left in its
    folder would run as the grader for whoever reaches it."""
    import ast

    from coursekit.kernel.sandbox import kernels_base

    (outputs,) = run(tmp_path, LEAVES_A_SETUID_PROGRAM, kernel_manager_class=manager)
    folders = ast.literal_eval(text(outputs))
    assert folders and all(folder.startswith(kernels_base() + "/") for folder in folders), folders
    info = os.stat(kernels_base())
    assert info.st_uid == os.getuid() and info.st_mode & 0o777 == 0o700
    assert not any(os.path.exists(folder + "/keep") for folder in folders if os.path.exists(folder)), "it outlived the kernel"


def test_a_kernel_reads_none_of_the_graders_environment_or_keys(tmp_path, manager, monkeypatch):
    import ctypes

    from coursekit.kernel.confine import SYS_KEYCTL

    monkeypatch.setenv("HUB_API_TOKEN_PROBE", "grader-secret-6b1f")
    if SYS_KEYCTL is not None:  # a session keyring of this process's, with a key in it
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(SYS_KEYCTL, 1, b"coursekit-test")
        add_key = {250: 248, 219: 217}[SYS_KEYCTL]
        assert libc.syscall(add_key, b"user", b"coursekit-probe", b"key-secret-6b1f", 15, -3) > 0
    # (rootless, a key of the grader's uid may still be listed in /proc/keys, as its owner's: its
    # payload is what a kernel must not read, through a keyring it would possess)
    code = ("import ctypes, glob, os\n"
            "seen = []\n"
            "for path in glob.glob('/proc/*/environ'):\n"
            "    try:\n"
            "        seen.append(open(path, 'rb').read().decode('latin-1'))\n"
            "    except OSError:\n"
            "        pass\n"
            "libc, keys = ctypes.CDLL(None), []\n"
            "for line in open('/proc/keys'):\n"
            "    buffer = ctypes.create_string_buffer(256)\n"
            f"    if libc.syscall({SYS_KEYCTL or 0}, 11, int(line.split()[0], 16), buffer, 256) > 0:\n"
            "        keys.append(buffer.value.decode('latin-1'))\n"
            "print(repr(dict(os.environ)), seen, keys)")
    (outputs,) = run(tmp_path, code, kernel_manager_class=manager)
    printed = text(outputs)
    assert printed and "grader-secret-6b1f" not in printed and "key-secret-6b1f" not in printed, printed[:3000]


def _hold_inotify_instances(folder, seconds):
    code = ("import ctypes, time\n"
            "libc = ctypes.CDLL(None)\n"
            "held = [fd for fd in (libc.inotify_init1(0) for _ in range(500)) if fd >= 0]\n"
            f"time.sleep({seconds})\n"
            "print(len(held))")
    return text(run(folder, code, timeout=40)[0])


def test_a_kernel_cannot_take_every_inotify_instance_of_the_grader(tmp_path):
    import concurrent.futures
    import ctypes
    import multiprocessing

    warm_kernels.zygote()
    libc = ctypes.CDLL(None, use_errno=True)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        held = pool.submit(_hold_inotify_instances, tmp_path, 6)
        time.sleep(4)
        mine = [libc.inotify_init1(0) for _ in range(8)]
        assert all(fd >= 0 for fd in mine), "the grader could not watch files while a kernel held its instances"
        for fd in mine:
            os.close(fd)
        assert int(held.result(timeout=60)) > 0


def _signal_everything_then_sleep(folder, delay):
    code = ("import os, signal, time\n"
            f"time.sleep({delay})\n"
            "for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
            "    for pid in [-1] + list(range(1, 5000)):\n"
            "        try:\n"
            "            os.kill(pid, sig)\n"
            "        except OSError:\n"
            "            pass\n"
            "print('done')")
    return text(run(folder, code, timeout=5)[0])


def _sleep_then_answer(folder, delay):
    return text(run(folder, f"import time\ntime.sleep({delay})\nprint('alive')", timeout=20)[0])


def test_a_kernel_cannot_signal_another_kernel_or_the_zygote(tmp_path):
    import concurrent.futures
    import multiprocessing

    zygote = warm_kernels.zygote()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        honest = pool.submit(_sleep_then_answer, tmp_path, 4)
        attacker = pool.submit(_signal_everything_then_sleep, tmp_path, 1)
        assert honest.result(timeout=60) == "alive\n"
        attacker.result(timeout=60)
    assert zygote.process.poll() is None and psutil.Process(zygote.process.pid).status() != psutil.STATUS_STOPPED
    assert text(run(tmp_path, "print('next')")[0]) == "next\n"
    assert STARTED


class _SlowKernel:
    """A kernel client's channels, for a kernel that answers nothing for ``start`` seconds and
    then answers every kernel_info request it got, in order (a cold start on a busy machine)."""

    def __init__(self, start):
        import itertools

        self.begun, self.start, self.ids, self.pending, self.sent = time.monotonic(), start, itertools.count(), [], 0
        self.queues = {"shell": [], "iopub": []}
        self.shell_channel, self.iopub_channel = self._channel("shell"), self._channel("iopub")

    def _channel(self, name):
        from queue import Empty

        kernel = self

        class Channel:
            async def get_msg(self, timeout=None):
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    kernel._answer()
                    if kernel.queues[name]:
                        return kernel.queues[name].pop(0)
                    await asyncio.sleep(0.005)
                raise Empty

        return Channel()

    def kernel_info(self):
        self.sent += 1
        self.pending.append(f"request-{next(self.ids)}")
        return self.pending[-1]

    def _answer(self):
        while time.monotonic() - self.begun >= self.start and self.pending:
            parent = {"msg_id": self.pending.pop(0)}
            self.queues["iopub"].append({"msg_type": "status", "parent_header": parent, "content": {"execution_state": "busy"}})
            self.queues["shell"].append({"msg_type": "kernel_info_reply", "parent_header": parent, "content": {}})
            self.queues["iopub"].append({"msg_type": "status", "parent_header": parent, "content": {"execution_state": "idle"}})

    def _handle_kernel_info_reply(self, reply):
        self.ready = True

    async def _async_is_alive(self):
        return True


def test_the_wait_for_a_new_kernel_ends_when_it_answers_however_late():
    """A kernel slower than the 1 s a request waits answers an earlier request first: that reply counts."""
    from coursekit.kernel.sandbox import SandboxedKernelClient

    for start in (0.2, 1.6):
        kernel = _SlowKernel(start)
        kernel._iopub_answered = lambda request, deadline: SandboxedKernelClient._iopub_answered(kernel, request, deadline)
        began = time.monotonic()
        asyncio.run(SandboxedKernelClient._async_wait_for_ready(kernel, timeout=8))
        assert kernel.ready and time.monotonic() - began < start + 0.5 and kernel.sent <= 3, (start, kernel.sent)


def test_a_kernel_inherits_none_of_the_graders_own_variables():
    from coursekit.kernel.confine import kernel_environment

    env = kernel_environment({"COURSEKIT_TORCH_SERVER": "/tmp/coursekit-torch-x/socket", "PYTHONPATH": "/work/main",
                              "HOME": "/root", "OMP_NUM_THREADS": "1", "NBGRADER_EXECUTION": "autograde", "LANG": "C.UTF-8"})
    assert not any(name.startswith("COURSEKIT_") for name in env) and "PYTHONPATH" not in env
    assert env["OMP_NUM_THREADS"] == "1" and env["NBGRADER_EXECUTION"] == "autograde" and env["HOME"] != "/root"
