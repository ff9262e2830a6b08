"""Students as OS users of their own, for tests of nbgrader's exchange: the exchange names a
student by the OS user of the process (``pwd.getpwuid(os.getuid())``), and its folders'
permissions are what keep one student's submission from another.

Each student's commands run under bubblewrap, on the host's file system, as a uid of their own
(setpriv), with a passwd file that names them and with root's home hidden but for the Python
installation (root alone may enter it on the course machine). Nothing on the host changes: no
user is added, and the processes can reach only what the host lets their uid reach.
"""
import os
import subprocess
import sys
from pathlib import Path

from coursekit import COURSE_ROOT
from coursekit.kernel.sandbox import bwrap, parent_directories

FIRST_UID = 1_700_000_001  # far above any real account, and above the grading kernels' (sandbox.UIDS)
HIDDEN = "/root"  # root's home, which holds the interpreter on the course machine


class Students:
    """OS users for ``names``, with homes in ``folder``/homes (owned by them) and a passwd file
    in ``folder`` (the host's, plus one line each)."""

    def __init__(self, folder, names):
        self.folder = Path(folder)
        self.uids = {name: FIRST_UID + i for i, name in enumerate(names)}
        self.homes = {name: self.folder / "homes" / name for name in names}
        lines = Path("/etc/passwd").read_text().rstrip("\n").splitlines()
        lines += [f"{name}:x:{uid}:{uid}:{name}:{self.homes[name]}:/bin/sh" for name, uid in self.uids.items()]
        self.passwd = self.folder / "passwd"
        self.passwd.write_text("\n".join(lines) + "\n")
        for name, home in self.homes.items():
            home.mkdir(parents=True)
            os.chown(home, self.uids[name], self.uids[name])
            home.chmod(0o700)

    def argv(self, student, *command):
        """The command line that runs ``command`` as ``student`` (None: as root, on a machine
        whose users they are)."""
        argv = [bwrap(), "--die-with-parent", "--bind", "/", "/", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
                "--ro-bind", str(self.passwd), "/etc/passwd"]  # (a /dev/shm as the machine's, for multiprocessing's locks)
        if student is None:
            return [*argv, *command]
        argv += ["--perms", "0755", "--tmpfs", HIDDEN]
        made = {HIDDEN}
        for path in dict.fromkeys([sys.base_prefix, sys.prefix, str(COURSE_ROOT)]):
            if Path(path).is_relative_to(HIDDEN):
                parent_directories(argv, path, made)
                argv += ["--ro-bind", path, path]
        uid = self.uids[student]
        return [*argv, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *command]

    def run(self, student, *command, env=None, cwd=None):
        """``command`` run by ``student`` in their home (HOME, USER and LOGNAME theirs), or with
        ``student`` None by root (in ``cwd``), who then knows the students as users."""
        env = dict(env or os.environ)
        if student is not None:  # their own Jupyter settings, from their home, not the caller's
            env = {name: value for name, value in env.items() if not name.startswith("JUPYTER")}
            env.update(HOME=str(self.homes[student]), USER=student, LOGNAME=student)
            cwd = self.homes[student]
        return subprocess.run(self.argv(student, *command), cwd=cwd, env=env, capture_output=True, text=True)
