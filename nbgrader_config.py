"""nbgrader configuration for the course (read by every nbgrader command run here)."""
import os

from coursekit.pipeline.formgrader import render_math_offline
from coursekit.pipeline.markup import render_markup_inert
from coursekit.pipeline.ownership import hand_back_at_exit

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "dl-from-scratch"
# Commands work from any directory of the course, and tests can copy the course elsewhere.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# What root writes here (sudo, a cron job) is handed to the course's owner when the command ends.
hand_back_at_exit(c.CourseDirectory.root)

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# The exchange, where release_assignment puts the student version and students submit (nbgrader
# 0.9.6's default, said here so that student/nbgrader_config.py can say the same: a test checks it).
# It must exist, world-writable with the sticky bit (`doctor` says how to make it).
c.Exchange.root = "/usr/local/share/nbgrader/exchange"

# Collect takes no student's word for who handed a folder in and when: a folder owned by someone
# else than the student it names is left, and a timestamp.txt older than its files' last change is
# replaced by that change (see coursekit/pipeline/exchange.py; where all students share one OS
# user, set c.ExchangeCollect.check_owner = False).
c.ExchangeFactory.collect = "coursekit.pipeline.exchange.CheckedCollect"

# Every grading kernel runs in a sandbox: a user of its own, its own namespaces, a read-only view
# of what it needs, one scratch folder, limits (see coursekit/kernel/sandbox.py). `make grade` forks its
# kernels from a warm zygote in the same sandbox instead (coursekit/kernel/warm_kernels.py).
c.TimeLimitedExecute.kernel_manager_class = "coursekit.kernel.sandbox.SandboxedKernelManager"
# As root, each kernel is a host user of its own; as an ordinary user (an instructor on a hub), a user
# namespace of its own. Where neither works, autograde stops before it touches a submission or an
# earlier grading, in one line that says what is missing.
c.Autograde.exporter_class = "coursekit.pipeline.plugins.execute.SandboxCheckedExporter"
# Each student's hidden inputs are drawn under the course's secret, made here on the first grading
# (owner-only, outside every kernel's view; keep it for the term, never in git): see coursekit.judge.
c.TimeLimitedExecute.hidden_inputs_secret_file = os.path.join(c.CourseDirectory.root, "hidden_inputs.key")
# Grading kernels' tracebacks are plain (file, line, the line itself): IPython's default, with
# highlighted context around every frame, took a third of a buggy submission's kernel time;
# feedback shows only the one-line message anyway. They run no start-up lines: whatever those
# imported, answer cells could use.
c.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",
    "--InteractiveShell.xmode=Plain",
]
# Time limits: an infinite loop must not hold up the class (see coursekit/pipeline/plugins/execute.py).
c.Execute.timeout = 10  # seconds per cell (TimeLimitedExecute inherits it)
# The notebook has run: its sandbox ends at once instead of after a polite shutdown (0.1 s each).
c.TimeLimitedExecute.shutdown_kernel = "immediate"
c.TimeLimitedExecute.notebook_timeout = 60
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "coursekit.pipeline.plugins.sanitize.DeduplicateIds",  # a duplicated cell must not fail the submission
    "coursekit.pipeline.plugins.sanitize.RestoreDeletedTests",  # a deleted test cell is put back, not scored 0
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "coursekit.pipeline.plugins.sanitize.CheckCellMetadata",  # the same check, schema compiled once
]
c.Autograde.autograde_preprocessors = [
    "coursekit.pipeline.plugins.execute.TimeLimitedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "coursekit.pipeline.plugins.sanitize.CheckCellMetadata",
]

# formgrader's pages render written answers' math with MathJax from this Jupyter server, not a CDN.
render_math_offline()
# Students' markup is inert on every page staff open: formgrader's pages clean it (and feedback pages, which
# no script runs on at all): see coursekit/pipeline/markup.py.
render_markup_inert()

# Feedback shows each test's score and one-line message, never hidden test code.
c.GenerateFeedback.exporter_class = "coursekit.pipeline.plugins.feedback_page.FeedbackHTMLExporter"  # the same HTML, faster
c.GenerateFeedback.preprocessors = [
    "coursekit.pipeline.plugins.feedback.GetGrades",  # and which answers are still to be graded by hand
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "coursekit.pipeline.plugins.feedback.HideHiddenTests",
    "coursekit.pipeline.plugins.feedback.BoundedFeedback",  # a page of bounded size, whatever was handed in
]
c.ExportApp.plugin_class = "coursekit.pipeline.plugins.export.CourseExport"  # a status column: "not graded" is not a zero
# The others, chosen with --exporter (`make export FORMAT=...`; docs/exports.md): WideExport (a column per part and per
# cell), CanvasExport (Canvas's gradebook import) and GradescopeExport, whose options are set here, e.g.:
# c.CanvasExport.assignment_ids = {"ps1": "123456"}  # Canvas's assignment ids: the import updates them instead of adding new ones
# c.CanvasExport.sis_login_id = "id"  # or "email", "lms_user_id", "": the gradebook field in Canvas's SIS Login ID column
