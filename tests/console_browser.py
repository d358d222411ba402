"""Start ``tradeflow console`` as a process and drive it with Debian's chromium (Selenium).

Shared by the console's browser test (tests/flows/test_console.py) and its bench
(bench/console.py). Chromium and its driver are the Debian packages ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them); ``TRADEFLOW_CHROMIUM`` and
``TRADEFLOW_CHROMEDRIVER`` may name other binaries. Without them ``chrome()`` raises
``BrowserMissing``: the test fails with it, it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tradeflow.pipeline import listen_port

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed."""


def chrome(width: int = 1600, height: int = 1400) -> WebDriver:
    """Return a headless Chromium driven by the Debian chromedriver."""
    binary = shutil.which(os.environ.get("TRADEFLOW_CHROMIUM", "chromium"))
    driver = shutil.which(os.environ.get("TRADEFLOW_CHROMEDRIVER", "chromedriver"))
    if not binary or not driver:
        raise BrowserMissing(
            "the console's browser test needs Debian's chromium and chromium-driver: "
            "apt-get install -y chromium chromium-driver (or set TRADEFLOW_CHROMIUM / TRADEFLOW_CHROMEDRIVER)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class ConsoleServer:
    """``python -m tradeflow console`` on a free port of 127.0.0.1, stopped by ``stop``."""

    def __init__(self, data_dir: Path, metrics: list[str], log: Path, *, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.port = port or listen_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "tradeflow", "console", "--data-dir", str(data_dir),
               "--port", str(self.port)]
        if metrics:
            cmd += ["--metrics", *metrics]
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, cwd=ROOT, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.token: str = wait_for("the console's token line", self._token, 60)
        wait_for("the console to answer", self._answers, 60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "a") as out:
            for line in self.proc.stdout:
                self.lines.append(line)
                out.write(line)
                out.flush()

    def _token(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the console exited with {self.proc.returncode}: {''.join(self.lines)}")
        for line in self.lines:
            if line.startswith("control token: "):
                return line.split(": ", 1)[1].strip()
        return None

    def _answers(self) -> bool:
        try:
            self.state()
        except (urllib.error.URLError, OSError):
            return False
        return True

    def state(self) -> dict[str, Any]:
        """Return the console's whole view (``GET /api/state``)."""
        with urllib.request.urlopen(f"{self.url}/api/state", timeout=5) as resp:  # noqa: S310 - ours
            body: dict[str, Any] = json.loads(resp.read())
            return body

    def post_control(self, body: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST a control change; return the status and the JSON answer."""
        req = urllib.request.Request(  # noqa: S310 - our own console on 127.0.0.1
            f"{self.url}/api/control", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def stop(self) -> None:
        """Stop the console (SIGINT, then SIGKILL)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(5)
