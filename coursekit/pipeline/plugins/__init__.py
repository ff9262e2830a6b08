"""The course's nbgrader plugins, one module per stage of nbgrader's commands (nbgrader_config.py
names each class by its module):

- sanitize: autograde's first stage, on the submitted notebook before it runs: duplicated ids
  (DeduplicateIds), deleted test cells put back (RestoreDeletedTests), a faster metadata check
  (CheckCellMetadata).
- execute: autograde's run: the sandbox checked before anything is touched (SandboxCheckedExporter),
  time and output limits, a new kernel when one dies at start-up, and the judge's verdicts
  (TimeLimitedExecute).
- feedback: generate_feedback's preprocessors: scores and answers still to grade by hand
  (GetGrades), hidden tests hidden (HideHiddenTests), a page of bounded size (BoundedFeedback).
- feedback_page: generate_feedback's exporter (FeedbackHTMLExporter): the course's template, MathML,
  and what a process that makes many pages need not compute again.
- export: ``nbgrader export``'s plugin (CourseExport): a status column.
"""
from __future__ import annotations

from typing import Any


def output_size(content: Any) -> int:
    """Roughly the bytes of an output or a message's content (the length of its strings): what the
    limits on a cell's output (execute) and on a feedback page (feedback) count."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        return sum(output_size(value) for value in content.values())
    if isinstance(content, (list, tuple)):
        return sum(output_size(value) for value in content)
    return 8
