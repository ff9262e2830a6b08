"""Autograde's run (``Autograde.exporter_class`` and ``Autograde.autograde_preprocessors``): the
sandbox checked before any submission is touched, then each notebook executed under time and
output limits, with the judge's verdicts on its test cells."""
import asyncio
import os
import secrets
import shutil
import tempfile
import time
from queue import Empty

import zmq
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import DeadKernelError
from nbconvert.exporters import NotebookExporter
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.converters.base import NbGraderException
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Integer, Unicode

from coursekit import judge
from coursekit.kernel import sandbox
from coursekit.kernel.sandbox import MAX_MESSAGE_BYTES, kernels_base
from coursekit.pipeline import limits, tamper
from coursekit.pipeline.plugins import output_size


DEAD_KERNEL = "the kernel died (out of memory? did your code break Python itself, e.g. replace builtins?)"
UNRESPONSIVE = "the kernel stopped answering after a cell ran past its time limit (it was stopped)"


def _error(name, message):
    return new_output("error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class SandboxCheckedExporter(NotebookExporter):
    """Autograde's exporter (``Autograde.exporter_class``), made once before any submission is
    touched: where grading kernels cannot be sandboxed (coursekit.kernel.sandbox.sandbox_mode),
    autograde stops here with one line, before nbgrader removes an earlier grading (``--force``)
    or starts a kernel. Otherwise the log says which mode grades."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            mode = sandbox.sandbox_mode()
        except sandbox.SandboxUnavailable as error:
            self.log.error("%s", error)
            raise NbGraderException(str(error)) from None
        self.log.info("Grading kernels are sandboxed: %s", sandbox.describe(mode))


class TimeLimitedExecute(Execute):
    """nbgrader's Execute with time limits that load cannot move, and one per notebook, so that
    an infinite loop costs seconds.

    ``timeout`` (a cell's) and ``notebook_timeout`` count CPU time of the kernel's process tree,
    each with a backstop for a kernel that waits (coursekit.pipeline.limits): a busy machine grades slower,
    never differently. A cell past its limit is interrupted and fails with the limit and what it
    used; once the notebook is past its own, the remaining cells are not run and their tests fail
    with that reason. After a cell times out, the remaining cells get ``timeout_after_timeout``
    seconds each. (A cell whose error the notebook hides from IPython's display still fails:
    nbgrader's Execute adds the error the kernel reported.)

    A kernel that dies before the first cell runs is replaced, up to ``kernel_starts`` times: no
    student code has run yet, so the cause is the machine (kernels started in parallel can race
    for the same free TCP port), and a student must not lose a grade to it. The notebook's clock
    starts with its first cell, not with the kernel.

    A cell keeps at most ``max_output_bytes`` of output, and the notebook at most
    ``max_notebook_output_bytes`` whatever its number of cells (an error is always kept,
    shortened; a cut says so in the cell): nbgrader's LimitOutput counts lines, and a few lines
    of 20 MB each would cost the grader gigabytes and the student a feedback page nobody can open.

    In an assignment with judged tests (coursekit.judge.<assignment>), a test cell with a check
    is judged: a hidden one (``judge("<grade_id>")``) does not run in the kernel at all, a visible
    one runs and keeps what it printed; either way its outputs end with the check's verdict
    alone, so nothing the kernel displays, raises or hides decides the score.
    """

    _stopped = None  # why the running cell was stopped (its limit), or None
    # a kernel that a submission broke must not stop the grading of the notebook
    raise_on_iopub_timeout = Bool(False).tag(config=True)
    timeout = Float(30, allow_none=True, help="CPU seconds a cell may use.").tag(config=True)
    notebook_timeout = Float(60, help="CPU seconds a whole notebook may use.").tag(config=True)
    timeout_after_timeout = Float(3, help="A cell's CPU seconds once a cell has timed out.").tag(config=True)
    kernel_starts = Integer(3, help="Kernels to try when one dies before the first cell.").tag(config=True)
    max_output_bytes = Integer(2 * 2 ** 20, help="Bytes of output a cell keeps.").tag(config=True)
    max_notebook_output_bytes = Integer(8 * 2 ** 20, help="Bytes of output a notebook keeps.").tag(config=True)
    hidden_inputs_secret_file = Unicode("", help="The course's secret for the hidden inputs (judge.course_secret)."
                                        ).tag(config=True)
    hidden_inputs_secret = Unicode("", help="The secret itself, in hex (make grade's workers get it so).").tag(config=True)

    def _secret(self):
        if self.hidden_inputs_secret:
            return bytes.fromhex(self.hidden_inputs_secret)
        return judge.course_secret(self.hidden_inputs_secret_file) if self.hidden_inputs_secret_file else b""

    def preprocess(self, nb: NotebookNode, resources: dict | None = None, km=None) -> tuple[NotebookNode, dict]:
        resources = resources or {}
        assignment = resources.get("nbgrader", {}).get("assignment") or resources.get("metadata", {}).get("name")
        self._checks = judge.checks(assignment) if assignment else {}
        self._student_code = list(tamper.student_cells(nb).values())  # for checks that read the code
        student = resources.get("nbgrader", {}).get("student")
        self._key = judge.student_key(assignment, student, self._student_code, self._secret()) if student else ()
        self._unanswered = set()  # the grade_ids whose checks the kernel did not answer (it hung)
        self._agent_lost, self._agent_ended, self._agent_answered = False, True, False
        self._kernel_dead, self._dead_reason = False, DEAD_KERNEL
        self._cell_timeout = self.timeout
        self._clock = limits.KernelClock(self._kernel_pid)
        # nbclient's own wait is the last resort: the cell's Limit stops it first (async_execute_cell)
        self.timeout_func = lambda cell: limits.BACKSTOP * (self.timeout + self.timeout_after_timeout) + 5
        self._line, self._line_folder = None, None
        self._line_context = zmq.Context()
        # (sends to the agent never block: see _send_agent)
        for option, value in [(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES), (zmq.RCVHWM, 16), (zmq.LINGER, 0)]:
            self._line_context.setsockopt(option, value)
        try:
            for attempt in range(1, self.kernel_starts + 1):
                self._notebook, self._reached_cells, self._notebook_output_bytes = None, False, 0
                try:
                    return super().preprocess(nb, resources, km)
                except Exception as error:  # noqa: BLE001 - jupyter_client raises RuntimeError, zmq its own
                    if self._reached_cells or km is not None or attempt == self.kernel_starts:
                        raise
                    self.log.warning("The grading kernel did not start (%s); starting another", error)
                    self._close_judge_line()
                finally:
                    self.timeout = self._cell_timeout
        finally:
            self._close_judge_line()
            self._line_context.term()

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        self._reached_cells = True
        if cell.cell_type != "code":
            return cell, resources
        self._notebook = self._notebook or limits.Limit(self._clock, self.notebook_timeout, "the notebook")
        self._output_bytes, self._truncated = 0, False
        if over := self._notebook.exceeded():
            cell.outputs = [_error("NotebookTimeout", f"not run: {over} (an infinite loop above?)")]
            return cell, resources
        if self._kernel_dead:
            cell.outputs = [_error("DeadKernel", f"not run: {self._dead_reason} in an earlier cell")]
            return cell, resources
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") if utils.is_grade(cell) else None
        visible, called = judge.split_call(cell.source)
        if called is not None or grade_id in self._checks:
            return self._judge_cell(cell, resources, index, grade_id, called, visible), resources
        return self._run_in_kernel(cell, resources, index)

    def _run_in_kernel(self, cell, resources, index):
        """Execute's preprocess_cell under the cell's Limit; a kernel that dies fails this cell and
        every later one."""
        self._stopped = None
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            if self._stopped is None:
                self._kernel_dead = True
                cell.outputs = [_error("DeadKernel", f"{DEAD_KERNEL} while running this cell")]
                return cell, resources
        if self._stopped is not None:  # its interrupt's KeyboardInterrupt, or nothing if it caught it
            cell.outputs = [o for o in cell.outputs if o.output_type != "error"]
            cell.outputs.append(_error("CellTimeoutError", f"{self._stopped} and was stopped (an infinite loop?)"))
            self.timeout = min(self.timeout, self.timeout_after_timeout)
        return cell, resources

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        watchdog = asyncio.ensure_future(self._async_watch(limits.Limit(self._clock, self.timeout)))
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            watchdog.cancel()
            if self._stopped is not None:  # nbclient leaves its kernel-alive poll running when its wait is cancelled
                for task in asyncio.all_tasks():
                    if task.get_coro().__name__ == "_async_poll_kernel_alive":
                        task.cancel()

    execute_cell = run_sync(async_execute_cell)  # nbclient binds the name to its own, not to an override

    async def _async_watch(self, limit):
        """Interrupt the cell once it is past ``limit``; if it has not ended ``timeout_after_timeout``
        CPU seconds later (it caught the interrupt, or stopped its own process), the kernel is
        given up: the cell fails with its limit, every later one without running."""
        while not (over := limit.exceeded()):
            await asyncio.sleep(limits.POLL_SECONDS)
        self._stopped = over
        await ensure_async(self.km.interrupt_kernel())
        grace = limits.Limit(self._clock, self.timeout_after_timeout)
        while not grace.exceeded():
            await asyncio.sleep(limits.POLL_SECONDS)
        await self._async_abandon_kernel()
        self.task_poll_for_reply.cancel()  # nbclient raises DeadKernelError: see _run_in_kernel

    async def _async_abandon_kernel(self):
        """Stop a kernel that no longer answers: the remaining cells fail at once (UNRESPONSIVE)."""
        self._kernel_dead, self._agent_lost, self._dead_reason = True, True, UNRESPONSIVE
        await ensure_async(self.km.shutdown_kernel(now=True))

    def _kernel_pid(self):
        """The host pid at the root of the kernel's process tree (bubblewrap's, or the fork's), or None."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def _judge_cell(self, cell, resources, index, grade_id, called, visible):
        """Judge a test cell: its outputs become what its visible tests printed and the verdict."""
        check = self._checks.get(grade_id)
        if called is not None and (called != grade_id or check is None):
            cell.outputs = [_error("JudgeError", f"this cell calls judge({called!r}), but the judge has no "
                                   f"check for it (the cell is {grade_id!r}): tell your instructor")]
            return cell
        printed = []
        if visible:  # visible tests: they run, and the student sees what they printed
            source, cell.source = cell.source, visible
            try:
                cell, resources = self._run_in_kernel(cell, resources, index)
            finally:
                cell.source = source
            if self._kernel_dead:
                return cell
            printed = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"]
        limit = limits.Limit(self._clock, self.timeout, "your code")

        def ask(request):  # (the kernel's backstop runs while it is asked, not while the check computes)
            limit.resume()
            try:
                return run_sync(self._async_ask)(request, limit)
            finally:
                limit.pause()

        try:
            run_sync(self._async_open_agent)(limit)
            limit.pause()
            outcome = limits.bounded_verdict(check, self._student_code, self._key, ask, self._unanswered)
        except judge.KernelSilent as silent:
            outcome = ("NoReply", str(silent))
        finally:
            run_sync(self._async_close_agent)()
        cell.outputs = printed + ([] if outcome is None else [_error(*outcome)])
        if outcome is not None and outcome[0] == "NoReply":
            self._unanswered.add(grade_id)
            self.timeout = min(self.timeout, self.timeout_after_timeout)
        return cell

    # The judge talks to coursekit.kernel.agent.serve(), run as one silent cell, over a ZeroMQ socket
    # that the grader binds in the kernel's folder (a sandboxed kernel sees no other): one message
    # each way per request, each starting with the cell's session.

    def _judge_line(self):
        """This kernel's end of the judge's socket, bound on first use: (socket, address)."""
        if self._line is None:
            folder = getattr(self.km, "folder", None)
            if folder is not None:
                directory, self._line_folder = folder.path, None
            else:  # a kernel outside the sandbox
                directory = self._line_folder = tempfile.mkdtemp(prefix="ck-j", dir=kernels_base())
            path = os.path.join(directory, f"judge-{secrets.token_hex(4)}")
            socket = self._line_context.socket(zmq.PAIR)
            socket.bind(f"ipc://{path}")
            os.chmod(path, 0o777)  # the kernel's user connects to it
            self._line = (socket, f"ipc://{path}")
        return self._line

    def _close_judge_line(self):
        if self._line is not None:
            self._line[0].close()
            self._line = None
        if self._line_folder is not None:
            shutil.rmtree(self._line_folder, ignore_errors=True)
            self._line_folder = None

    async def _async_open_agent(self, limit):
        if self._agent_lost:
            raise judge.KernelSilent("the kernel stopped answering the judge in an earlier cell")
        _, address = self._judge_line()
        self._session, self._agent_ended, self._agent_answered = secrets.token_hex(8), False, False
        self._agent = self.kc.execute(f"__import__('coursekit.kernel.agent').kernel.agent.serve({address!r}, {self._session!r})",
                                      silent=True, store_history=False)
        await self._async_agent_reply(limit)

    async def _async_ask(self, request, limit):
        """Send the judge's request to the kernel's agent; its reply (see coursekit.kernel.agent)."""
        self._agent_answered = False
        self._send_agent(request)
        if self._agent_lost:
            raise judge.KernelSilent("the kernel stopped reading the judge's requests")
        return await self._async_agent_reply(limit)

    async def _async_agent_reply(self, limit):
        """The agent's next message of this cell's session, or KernelSilent if it stopped or is too late."""
        socket, prefix = self._line[0], self._session + " "
        while True:
            if over := limit.exceeded():
                await ensure_async(self.km.interrupt_kernel())
                raise judge.KernelSilent(f"{over} and was stopped (an infinite loop?)")
            if socket.poll(50):
                message = socket.recv().decode("utf-8", "replace")
                if message.startswith(prefix):
                    self._agent_answered = True
                    return message[len(prefix):]
            elif await self._async_agent_ended(0):
                raise judge.KernelSilent("the kernel did not answer the judge (did your code replace "
                                         "IPython's machinery or the course's modules?)")
            elif not await ensure_async(self.km.is_alive()):
                self._kernel_dead = self._agent_lost = True
                raise judge.KernelSilent(DEAD_KERNEL)

    async def _async_agent_ended(self, timeout):
        """Whether the kernel has answered the agent's cell (waiting up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = await ensure_async(self.kc.shell_channel.get_msg(timeout=max(0.0, deadline - time.monotonic())))
            except Empty:
                return False
            if reply["parent_header"].get("msg_id") == self._agent:
                self._agent_ended = True  # (the reply is read once: remember it)
                return True

    async def _async_close_agent(self):
        """End the agent's cell (an interrupted agent still reads the end), drop its output.

        An agent that answered every request returns as soon as it reads the end: the next cell
        runs after it (nbclient ignores the agent's messages), so the grader need not wait.
        """
        grace = limits.Limit(self._clock, self.timeout_after_timeout)
        if not self._agent_ended:
            self._send_agent("")
            if self._agent_answered:
                return
        while not self._agent_ended and not self._agent_lost and not grace.exceeded():
            await self._async_agent_ended(0.05)  # (returns as soon as the reply comes)
        if not self._agent_ended and not self._agent_lost and not await ensure_async(self.km.is_alive()):
            self._agent_lost = True
        elif not self._agent_ended and not self._agent_lost:  # it neither ended nor died: it no longer answers
            await self._async_abandon_kernel()
        deadline = time.monotonic() + self.timeout_after_timeout
        while time.monotonic() < deadline:  # (a kernel that floods its output does not hold the grader here)
            try:
                await ensure_async(self.kc.iopub_channel.get_msg(timeout=0))
            except Empty:
                return

    def _send_agent(self, text):
        if self._line is None:
            return
        try:
            self._line[0].send_string(f"{self._session} {text}", zmq.NOBLOCK)
        except zmq.ZMQError:  # nobody reads it (the agent never connected, or stopped reading)
            self._agent_lost = True

    def output(self, outs, msg, display_id, cell_index):
        size = output_size(msg["content"])
        self._output_bytes += size
        self._notebook_output_bytes += size
        if self._output_bytes <= self.max_output_bytes and self._notebook_output_bytes <= self.max_notebook_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if msg["msg_type"] == "error":  # it decides the cell's score: keep it, shortened
            content = msg["content"]
            outs.append(_error(str(content.get("ename"))[:100], str(content.get("evalue"))[:1000]))
        elif not self._truncated:  # on stdout: stderr would fail the cell
            cut = (f"the cell printed more than {self.max_output_bytes / 2 ** 20:g} MB"
                   if self._output_bytes > self.max_output_bytes else
                   f"the notebook's outputs passed {self.max_notebook_output_bytes / 2 ** 20:g} MB")
            outs.append(new_output("stream", name="stdout", text=f"\n[output truncated: {cut}]\n"))
        self._truncated = True
        return None
