"""What a student sees in JupyterLab, in headless Chromium, after student/setup.sh: a notebook
that opening does not modify, a failing visible test, the Validate dialog's message, and no
instructor menus."""
import os
import secrets
import shutil
import subprocess
import sys

from browser import chromium, free_port, wait_for_http
from coursekit import COURSE_ROOT
from coursekit.pipeline.course import _environment
from coursekit.tools.submissions import Bug, release_notebook

MEAN_BIAS = Bug("mean_bias", "linear", "grad_output.sum(axis=0)", "grad_output.mean(axis=0)")

FIRST_FAILURE = """
const output = [...document.querySelectorAll(".jp-OutputArea-output")].find(o => o.textContent.includes("TestFailure"));
if (!output) return null;
output.scrollIntoView({block: "center"});
const box = output.getBoundingClientRect(), pre = output.querySelector("pre") || output;
return {text: output.innerText, top: box.top, bottom: box.bottom, height: innerHeight,
        wide: pre.scrollWidth > pre.clientWidth + 1};
"""


# nbgrader's Validate dialog: per failed cell, a label, the cell's source and the error (its lab
# extension's layout); where each shows, and where the dialog's scrolled body ends
VALIDATION = """
const message = document.querySelector("#validation-message");
if (!message) return null;
const body = message.closest(".jp-Dialog-body") || message, pres = [...message.querySelectorAll("pre")];
return {failed: message.classList.contains("validation-failed"), bottom: body.getBoundingClientRect().bottom,
        pres: pres.map(p => ({text: p.innerText, top: p.getBoundingClientRect().top, bottom: p.getBoundingClientRect().bottom}))};
"""


def test_a_failing_visible_test_shows_its_message_at_a_glance_in_jupyterlab(tmp_path):
    folder = tmp_path / "work" / "ps1"
    shutil.copytree(COURSE_ROOT / "release" / "ps1", folder)
    (folder / "ps1.ipynb").write_bytes(MEAN_BIAS.content("ps1", release_notebook("ps1")))
    port, token = free_port(), secrets.token_hex(8)
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["sh", str(COURSE_ROOT / "student" / "setup.sh")], env={**_environment(), "HOME": str(home)},
                   check=True, capture_output=True)
    log = open(tmp_path / "lab.log", "w")
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
                            f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path / 'work'}",
                            "--LabApp.expose_app_in_browser=True"],
                           env={**_environment(), "HOME": str(home)},
                           stdout=log, stderr=log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api?token={token}")
        with chromium(width=1200, height=900) as browser:
            browser.open(f"http://127.0.0.1:{port}/lab/tree/ps1/ps1.ipynb?token={token}")
            browser.wait_for("return window.jupyterapp && document.querySelectorAll('.jp-Notebook .jp-Cell').length > 10")
            browser.wait_for("const k = window.jupyterapp.serviceManager.sessions.running().next();"
                             "return !k.done || document.querySelector('.jp-Notebook') !== null")
            browser.wait_for("const w = window.jupyterapp.shell.currentWidget;"
                             "return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                             " && w.sessionContext.session.kernel.status === 'idle'")
            browser.run("return new Promise(resolve => setTimeout(resolve, 2000))")  # (the kernel's metadata is set by now)
            opened_modified = browser.run("return window.jupyterapp.shell.currentWidget.context.model.dirty")
            browser.run("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            failure = browser.wait_for(FIRST_FAILURE, timeout=120)
            browser.screenshot(tmp_path / "jupyterlab.png")
            browser.click("return [...document.querySelectorAll('.jp-Toolbar button, .jp-Toolbar jp-button')]"
                          ".find(b => b.textContent.trim() === 'Validate')")
            validation = browser.wait_for(VALIDATION, timeout=180)
            browser.screenshot(tmp_path / "validate.png")
            browser.run("document.querySelector('.jp-Dialog .jp-mod-accept').click()")
            plugins = browser.run("return ['formgrader', 'create-assignment', 'assignment-list', 'validate-assignment']"
                                  ".map(p => window.jupyterapp.hasPlugin('@jupyter/nbgrader:' + p))")
            tabs = browser.run("return [...document.querySelectorAll('.lm-TabBar-tab')].map(t => t.title || t.textContent)")
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        log.close()
    assert opened_modified is False, "JupyterLab changed the notebook on opening it: see coursekit.tools.release.kernel_metadata"
    source, error = validation["pres"][:2]  # (the first failed cell's: ps1's linear_visible)
    assert validation["failed"] and source["text"].startswith("# Visible tests for Linear"), validation
    assert error["text"].startswith("TestFailure: Linear.grad_biases is wrong"), validation
    assert error["bottom"] <= validation["bottom"], f"the message is out of sight below the cell's source: {validation}"
    lines = [line for line in failure["text"].splitlines() if line.strip()]
    assert lines[0].startswith("TestFailure: Linear.grad_biases is wrong"), lines
    assert "divided by N" in " ".join(lines) and len(lines) <= 4, lines  # the hint, and no traceback
    assert not any("gradcheck" in line or "Traceback" in line or "----" in line for line in lines), lines
    assert 0 <= failure["top"] and failure["bottom"] <= failure["height"] and not failure["wide"], failure
    assert plugins == [False, False, True, True], "instructor extensions off, the students' own on"
    assert not any("Create Assignment" in tab for tab in tabs), tabs
    if os.environ.get("COURSEKIT_SCREENSHOTS"):  # to look at it: COURSEKIT_SCREENSHOTS=<folder>
        for name in ("jupyterlab.png", "validate.png"):
            shutil.copy(tmp_path / name, os.environ["COURSEKIT_SCREENSHOTS"])
