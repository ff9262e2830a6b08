"""Limits that the machine's load cannot move, and a judge that no submission can stall or swell.

Time is counted as CPU time: a cell's and a notebook's as the CPU time of the kernel's process
tree (its threads, and its children, living or ended), a check's as the CPU time of the grader's
thread that runs it. A busy machine makes grading slower, never different. Each limit has a backstop,
``BACKSTOP`` times as long, for code that waits instead of computing (``time.sleep``, a stopped
process): wall-clock time less what the kernel spent waiting for a CPU that others had, so that
load alone never reaches it either.

Every check runs under a budget of its own (``bounded_verdict``): CPU time of its thread, a
backstop on the wall clock, and at most CHECK_MEMORY_BYTES more of the grader's memory. What a
submission hands the judge can cost that check its cell, never the grader its memory or the
class its time.
"""
import ctypes
import os
import resource
import threading
import time
from collections import defaultdict

from coursekit import judge
from coursekit.judge import torch_reference

TICKS = os.sysconf("SC_CLK_TCK")
BACKSTOP = 3  # a limit's backstop, in multiples of its CPU time, counted in seconds the load did not take
CHECK_CPU_SECONDS = 20  # a check's own computing, beside its kernel's
CHECK_MEMORY_BYTES = 2 ** 30  # what a check may allocate beyond the grader's own
POLL_SECONDS = 0.1  # how often a kernel's clock is read (its known processes' /proc files)
SCAN_SECONDS = 1.0  # how often a kernel's clock looks for new processes in its tree (a look reads all of /proc)


def tree_usage(root):
    """(CPU seconds, delay seconds) of process ``root`` and its descendants (see usage)."""
    return usage(tree(root))


def tree(root):
    """Process ``root`` and its descendants, by pid (none if it has ended)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(name)
            if stat is not None:
                parents[int(name)] = int(stat[1])
    children = defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    found, stack = [], [root] if root in parents else []
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def usage(pids):
    """(CPU seconds, delay seconds) of processes ``pids``. CPU: their threads' and their reaped
    children's (children reaped without a wait, by SIGCHLD ignored, are not counted: the
    backstop bounds them). Delay: the longest that any of them (its main thread) has waited,
    runnable, for a CPU the machine gave others: the load's share of its time."""
    cpu, delay = 0, 0
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            cpu += sum(int(ticks) for ticks in stat[11:15])  # utime stime cutime cstime
            delay = max(delay, _run_delay(pid))
    return cpu / TICKS, delay / 1e9


def _stat(pid):
    """The fields of /proc/PID/stat after the process's name, or None once it has ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()  # (the name in parentheses may hold spaces)


def _run_delay(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[1])  # nanoseconds on a run queue
    except (OSError, IndexError, ValueError):
        return 0


class KernelClock:
    """A kernel's clocks: ``cpu()``, the CPU seconds it has used, and ``delay()``, the seconds
    the machine's load has held it back (usage; never decreasing). ``pid()`` names its tree's
    root (None: no kernel, and the clocks stand still). Read at most every POLL_SECONDS; the
    tree is looked for every SCAN_SECONDS (a child's time is not lost meanwhile: it counts once
    it is found, or in its parent's once it has ended)."""

    def __init__(self, pid):
        self._pid, self._read_at, self._cpu, self._delay = pid, -1.0, 0.0, 0.0
        self._root, self._tree, self._scanned_at = None, [], -1.0

    def _read(self):
        now = time.monotonic()
        if now - self._read_at < POLL_SECONDS:
            return
        pid = self._pid()
        if pid != self._root or now - self._scanned_at >= SCAN_SECONDS:
            self._root, self._tree, self._scanned_at = pid, tree(pid) if pid else [], now
        cpu, delay = usage(self._tree)
        self._cpu, self._delay, self._read_at = max(self._cpu, cpu), max(self._delay, delay), now

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


# --- a check's own budget ----------------------------------------------------------------------------

class OverBudget(BaseException):
    """Raised in a check's thread once it has computed past its budget (a BaseException: no
    ``except Exception`` in a check stops it)."""


def bounded_verdict(check, sources, key, ask, unanswered=(), cpu_seconds=CHECK_CPU_SECONDS,
                    memory_bytes=CHECK_MEMORY_BYTES):
    """``judge.verdict(check, kernel)``, its kernel handle sending requests through ``ask`` (which
    raises judge.KernelSilent when the kernel cannot answer): None or (error name, message).
    ``unanswered``: the grade_ids whose checks the kernel did not answer before (judge.Notebook).

    The check may compute for ``cpu_seconds`` of this thread's CPU time, and, on the wall clock,
    BACKSTOP times as long as it spends outside ``ask`` and outside its waits for the PyTorch
    process (torch_reference.waited: the judge's own computing, elsewhere); past either, it is stopped at its next
    Python step. Meanwhile the process may map at most ``memory_bytes`` more (its address-space
    limit, lowered for the check and put back after it: grading runs one check at a time per
    process). A check past a budget fails its cell with a message that says so; the grader goes
    on. judge.MissingValue is raised here, as verdict would."""
    thread, clock, asked = threading.get_ident(), time.pthread_getcpuclockid(threading.get_ident()), [0.0]
    cpu_start, wall_start, done, over = time.clock_gettime(clock), time.monotonic(), threading.Event(), []
    torch_start = torch_reference.waited(thread)
    lock = threading.Lock()  # (no exception is raised in the check's thread once it is done)

    def send(request):
        started = time.monotonic()
        try:
            return ask(request)
        finally:
            asked[0] += time.monotonic() - started

    def watch():
        while not done.wait(POLL_SECONDS):
            with lock:
                if done.is_set():
                    return
                if time.clock_gettime(clock) - cpu_start > cpu_seconds:
                    over.append(f"took more than {cpu_seconds:g} s of CPU time")
                elif (time.monotonic() - wall_start - asked[0] - (torch_reference.waited(thread) - torch_start)
                      > BACKSTOP * cpu_seconds):
                    over.append(f"took more than {BACKSTOP * cpu_seconds:g} s")
                if over:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(OverBudget))
                    return

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + memory_bytes
    watcher = threading.Thread(target=watch, daemon=True)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        watcher.start()
        try:
            outcome = judge.verdict(check, judge.Notebook(send, sources, key, unanswered))
        except MemoryError:
            outcome = _too_big(memory_bytes)
        with lock:
            done.set()
        watcher.join()  # (a Python call: an exception raised before ``done`` arrives here at the latest)
    except OverBudget:
        outcome = None
    finally:
        done.set()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    if over:
        return "TestFailure", (f"checking what your code returned {over[0]} and was stopped "
                               "(arrays of a shape the task does not ask for?)")
    return outcome


def _too_big(memory_bytes):
    return ("TestFailure", f"checking what your code returned needed more than {memory_bytes / 2 ** 30:g} GB of "
            "memory (arrays of a shape the task does not ask for?)")


def _mapped_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
