"""JupyterHub for the course on one server, in The Littlest JupyterHub's shape: `make hub`.

System users log in with their passwords (PAM). Every server runs from one environment that all
users can run (the hub's, in its prefix); instructors' servers run with the course's package
from their course folder, formgrader and Create Assignment; students' servers have neither,
and a Jupyter configuration folder they cannot change. coursekit.tools.hub writes the files this
reads (``hub.json`` in the prefix: who is an instructor, who a student, where the course is).
"""
import json
import os
import pwd
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub

PREFIX = Path(os.environ.get("COURSEKIT_HUB_PREFIX", "/opt/coursekit-hub"))
SETUP = json.loads((PREFIX / "hub.json").read_text())
INSTRUCTORS, STUDENTS = set(SETUP["instructors"]), set(SETUP["students"])
ENVIRONMENT = Path(SETUP["environment"])  # its venv/ and proxy/

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(SETUP["port"])
c.JupyterHub.hub_port = int(SETUP["port"]) + 81  # (8081, its default, beside 8000)
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(SETUP['port']) + 1}"
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = INSTRUCTORS | STUDENTS
c.JupyterHub.db_url = f"sqlite:///{PREFIX / 'state' / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(PREFIX / "state" / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.command = [str(ENVIRONMENT / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(PREFIX / "state" / "proxy.pid")

c.Spawner.cmd = [str(ENVIRONMENT / "venv" / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 60


def _environment(spawner):
    """Each server's environment: the hub's Python first, the configuration of the user's role
    (students cannot write theirs), and for instructors the course's package and environment."""
    name = spawner.user.name
    home = pwd.getpwnam(name).pw_dir
    role = "instructor" if name in INSTRUCTORS else "student"
    spawner.environment.update({
        "PATH": f"{ENVIRONMENT / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "JUPYTER_CONFIG_DIR": str(PREFIX / "jupyter" / role),
        # (what JupyterLab saves stays in the home, not in that folder)
        "JUPYTERLAB_SETTINGS_DIR": f"{home}/.jupyter/lab/user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": f"{home}/.jupyter/lab/workspaces",
    })
    if role == "instructor":
        course = SETUP["courses"][name]
        # the course's own package, and `make grade` in its folder runs from this environment
        spawner.environment.update({"PYTHONPATH": course, "VENV": str(ENVIRONMENT / "venv")})


c.Spawner.pre_spawn_hook = _environment
