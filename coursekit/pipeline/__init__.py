"""The grading pipeline, in the grader's processes: nbgrader's plugins (time limits, the judge's
verdicts, the feedback page, the export: plugins/), `make grade` (grade_class: parallel workers and
the merge into the gradebook), the results they pass on (results), read back from the gradebook
(gradebook), and what it writes afterwards: the report, the regrade record, similar answers, the
tamper report. Never in a kernel's view."""
