"""A course hub on this server for the demo class: `make hub` (as root).

Usage: python -m coursekit.tools.hub [--prefix DIR] [--port N] [--install] [--no-start]

What it sets up, in The Littlest JupyterHub's shape (docs/run-a-course.md):
- the hub's environment in ``PREFIX/venv``, made from the system's python3 so that every user can
  run it (this course's requirements and JupyterHub, pinned in hub/requirements.txt), and its proxy
  (configurable-http-proxy, pinned in hub/package-lock.json) in ``PREFIX/proxy``;
- system users: an instructor and a few students, each with a private home and a new password
  (printed);
- nbgrader's exchange, with the modes nbgrader documents;
- the instructor's course: a clone of this repository in their home, theirs alone;
- each role's Jupyter configuration (``PREFIX/jupyter/<role>``, which users cannot change);
then it starts JupyterHub (hub/jupyterhub_config.py) on http://127.0.0.1:PORT until stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from coursekit import COURSE_ROOT
from coursekit.pipeline.exchange import exchange_root, read_config

# (the students' config, which names the course and the exchange as the course's does: tests/test_doctor.py)
STUDENT_CONFIG = COURSE_ROOT / "student" / "nbgrader_config.py"
COURSE_ID = read_config(STUDENT_CONFIG).CourseDirectory.course_id
PREFIX = Path("/opt/coursekit-hub")
INSTRUCTOR = "ck-instructor"
STUDENTS = ("ck-ada", "ck-chen", "ck-eli")
EXCHANGE = Path(exchange_root(STUDENT_CONFIG))
# The system's interpreter, which every user can run (this machine's own may sit in root's home).
SYSTEM_PYTHON = "/usr/bin/python3"
# nbgrader's instructor pages and menus, absent from students' servers.
INSTRUCTOR_LAB_PLUGINS = ("formgrader", "create-assignment", "course-list")
INSTRUCTOR_SERVER_EXTENSIONS = ("formgrader", "course_list")


def system_command(name: str) -> str:
    """A system administration command (useradd, chpasswd, runuser), also where PATH lacks sbin."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


def search_path(environment: Path) -> str:
    """PATH for a hub's processes: its environment's programs first."""
    return f"{environment / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin"


def _run(*command, **options):
    subprocess.run([system_command(command[0]), *command[1:]], check=True, **options)


def install(prefix: Path) -> None:
    """The hub's environment and proxy, pinned; what every user's server runs from."""
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    venv = prefix / "venv"
    if not (venv / "bin" / "python").exists():
        if subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--help"], capture_output=True).returncode:
            _run("apt-get", "update", "-qq")
            _run("apt-get", "install", "-y", "-qq", "python3-venv")
        _run(SYSTEM_PYTHON, "-m", "venv", str(venv))
    requirements = prefix / "requirements.txt"  # the course's, but the course package: instructors import theirs
    requirements.write_text("".join(line for line in (COURSE_ROOT / "requirements.txt").read_text().splitlines(True)
                                    if not line.startswith("-e")))
    _run(str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(requirements),
         "-r", str(COURSE_ROOT / "hub" / "requirements.txt"))
    # JupyterLab asks every user whether to fetch news from the internet, which the hub may not reach
    settings = venv / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps({"@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false", "checkForUpdates": False}}, indent=1))
    (venv / ".installed").touch()  # the Makefile's mark: an instructor's `make grade VENV=...` uses it as it is
    proxy = prefix / "proxy"
    proxy.mkdir(exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(COURSE_ROOT / "hub" / name, proxy / name)
    _run("npm", "ci", "--silent", "--no-audit", "--no-fund", cwd=proxy)


def add_user(name: str) -> Path:
    """A system user with a private home (Debian's useradd makes homes others can read); their home."""
    try:
        home = Path(pwd.getpwnam(name).pw_dir)
    except KeyError:
        _run("useradd", "--create-home", "--shell", "/bin/bash", "-K", "HOME_MODE=0700", name)
        home = Path(pwd.getpwnam(name).pw_dir)
    home.chmod(0o700)
    return home


def set_passwords(names) -> dict[str, str]:
    passwords = {name: secrets.token_urlsafe(9) for name in names}
    _run("chpasswd", input="".join(f"{name}:{password}\n" for name, password in passwords.items()), text=True)
    return passwords


def make_exchange(root: Path = EXCHANGE) -> list[str]:
    """nbgrader's exchange: everyone may write into it, no one may remove another's files.
    Returns what it holds of the course already (a hub set up again finds an earlier term's work)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o1777)
    course = root / COURSE_ID
    return sorted(str(path.relative_to(root)) for folder in ("outbound", "inbound") for path in (course / folder).glob("*"))


def clone_course(home: Path, owner: str) -> Path:
    """The instructor's course: this repository's committed state, in their home, theirs."""
    course = home / "course"
    if not course.exists():
        _run("git", "clone", "--quiet", str(COURSE_ROOT), str(course))
        user = pwd.getpwnam(owner)
        _run("chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(course))
    course.chmod(0o700)
    return course


def write_role_config(prefix: Path, courses: dict[str, Path], exchange: Path = EXCHANGE) -> None:
    """Each role's Jupyter configuration folder (JUPYTER_CONFIG_DIR of its servers; root's, so a
    student cannot turn the instructor's extensions back on). ``exchange``: another exchange than
    the course's (the tests' hubs have their own)."""
    student, instructor = prefix / "jupyter" / "student", prefix / "jupyter" / "instructor"
    for folder in (student / "labconfig", student / "custom", instructor):
        folder.mkdir(parents=True, exist_ok=True)
    elsewhere = f"c.Exchange.root = {str(exchange)!r}\n" if exchange != EXCHANGE else ""
    (student / "nbgrader_config.py").write_text(STUDENT_CONFIG.read_text() + elsewhere)
    quiet = {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}  # (no internet to ask)
    # the course's style (student/custom.css: the Validate dialog's message in sight), from custom/ here
    shutil.copy(STUDENT_CONFIG.parent / "custom.css", student / "custom" / "custom.css")
    styled = {**quiet, "custom_css": True}
    (student / "jupyter_server_config.json").write_text(json.dumps({"LabApp": styled, "ServerApp": {"jpserver_extensions": {
        f"nbgrader.server_extensions.{name}": False for name in INSTRUCTOR_SERVER_EXTENSIONS}}}, indent=1))
    # JupyterHub forbids every frame on user servers; JupyterLab shows formgrader in one of its own
    # (same origin). Students' servers, which the instructor cannot open, keep the ban.
    frames = {"tornado_settings": {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}}
    (instructor / "jupyter_server_config.json").write_text(json.dumps({"LabApp": quiet, "ServerApp": frames}, indent=1))
    (student / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {
        f"@jupyter/nbgrader:{name}": True for name in INSTRUCTOR_LAB_PLUGINS}}, indent=1))
    # an instructor's server starts in their home: nbgrader reads the course's config from there
    (course,) = courses.values()
    (instructor / "nbgrader_config.py").write_text(
        f'c = get_config()  # noqa: F821\nload_subconfig({str(course / "nbgrader_config.py")!r})  # noqa: F821\n' + elsewhere)
    for folder in (student, instructor):  # (else jupyter_core tries to write it there, and formgrader fails to load)
        (folder / "migrated").write_text("")
    for path in [prefix / "jupyter", *(prefix / "jupyter").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def setup(prefix: Path, port: int, instructor: str = INSTRUCTOR, students=STUDENTS, environment: Path | None = None,
          exchange: Path = EXCHANGE) -> dict:
    """Users, exchange, course and configuration of a hub whose files are in ``prefix`` (its
    environment in ``environment``, by default the prefix's own: see install()); returns
    ``prefix/hub.json``'s contents with the users' new passwords."""
    environment = Path(environment or prefix)
    homes = {name: add_user(name) for name in (instructor, *students)}
    passwords = set_passwords(homes)
    earlier = make_exchange(exchange)
    courses = {instructor: clone_course(homes[instructor], instructor)}
    name_students(instructor, courses[instructor], students, environment)
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    write_role_config(prefix, courses, exchange)
    state = prefix / "state"
    state.mkdir(exist_ok=True)
    state.chmod(0o700)
    found = {"port": port, "environment": str(environment), "instructors": [instructor], "students": list(students),
             "courses": {name: str(path) for name, path in courses.items()}}
    (prefix / "hub.json").write_text(json.dumps(found, indent=1))
    return {**found, "passwords": passwords, "earlier": earlier, "exchange": str(exchange)}


def name_students(instructor: str, course: Path, students, environment: Path) -> None:
    """The students in the course's gradebook, with names (formgrader lists them), as the instructor."""
    for name in students:
        first = name.split("-")[-1].capitalize()
        _run("runuser", "-u", instructor, "--", str(environment / "venv" / "bin" / "nbgrader"), "db", "student", "add", name,
             f"--first-name={first}", "--last-name=Demo", cwd=course, capture_output=True,
             env={"HOME": pwd.getpwnam(instructor).pw_dir, "PATH": search_path(environment)})


def remove_users(names) -> None:
    """Remove users that setup() added, with their homes (the tests' own)."""
    for name in names:
        subprocess.run([system_command("userdel"), "--remove", name], capture_output=True)


def start(prefix: Path) -> subprocess.Popen:
    """JupyterHub, with the course's hub configuration, logging to ``prefix/state/jupyterhub.log``."""
    environment = Path(json.loads((prefix / "hub.json").read_text())["environment"])
    log = open(prefix / "state" / "jupyterhub.log", "ab")
    return subprocess.Popen([str(environment / "venv" / "bin" / "jupyterhub"), "-f", str(COURSE_ROOT / "hub" / "jupyterhub_config.py")],
                            cwd=prefix / "state", stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "COURSEKIT_HUB_PREFIX": str(prefix),
                                 "PATH": search_path(environment)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=PREFIX)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--install", action="store_true", help="install the hub's environment and proxy, then stop")
    parser.add_argument("--no-start", action="store_true", help="set up users, exchange and course, but start nothing")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("make hub: a hub of system users is set up by root (it adds users and the exchange); "
              "see docs/run-a-course.md for a hub whose admin is someone else", file=sys.stderr)
        return 2
    if args.install:
        install(args.prefix)
        return 0
    found = setup(args.prefix, args.port)
    print(f"The course hub: http://127.0.0.1:{args.port}/ (log: {args.prefix / 'state' / 'jupyterhub.log'})")
    for name, password in found["passwords"].items():
        print(f"  {'instructor' if name in found['instructors'] else 'student   '}  {name:16} password {password}")
    print(f"The instructor's course: {found['courses'][INSTRUCTOR]} (this repository's last commit)")
    if found["earlier"]:
        print(f"The exchange {found['exchange']} already holds this course's {', '.join(found['earlier'][:4])}"
              f"{' ...' if len(found['earlier']) > 4 else ''}: an earlier hub's work (docs/run-a-course.md says how to clear it)")
    if args.no_start:
        return 0
    hub = start(args.prefix)
    try:
        return hub.wait()
    except KeyboardInterrupt:
        hub.terminate()
        return hub.wait()


if __name__ == "__main__":
    sys.exit(main())
