"""Limits that the machine's load cannot move, and a judge that no submission can stall or swell.

Time is counted as CPU time: a cell's and a notebook's as the CPU time of the kernel's process
tree (its threads, and its children, living or ended), a check's as the CPU time of the process
that runs it. A busy machine makes grading slower, never different. Each limit has a backstop,
``BACKSTOP`` times as long, for code that waits instead of computing (``time.sleep``, a stopped
process): wall-clock time less what the kernel spent waiting for a CPU that others had, so that
load alone never reaches it either.

Every check runs in a process of its own, forked from the grader (``bounded_verdict``), with its
own CPU-time and memory limits: what a submission hands the judge can cost that check its cell,
never the grader its memory or the class its time.
"""
import os
import pickle
import resource
import select
import signal
import time
from collections import defaultdict

from coursekit import judge
from coursekit.judge import torch_reference
from coursekit.judge.torch_reference import MissingValue

TICKS = os.sysconf("SC_CLK_TCK")
BACKSTOP = 3  # a limit's backstop, in multiples of its CPU time, counted in seconds the load did not take
CHECK_CPU_SECONDS = 20  # a check's own computing, beside its kernel's
CHECK_MEMORY_BYTES = 2 ** 30  # what a check may allocate beyond the grader's own
POLL_SECONDS = 0.1  # how often a kernel's clock is read (a read scans /proc)


def tree_usage(root):
    """(CPU seconds, delay seconds) of process ``root`` and its descendants. CPU: their threads'
    and their reaped children's (children reaped without a wait, by SIGCHLD ignored, are not
    counted: the backstop bounds them). Delay: the longest that any of them (its main thread)
    has waited, runnable, for a CPU the machine gave others: the load's share of its time."""
    processes, children = {}, defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:  # it ended meanwhile
            continue
        fields = data[data.rindex(b")") + 2:].split()  # (the name in parentheses may hold spaces)
        pid = int(name)
        processes[pid] = sum(int(ticks) for ticks in fields[11:15])  # utime stime cutime cstime
        children[int(fields[1])].append(pid)
    cpu, delay, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        if pid not in processes:
            continue
        cpu += processes[pid]
        delay = max(delay, _run_delay(pid))
        stack.extend(children.get(pid, ()))
    return cpu / TICKS, delay / 1e9


def _run_delay(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[1])  # nanoseconds on a run queue
    except (OSError, IndexError, ValueError):
        return 0


class KernelClock:
    """A kernel's clocks: ``cpu()``, the CPU seconds it has used, and ``delay()``, the seconds
    the machine's load has held it back (tree_usage; never decreasing). ``pid()`` names its
    tree's root (None: no kernel, and the clocks stand still). Read at most every POLL_SECONDS."""

    def __init__(self, pid):
        self._pid, self._read_at, self._cpu, self._delay = pid, -1.0, 0.0, 0.0

    def _read(self):
        if time.monotonic() - self._read_at >= POLL_SECONDS:
            pid = self._pid()
            cpu, delay = tree_usage(pid) if pid else (0.0, 0.0)
            self._cpu, self._delay = max(self._cpu, cpu), max(self._delay, delay)
            self._read_at = time.monotonic()

    def cpu(self):
        self._read()
        return self._cpu

    def delay(self):
        self._read()
        return self._delay


class Limit:
    """``cpu`` seconds of a KernelClock's CPU time, backstopped by ``BACKSTOP`` times as many
    seconds on the wall clock less the clock's delay (a kernel that waits or is stopped, not
    one the machine keeps waiting), both counted from when the limit is made. The backstop
    stands still between ``pause()`` and ``resume()`` (the judge computes, the kernel waits for it)."""

    def __init__(self, clock, cpu, what="the cell"):
        self.clock, self.cpu, self.what = clock, cpu, what
        self._cpu, self._delay, self._wall, self._paused = clock.cpu(), clock.delay(), time.monotonic(), None

    def used(self):
        """(CPU seconds, backstop seconds) since the start."""
        now = self._paused or time.monotonic()
        return self.clock.cpu() - self._cpu, now - self._wall - (self.clock.delay() - self._delay)

    def pause(self):
        self._paused = self._paused or time.monotonic()

    def resume(self):
        if self._paused:
            self._wall += time.monotonic() - self._paused
            self._paused = None

    def exceeded(self):
        """None while within the limit; past it, why, in a sentence for the student."""
        cpu, waited = self.used()
        if cpu > self.cpu:
            return f"{self.what} used more than its {self.cpu:g} s of CPU time ({cpu:.2f} s)"
        if waited > BACKSTOP * self.cpu:
            return (f"{self.what} ran for more than {BACKSTOP * self.cpu:g} s without finishing (while it "
                    f"used {cpu:.1f} s of its {self.cpu:g} s of CPU time: waiting for something?)")
        return None


# --- checks in a process of their own --------------------------------------------------------------

def bounded_verdict(check, sources, key, ask, cpu_seconds=CHECK_CPU_SECONDS, memory_bytes=CHECK_MEMORY_BYTES):
    """``judge.verdict(check, kernel)`` run in a forked process whose kernel handle sends its
    requests through ``ask`` (which raises judge.KernelSilent when the kernel cannot answer): None
    or (error name, message), as verdict returns. The process may compute for ``cpu_seconds`` of
    CPU time and allocate ``memory_bytes`` beyond what the grader has mapped; past either, the
    cell fails with a message that says so. judge.MissingValue is raised here, as verdict would."""
    torch_reference.share_server()  # one PyTorch process for every check's process, started once
    check_reads, grader_writes = os.pipe()
    grader_reads, check_writes = os.pipe()
    pid = os.fork()
    if pid == 0:  # the check's process: it never returns
        os.close(grader_reads), os.close(grader_writes)
        _run_check(check, sources, key, check_reads, check_writes, cpu_seconds, memory_bytes)
    os.close(check_reads), os.close(check_writes)
    try:
        return _serve_check(pid, grader_reads, grader_writes, ask, cpu_seconds)
    finally:
        os.close(grader_reads), os.close(grader_writes)
        _end(pid)


def _run_check(check, sources, key, reader, writer, cpu_seconds, memory_bytes):
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds) + 1, int(cpu_seconds) + 2))
        mapped = _mapped_bytes()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_bytes, mapped + memory_bytes))

        def send(request):
            _write(writer, ("ask", request))
            kind, value = _read(reader)
            if kind == "silent":
                raise judge.KernelSilent(value)
            return value

        try:
            outcome = ("verdict", judge.verdict(check, judge.Kernel(send, sources, key)))
        except MissingValue as missing:
            outcome = ("missing", str(missing))
        except MemoryError:
            outcome = ("verdict", _too_big(memory_bytes))
        _write(writer, outcome)
    except BaseException:  # noqa: BLE001 - a broken pipe: the grader stopped waiting
        code = 1
    finally:
        os._exit(code)


def _too_big(memory_bytes):
    return ("TestFailure", f"checking what your code returned needed more than {memory_bytes / 2 ** 30:g} GB of "
            "memory (arrays of a shape the task does not ask for?)")


def _serve_check(pid, reader, writer, ask, cpu_seconds):
    """Answer the check's requests until it sends its outcome, or ends, or runs past its backstop."""
    deadline = time.monotonic() + BACKSTOP * cpu_seconds  # (only the check's own turns count)
    while True:
        ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return "TestFailure", (f"checking what your code returned took more than {BACKSTOP * cpu_seconds:g} s "
                                   "and was stopped")
        message = _read(reader)
        if message is None:
            return _ended(pid, cpu_seconds)
        kind, value = message
        if kind == "verdict":
            return value
        if kind == "missing":
            raise MissingValue(value)
        started = time.monotonic()
        try:
            reply = ("reply", ask(value))
        except judge.KernelSilent as silent:
            reply = ("silent", str(silent))
        deadline += time.monotonic() - started
        _write(writer, reply)


def _ended(pid, cpu_seconds):
    """The outcome of a check's process that ended without sending one."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return "TestFailure", (f"checking what your code returned took more than {cpu_seconds:g} s of CPU time "
                               "and was stopped (arrays of a shape the task does not ask for?)")
    return "TestFailure", f"the check stopped without a verdict (exit status {status}): tell your instructor"


def _end(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # already reaped by _ended
        pass


def _mapped_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _write(fd, message):
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = len(data).to_bytes(8, "little") + data
    while data:
        data = data[os.write(fd, data):]


def _read(fd):
    """A message, or None once the other end has closed."""
    header = _read_exactly(fd, 8)
    if header is None:
        return None
    body = _read_exactly(fd, int.from_bytes(header, "little"))
    return None if body is None else pickle.loads(body)


def _read_exactly(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 2 ** 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
