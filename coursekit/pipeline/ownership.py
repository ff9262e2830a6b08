"""Files the grader writes in a course belong to the course's owner, whoever runs it.

An instructor's course on a hub is theirs; if root grades it (``sudo make grade``, or a stock
nbgrader command run as root), what root wrote there must not lock the instructor out of their
own gradebook, autograded notebooks or feedback afterwards. nbgrader_config.py hands them back
when every nbgrader command ends; `make grade` does it when it ends too.
"""
from __future__ import annotations

import atexit
import os
from pathlib import Path

# Folders of a course that grading never writes, and that can be large.
SKIPPED = {".git", ".venv", "node_modules", "__pycache__"}


def hand_back(course: str | os.PathLike) -> list[Path]:
    """As root, give every file and folder under ``course`` that root owns to the owner of
    ``course`` itself (nothing happens when the course is root's, or for another user).

    Returns:
    - list: the paths handed back.
    """
    course = Path(course)
    if os.geteuid() != 0 or not course.is_dir():
        return []
    owner = course.stat()
    if owner.st_uid == 0:
        return []
    handed = []
    for folder, folders, files in os.walk(course):
        folders[:] = [name for name in folders if name not in SKIPPED]
        for name in folders + files:
            path = Path(folder) / name
            if path.lstat().st_uid == 0:
                os.lchown(path, owner.st_uid, owner.st_gid)
                handed.append(path)
    return handed


def hand_back_at_exit(course: str | os.PathLike) -> None:
    """Register hand_back(course) for when this process ends (a no-op unless it runs as root),
    once per course however often its config is read."""
    course = os.path.realpath(course)
    if os.geteuid() == 0 and course not in _REGISTERED:
        _REGISTERED.add(course)
        atexit.register(hand_back, course)


_REGISTERED = set()
