"""Start project commands as real processes, kill them, and wait for progress."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TRADEFLOW_DATA_DIR"] = str(data_dir)
    env["TRADEFLOW_PROFILE"] = "local"
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def run(args: list[str], env: dict[str, str], log: Path, timeout: float = 300) -> None:
    proc = start(args, env, log)
    rc = proc.wait(timeout)
    assert rc == 0, f"{args} exited {rc}:\n{log.read_text()[-3000:]}"


def kill_when(proc: subprocess.Popen[bytes], cond: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``cond()`` holds (fail if it exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "process finished before it could be killed"
        if cond():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("condition to kill never held")


def init_recovery(recovery_dir: Path, env: dict[str, str], log: Path, partitions: int = 1) -> None:
    recovery_dir.mkdir(parents=True, exist_ok=True)
    run(["-m", "bytewax.recovery", str(recovery_dir), str(partitions)], env, log)


def snapshot_committed(recovery_dir: Path) -> bool:
    """Tell whether the flow's latest run has committed a snapshot past the epoch it began at.

    A restart then resumes after what that run did first, so it replays less than the run
    wrote. Reads Bytewax's recovery partitions (``exs``: each run's resume epoch;
    ``commits``: the epoch a restart would resume from).
    """
    began, committed = 0, 0
    for part in sorted(recovery_dir.glob("part-*.sqlite3")):
        with closing(sqlite3.connect(f"{part.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as db:
            (resume,) = db.execute("SELECT MAX(resume_epoch) FROM exs").fetchone()
            (commit,) = db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()
        began, committed = max(began, resume or 0), max(committed, commit or 0)
    return committed > began > 0
