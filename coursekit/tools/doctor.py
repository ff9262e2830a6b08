"""What this machine offers for running the course, and what to do about what is missing: `make doctor`.

Usage: python -m coursekit.tools.doctor [--course DIR] [--jobs N]

Each line is a check: ``ok``, ``warn`` (the course runs, but see the advice) or ``FAIL`` (a
step of the term cannot work until it is fixed), with what to do. Exits 1 if any check failed.
Read it as the user who grades (the instructor, on a hub), since the sandbox's mode depends on who
runs it. The checks are the "Run a course" guide's (docs/run-a-course.md).
"""
from __future__ import annotations

import argparse
import os
import resource
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from coursekit import COURSE_ROOT
from coursekit.kernel import sandbox
from coursekit.kernel.confine import LIMITS
from coursekit.pipeline.exchange import exchange_root
from coursekit.pipeline.grade_class import DEFAULT_JOBS

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    status: str  # OK, WARN or FAIL
    what: str  # the fact found
    advice: str = ""  # what to do (for WARN and FAIL)

    def __str__(self):
        return f"{self.status:4}  {self.what}" + (f"\n      -> {self.advice}" if self.advice else "")


def check_sandbox() -> Check:
    """Whether grading kernels can be sandboxed, and how (root, or rootless through user namespaces)."""
    try:
        mode = sandbox.sandbox_mode()
    except sandbox.SandboxUnavailable as error:
        return Check(FAIL, "grading kernels cannot be sandboxed", str(error))
    return Check(OK, f"grading kernels are sandboxed in {sandbox.describe(mode)}")


def check_process_limit(jobs: int) -> Check:
    """Rootless, every kernel's processes count against the grader's own process limit too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    needed = (jobs + 1) * LIMITS[resource.RLIMIT_NPROC] + 256  # the kernels at their cap, the zygote and the grader
    if os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= needed:
        return Check(OK, f"process limit {'unlimited' if soft == resource.RLIM_INFINITY else soft}: room for "
                     f"{jobs} kernels at their cap of {LIMITS[resource.RLIMIT_NPROC]}")
    return Check(WARN, f"process limit {soft} (ulimit -u) is below {needed}: {jobs} kernels at their cap could "
                 "leave this user unable to start processes while grading",
                 "raise the limit (limits.conf, or the hub's spawner), or grade with fewer jobs (make grade JOBS=...)")


def check_exchange(root: str) -> Check:
    """The exchange exists, and every user may write into it without reading others' submissions."""
    path = Path(root)
    if not path.is_dir():
        return Check(FAIL, f"the exchange {root} does not exist",
                     f"as root: mkdir -p {root} && chmod 1777 {root} (nbgrader's documented modes)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o1777 != 0o1777:
        return Check(FAIL, f"the exchange {root} has mode {mode:o}: not every user can write into it",
                     f"as its owner or root: chmod 1777 {root}")
    return Check(OK, f"the exchange {root} exists, writable by every user (mode {mode:o})")


def check_same_exchange(course: Path) -> Check:
    """The course's config and the students' name the same exchange (else releases never reach them)."""
    ours, theirs = exchange_root(course / "nbgrader_config.py"), exchange_root(COURSE_ROOT / "student" / "nbgrader_config.py")
    if ours != theirs:
        return Check(FAIL, f"the course's exchange is {ours} but the students' config says {theirs}",
                     "set c.Exchange.root to the same folder in nbgrader_config.py and student/nbgrader_config.py")
    return Check(OK, f"the course and its students use the same exchange ({ours})")


def check_interpreter() -> Check:
    """Every user can run this environment's Python (students' and the instructor's servers, grading)."""
    blocked = [str(path) for path in _paths_to(Path(sys.executable).resolve()) + _paths_to(Path(sys.prefix))
               if not _others_may_enter(path)]
    if blocked:
        return Check(WARN, f"other users cannot reach this Python ({sys.executable}): {blocked[0]} is closed to them",
                     "install the course's environment where every user can run it (e.g. /opt, as The Littlest "
                     "JupyterHub does), or use Debian's python3 to make it (python3 -m venv)")
    return Check(OK, f"every user can run this Python ({sys.executable})")


def _paths_to(path: Path) -> list[Path]:
    return [*reversed(path.parents), path]


def _others_may_enter(path: Path) -> bool:
    mode = path.stat().st_mode
    return bool(mode & stat.S_IXOTH) and (path.is_dir() or bool(mode & stat.S_IROTH))


def check_course(course: Path) -> Check:
    """The course folder belongs to whoever grades it, and students cannot read it."""
    info = course.stat()
    if info.st_uid != os.geteuid() and os.geteuid() != 0:
        return Check(FAIL, f"the course {course} belongs to uid {info.st_uid}, not to this user ({os.geteuid()})",
                     "grade as the course's owner")
    if stat.S_IMODE(info.st_mode) & 0o007:
        return Check(WARN, f"other users can enter the course folder {course} (mode {stat.S_IMODE(info.st_mode):o}): "
                     "its gradebook, secret and source are theirs to read if the files allow it",
                     f"chmod o-rwx {course}")
    return Check(OK, f"the course folder {course} is closed to other users")


def check_homes(base: Path = Path("/home")) -> Check:
    """Students' homes are private (Debian's useradd makes them readable by everyone)."""
    homes = [path for path in base.iterdir() if path.is_dir()] if base.is_dir() else []
    readable = [str(path) for path in homes if stat.S_IMODE(path.stat().st_mode) & 0o005]
    if readable:
        return Check(WARN, f"{len(readable)} of {len(homes)} homes in {base} are open to other users "
                     f"({', '.join(readable[:3])}{', ...' if len(readable) > 3 else ''}): "
                     "a student can read another's notebooks",
                     f"chmod 0700 {base}/*, and HOME_MODE 0700 in /etc/login.defs for new users")
    return Check(OK, f"the {len(homes)} homes in {base} are private")


def run(course: Path, jobs: int) -> list[Check]:
    return [check_sandbox(), check_process_limit(jobs), check_exchange(exchange_root(course / "nbgrader_config.py")),
            check_same_exchange(course), check_interpreter(), check_course(course), check_homes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=str(COURSE_ROOT), help="the course folder (default: this repository)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="make grade's workers")
    args = parser.parse_args(argv)
    checks = run(Path(args.course).resolve(), args.jobs)
    print("\n".join(map(str, checks)))
    return 1 if any(check.status == FAIL for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
