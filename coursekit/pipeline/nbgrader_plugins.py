"""nbgrader preprocessors of the course, enabled in nbgrader_config.py for every autograde."""
import asyncio
import copy
import csv
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from queue import Empty
from xml.etree import ElementTree

import jinja2
import jsonschema
import latex2mathml.converter
import nbformat
import zmq
from jinja2 import pass_context as contextfilter
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import DeadKernelError
from nbconvert.exporters import HTMLExporter, NotebookExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output
from nbgrader import preprocessors as nbgrader_preprocessors
from nbgrader import utils
from nbgrader.api import MissingEntry
from nbgrader.nbgraderformat import common as nbgraderformat_common
from nbgrader.plugins import CsvExportPlugin
from nbgrader.preprocessors import ClearHiddenTests, Execute
from traitlets import Bool, Float, Integer, Unicode, default

from coursekit import judge
from coursekit.pipeline import limits, markup, tamper
from coursekit.kernel import sandbox
from coursekit.kernel.sandbox import MAX_MESSAGE_BYTES, kernels_base
from nbgrader.converters.base import NbGraderException


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

    def preprocess(self, nb, resources=None, km=None):
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

    def preprocess_cell(self, cell, resources, index):
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
        size = _size(msg["content"])
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


def _size(content):
    """Roughly the bytes of a message's content (the length of its strings)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        return sum(_size(value) for value in content.values())
    if isinstance(content, (list, tuple)):
        return sum(_size(value) for value in content)
    return 8


class GetGrades(nbgrader_preprocessors.GetGrades):
    """nbgrader's GetGrades, which also tells the feedback page which cells are still to be
    graded by hand (no TA score yet: nbgrader would show 0), and how many points they hold."""

    def preprocess(self, nb, resources):
        self._ungraded_points = 0.0
        nb, resources = super().preprocess(nb, resources)
        resources["nbgrader"]["ungraded_points"] = self._ungraded_points
        return nb, resources

    def _get_score(self, cell, resources):
        grade = self.gradebook.find_grade(cell.metadata.nbgrader["grade_id"], self.notebook_id, self.assignment_id,
                                          self.student_id)
        cell.metadata.nbgrader["score"], cell.metadata.nbgrader["points"] = grade.score, grade.max_score
        cell.metadata.nbgrader["ungraded"] = grade.manual_score is None and grade.auto_score is None
        self._ungraded_points += grade.max_score if cell.metadata.nbgrader["ungraded"] else 0


class HideHiddenTests(ClearHiddenTests):
    """For feedback: graded cells lose their hidden tests, and errors keep only their one-line message.

    A traceback would quote the hidden test code it ran through (nbgrader issue #917); the
    message says what is wrong without it.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            try:
                self._remove_hidden_test_region(cell)
            except RuntimeError:  # unbalanced markers: show nothing rather than a part of the test
                cell.source = "# (test code hidden)"
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


class BoundedFeedback(nbgrader_preprocessors.NbGraderPreprocessor):
    """For feedback: a page of bounded size, whatever a submission holds. A cell shows at most
    ``max_cell_bytes`` of its source, and the page at most ``max_page_bytes`` of sources and
    outputs; what is cut says so where it was."""

    max_cell_bytes = Integer(markup.FEEDBACK_CELL_BYTES, help="Bytes of a cell's source a feedback page shows.").tag(config=True)
    max_page_bytes = Integer(12 * 2 ** 20, help="Bytes of sources and outputs a feedback page shows.").tag(config=True)

    def preprocess(self, nb, resources):
        left = self.max_page_bytes
        for cell in nb.cells:
            if len(cell.source) > min(self.max_cell_bytes, left):
                shown = max(0, min(self.max_cell_bytes, left))
                cell.source = cell.source[:shown] + (f"\n\n[cut: this cell is {len(cell.source) / 2 ** 10:.0f} KB; "
                                                     f"the page shows {shown / 2 ** 10:.0f} KB of it]\n")
            left -= len(cell.source)
            outputs = []
            for output in cell.get("outputs", []):
                size = _size(output)
                if size > left:
                    outputs.append(new_output("stream", name="stdout", text="\n[cut: the page shows no more outputs]\n"))
                    left = 0
                    break
                outputs.append(output)
                left -= size
            if "outputs" in cell:
                cell.outputs = outputs
        return nb, resources


class DeduplicateIds(nbgrader_preprocessors.DeduplicateIds):
    """nbgrader's DeduplicateIds (a student duplicated a graded cell: the last copy keeps the id),
    except that the other copies become plain cells. nbgrader leaves them an empty ``nbgrader``
    entry, which its own metadata check then rejects as an old format, failing the submission."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", None) == {}:
                del cell.metadata["nbgrader"]
        return nb, resources


RESTORED_NOTE = ("**This test cell was missing from your notebook** (deleted?): the grader put it back from "
                 "the assignment, and it is graded as usual.")


class RestoreDeletedTests(nbgrader_preprocessors.NbGraderPreprocessor):
    """Put back the test cells that a submission lacks, from the assignment's source notebook, each
    after the cell that precedes it there and below a note (RESTORED_NOTE) that says so.

    A hidden test cell looks empty in the student's copy (a comment), so students delete them; a
    deleted test cell would otherwise score nothing, silently. OverwriteCells, which runs next,
    then gives each its source from the gradebook, as for any test cell.
    """

    def preprocess(self, nb, resources):
        source = self._source_notebook(resources)
        if source is None:
            return nb, resources
        present = {_grade_id(cell) for cell in nb.cells} - {None}
        previous, restored = None, []
        for cell in source.cells:
            grade_id = _grade_id(cell)
            if grade_id is None or grade_id in present:
                previous = grade_id or previous
                continue
            if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
                continue
            at = next((i + 1 for i, other in enumerate(nb.cells) if _grade_id(other) == previous), 0)
            nb.cells[at:at] = [new_markdown_cell(RESTORED_NOTE),
                               new_code_cell(cell.source, metadata=copy.deepcopy(cell.metadata))]
            previous = grade_id
            restored.append(grade_id)
        if restored:
            self.log.warning("Test cells missing from the submission, put back: %s", ", ".join(restored))
        return nb, resources

    def _source_notebook(self, resources):
        owner = self.parent
        while owner is not None and not hasattr(owner, "coursedir"):  # the exporter's converter
            owner = getattr(owner, "parent", None)
        info = resources.get("nbgrader", {})
        if owner is None or not info.get("assignment") or not info.get("notebook"):
            return None
        folder = owner.coursedir.format_path(owner.coursedir.source_directory, ".", info["assignment"])
        path = os.path.join(folder, f"{info['notebook']}.ipynb")
        return nbformat.read(path, as_version=4) if os.path.exists(path) else None


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def restored_tests(notebook):
    """The grade_ids of the test cells that RestoreDeletedTests put back into ``notebook``."""
    return [_grade_id(after) for before, after in zip(notebook.cells, notebook.cells[1:])
            if before.cell_type == "markdown" and before.source == RESTORED_NOTE]


class _CompiledSchemas:
    """Stands in for the ``jsonschema`` module in nbgrader's metadata validator: ``validate``
    compiles each schema once instead of checking the schema itself again for every cell."""

    ValidationError = jsonschema.ValidationError

    def __init__(self):
        self._validators = {}

    def validate(self, instance, schema):
        key = id(schema)
        if key not in self._validators:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[key] = (schema, cls(schema))  # keep the schema alive: its id is the key
        error = jsonschema.exceptions.best_match(self._validators[key][1].iter_errors(instance))
        if error is not None:
            raise error


_COMPILED = _CompiledSchemas()


class CheckCellMetadata(nbgrader_preprocessors.CheckCellMetadata):
    """nbgrader's CheckCellMetadata, the same checks in a tenth of the time: its validator calls
    ``jsonschema.validate``, which validates the schema itself before every cell (0.3 s of each
    autograde, where the notebook's own cells take about 1 s)."""

    def preprocess(self, nb, resources):
        saved = nbgraderformat_common.jsonschema
        nbgraderformat_common.jsonschema = _COMPILED
        try:
            return super().preprocess(nb, resources)
        finally:
            nbgraderformat_common.jsonschema = saved


class _CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's compiled templates, kept in memory for the life of the process. Jinja checks each
    template's source against the checksum stored with its code, so an edited template is compiled again."""

    def __init__(self):
        self._code = {}

    def load_bytecode(self, bucket):
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket):
        self._code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _CompiledTemplates()


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter with the course's feedback page (templates/course_feedback), whose
    math is MathML made here: it renders without MathJax, which a page opened offline cannot load.

    It is also faster when a process makes the feedback of many students: it compiles its
    templates once per process instead of once per page (a tenth of a second each), renders each
    Markdown cell and highlights each code cell once per process (a class's pages share most of
    their cells: the release's), and adds the alt text and tabindex attributes that HTMLExporter
    adds without parsing the whole page with BeautifulSoup (a twelfth of a second a page).
    """

    cleans_markup = True  # (markup.render_markup_inert leaves it as it is: it cleans its own)

    def __init__(self, config=None, **kwargs):
        self._formulas_left = MAX_FORMULAS
        # nbgrader's generate_feedback configures its "feedback" template; the course's replaces it
        if config is not None and config.HTMLExporter.get("template_name") == "feedback":
            config = copy.deepcopy(config)
            config.HTMLExporter.template_name = "course_feedback"
            config.HTMLExporter.extra_template_basedirs = [TEMPLATES, *config.HTMLExporter.get("extra_template_basedirs", [])]
        super().__init__(config=config, **kwargs)

    @contextfilter
    def markdown2html(self, context, source):
        if self.template_name != "course_feedback":
            return super().markdown2html(context, source)
        cell = context.get("cell", {})
        options = dict(attachments=cell.get("attachments", {}), embed_images=self.embed_images,
                       path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                       anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
                       **self.lexer_options)
        # (the path only matters for embedded images, which are not remembered: each student's
        # scratch course has its own, and the release's cells are the same in all of them)
        key = None if self.embed_images else (
            "markdown", source, json.dumps({**options, "path": None}, sort_keys=True, default=str))
        if self._formulas_left <= 0:  # the page's math budget is spent: LaTeX stays as it was written
            key = None if key is None else (*key, "no math")
        renderer = _MathMLRenderer(escape=False, page=self, **options)
        html = _remembered(key, lambda: markup.clean_html(MarkdownWithMath(renderer=renderer).render(source)))
        if renderer.budget_ran_out:  # (its math is converted up to a point that depends on the page)
            _remembered.forget(key)
        return html

    @default("sanitize_html")
    def _sanitize_html_default(self):
        return True  # (nbconvert's templates then pass outputs through the clean_html filter: the course's)

    def default_filters(self):
        for name, function in super().default_filters():
            yield name, markup.clean_html if name == "clean_html" else function

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _TEMPLATES
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node up to its BeautifulSoup pass, which _accessible replaces
        language = nb.metadata.get("language_info", {})
        lexer = language.get("pygments_lexer", language.get("name", None))
        highlight = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        self.register_filter("highlight_code", _RememberedHighlight(highlight) if isinstance(highlight, Highlight2HTML) else highlight)
        resources = self._init_resources(resources)
        resources["content_security_policy"] = markup.FEEDBACK_POLICY
        self._formulas_left = MAX_FORMULAS
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                                       resources=resources))
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return _accessible(html), resources


class _Remembered:
    """What the feedback pages of this process rendered: (kind, source, options) -> HTML, up to
    ``limit`` bytes (then it starts again: a huge notebook must not fill a worker's memory)."""

    def __init__(self, limit):
        self.found, self.bytes, self.limit = {}, 0, limit

    def forget(self, key):
        if key in self.found:
            self.bytes -= len(key[1]) + len(self.found.pop(key))

    def __call__(self, key, render):
        """``render()``, or what it returned the last time for ``key`` (None: not to be remembered)."""
        if key is None:
            return render()
        if key not in self.found:
            html = render()
            size = len(key[1]) + len(html)
            if size > self.limit // 16:
                return html
            if self.bytes + size > self.limit:
                self.found, self.bytes = {}, 0
            self.found[key], self.bytes = html, self.bytes + size
        return self.found[key]


_remembered = _Remembered(64 * 2 ** 20)


class _RememberedHighlight:
    """nbconvert's highlight_code filter (a Highlight2HTML), through _remembered."""

    def __init__(self, highlight):
        self.highlight = highlight

    def __call__(self, source, language=None, metadata=None):
        key = ("code", source, repr((self.highlight.pygments_lexer, self.highlight.extra_formatter_options, language,
                                     (metadata or {}).get("magics_language"))))
        return _remembered(key, lambda: self.highlight(source, language, metadata))


TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


# A feedback page converts at most this many formulas to MathML, each of at most MAX_FORMULA characters:
# the rest stays LaTeX, as written (latex2mathml has no limit of its own on time or size).
MAX_FORMULAS, MAX_FORMULA = 2000, 2000


class _MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with LaTeX math as MathML; what latex2mathml cannot
    convert, and what is past the ``page``'s budget (FeedbackHTMLExporter), stays LaTeX, as it was written."""

    def __init__(self, *args, page=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.page, self.budget_ran_out = page, False

    def _converted(self, latex, display):
        if self.page is not None:
            if self.page._formulas_left <= 0 or len(latex) > MAX_FORMULA:
                self.budget_ran_out = self.budget_ran_out or self.page._formulas_left <= 0
                return None
            self.page._formulas_left -= 1
        return _mathml(latex, display)

    def inline_math(self, body):
        return self._converted(body, "inline") or super().inline_math(body)

    def block_math(self, body):
        return self._converted(body, "block") or super().block_math(body)

    def latex_environment(self, name, body):
        return self._converted(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block") or super().latex_environment(name, body)


def markdown_with_mathml(source):
    """Markdown as HTML, its math as MathML (as on the feedback pages)."""
    return MarkdownWithMath(renderer=_MathMLRenderer(escape=False)).render(source)


def _mathml(latex, display):
    """MathML for ``latex``, or None when latex2mathml cannot convert it or its output is not
    MathML alone (it copies ``\\text{...}`` as it is, markup included)."""
    try:
        mathml = latex2mathml.converter.convert(latex, display=display)
        tree = ElementTree.fromstring(mathml)
    except Exception:  # noqa: BLE001 - its parser raises many kinds
        return None
    for element in tree.iter():
        name = element.tag.rsplit("}", 1)[-1]
        if name not in markup.MATHML or any(key.lower().startswith("on") or "href" in key.lower() for key in element.attrib):
            return None
    return mathml



MISSING_ALT = "No description has been provided for this image"
# comments and the elements whose text holds no tags
_RAW_TEXT = re.compile(r"<!--.*?(?:-->|\Z)|<(script|style|textarea|title)\b.*?(?:</\1\s*>|\Z)", re.S | re.I)
# a whole start tag, whatever its name (so that an "<img" inside another tag's attribute is not one);
# no "<" in an attribute name: a scan that fails stops at the next "<" (linear time on any text)
_TAG = re.compile(r"""<([a-zA-Z][\w:-]*)((?:\s+[^\s"'<>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*)(\s*/?)>""")
_ATTRIBUTE = re.compile(r"""\s+([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_FOCUSABLE = {"jp-Cell-inputWrapper", "jp-OutputArea-output"}  # inside .jp-Notebook


def _accessible(html):
    """What HTMLExporter's BeautifulSoup pass does to a page: alt text for every image without
    one, and tabindex="0" on the input and output areas of the notebook's cells."""
    notebook = re.search(r"""\sclass\s*=\s*["']?[^"'>]*\bjp-Notebook\b""", html)
    start = notebook.start() if notebook else len(html)
    pieces, done = [], 0
    for raw in [*_RAW_TEXT.finditer(html), None]:
        end = raw.start() if raw else len(html)
        pieces.append(_TAG.sub(lambda tag, at=done: _with_attributes(tag, at + tag.start() > start), html[done:end]))
        if raw:
            pieces.append(raw.group())
            done = raw.end()
    return "".join(pieces)


def _with_attributes(tag, in_notebook):
    name, attributes, end = tag.groups()
    if name.lower() not in ("img", "div"):
        return tag.group()
    found = {match.group(1).lower(): match for match in _ATTRIBUTE.finditer(attributes)}
    if name.lower() == "img" and "alt" not in found:
        return f'<{name}{attributes} alt="{MISSING_ALT}"{end}>'
    classes = found.get("class") and found["class"].group(2) or ""
    if name.lower() == "div" and in_notebook and _FOCUSABLE & set(classes.strip("\"'").split()):
        if "tabindex" in found:
            match = found["tabindex"]
            attributes = f'{attributes[:match.start()]} {match.group(1)}="0"{attributes[match.end():]}'
            return f"<{name}{attributes}{end}>"
        return f'<{name}{attributes} tabindex="0"{end}>'
    return tag.group()


class CourseExport(CsvExportPlugin):
    """nbgrader's CSV export (``nbgrader export``), with a last column, ``status``: "graded",
    "not submitted", or "not graded: <reason>" for a submission that the last `make grade` could
    not grade (its scores are left empty, not 0 as if it were blank)."""

    COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
               "raw_score", "late_submission_penalty", "score", "max_score", "status"]

    def export(self, gradebook):
        from coursekit.pipeline.grading import not_graded

        students, assignments = {str(s) for s in self.student}, {str(a) for a in self.assignment}
        with open(self.to or "grades.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS, lineterminator="\n")
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                failed = not_graded(self.parent.coursedir.root, assignment.name)
                for student in gradebook.students:
                    if not students or student.id in students:
                        writer.writerow(self._row(gradebook, assignment, student, failed.get(student.id)))

    @staticmethod
    def _row(gradebook, assignment, student, failure):
        row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
               "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
               "max_score": assignment.max_score, "timestamp": "", "status": "not submitted"}
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            submission = None
        if failure is not None and (submission is None or all(grade.auto_score is None for notebook in submission.notebooks
                                                              for grade in notebook.grades)):
            row["status"] = f"not graded: {failure}"  # (what a TA graded by hand stays in the gradebook)
        elif submission is not None:
            penalty = submission.late_submission_penalty or 0.0
            row.update(timestamp=submission.timestamp, raw_score=submission.score, late_submission_penalty=penalty,
                       score=max(0.0, submission.score - penalty), status="graded")
        else:
            row.update(raw_score=0.0, late_submission_penalty=0.0, score=0.0)
        return {key: "" if value is None else value for key, value in row.items()}
