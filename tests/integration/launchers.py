"""Run a server launcher's command line (``python -m tradeflow.infra.<name> up``) in a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def launcher_up(module: str, data_dir: Path, state_file: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``python -m <module> up --data-dir <data_dir>`` with its stdout readable as text.

    A launcher the test left running is stopped on the way out: SIGTERM (a clean stop of
    its servers), then SIGKILL after 60 s. Then any JVM its ``state_file`` (in
    ``data_dir``) still names as running (``pid``, or each of ``pids``) is killed: they
    run in their own sessions and would outlive a failed run.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _kill_leftover_jvms(data_dir / state_file)


def _kill_leftover_jvms(state_file: Path) -> None:
    """SIGKILL the JVMs a launcher's state file names (``pid``, ``pids``), if any."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    pids = list((state.get("pids") or {}).values()) + ([state["pid"]] if state.get("pid") else [])
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
