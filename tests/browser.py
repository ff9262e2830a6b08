"""A headless Chromium driven through Debian's chromedriver (the W3C WebDriver protocol over
HTTP, so no Python package is needed), for tests that look at pages as students and TAs do."""
import base64
import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url, timeout=60):
    """Wait until ``url`` answers (any HTTP status); raise TimeoutError if it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


class Browser:
    """One WebDriver session: ``open(url)``, ``run(script)`` (JavaScript, its return value),
    ``wait_for(script)`` and ``screenshot(path)``."""

    def __init__(self, driver_url, session):
        self.url = f"{driver_url}/session/{session}"

    def _call(self, method, path, body=None):
        request = urllib.request.Request(self.url + path, method=method, data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as reply:
            return json.load(reply)["value"]

    def open(self, url):
        self._call("POST", "/url", {"url": url})

    def run(self, script, *args):
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script, timeout=90):
        """Run ``script`` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.run(script)
            if value:
                return value
            time.sleep(0.3)
        raise TimeoutError(f"waited {timeout} s for: {script[:200]}")

    def click(self, script, timeout=90):
        """Click, as a user does, the element that ``script`` returns (waiting until it returns one)."""
        element = self.wait_for(script, timeout)
        (element_id,) = element.values()
        self._call("POST", f"/element/{element_id}/click")

    def type(self, script, text, timeout=90):
        """Type ``text`` into the element that ``script`` returns, as a user does."""
        element = self.wait_for(script, timeout)
        (element_id,) = element.values()
        self._call("POST", f"/element/{element_id}/value", {"text": text})

    def screenshot(self, path):
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))


@contextlib.contextmanager
def chromium(width=1200, height=900):
    """A Browser, or pytest.skip if Debian's chromium and chromium-driver are not installed."""
    import pytest

    driver, binary = shutil.which("chromedriver"), shutil.which("chromium")
    if driver is None or binary is None:
        pytest.skip("chromium and chromium-driver are not installed (make test installs them where it runs as root)")
    port = free_port()
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{driver_url}/status")
        options = {"binary": binary, "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                              f"--window-size={width},{height}"]}
        request = urllib.request.Request(f"{driver_url}/session", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}).encode())
        with urllib.request.urlopen(request, timeout=120) as reply:
            session = json.load(reply)["value"]["sessionId"]
        browser = Browser(driver_url, session)
        try:
            yield browser
        finally:
            with contextlib.suppress(OSError):
                browser._call("DELETE", "")
    finally:
        process.terminate()
        process.wait(timeout=10)
