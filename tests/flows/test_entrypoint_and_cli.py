"""The container entrypoint and the tradeflow command, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket, replay
from connectors.registry import Connectors
from connectors.settings import load_settings
from tests.helpers import read_all
from tradeflow.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_entrypoint_runs_the_flow_named_by_env_outside_docker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    conn = Connectors(load_settings(data_dir=data))
    replay(SyntheticMarket(symbols=3, ticks=500), conn.writer("market_data"), progress=False)
    env = dict(
        os.environ,
        TRADEFLOW_FLOW="flows.indicators:build_flow()",
        TRADEFLOW_DATA_DIR=str(data),
        TRADEFLOW_PYTHON=sys.executable,
        BYTEWAX_RECOVERY_DIRECTORY=str(tmp_path / "recovery"),
        BYTEWAX_SNAPSHOT_INTERVAL="5",
        BYTEWAX_RECOVERY_BACKUP_INTERVAL="0",
    )
    proc = subprocess.run(
        ["sh", str(ROOT / "deploy" / "entrypoint.sh")], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(read_all(conn, "sma_wide")) == 500
    assert (tmp_path / "recovery" / "part-0.sqlite3").exists()


def test_demo_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["demo", "--ticks", "2000", "--symbols", "4", "--speed", "0", "--data-dir", str(tmp_path), "--quiet"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "2,000" in out
    assert "signals sma_cross" in out
    assert "ACC-SMA" in out


def test_show_on_a_log_stream_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["show", "sma_wide", "--data-dir", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


def test_indicators_command_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["indicators", "--input", str(tmp_path / "nope.csv"), "--output", "-"])
    assert rc == 2
    assert "no such file" in capsys.readouterr().err


def test_tail_prints_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = Connectors(load_settings(data_dir=tmp_path))
    replay(SyntheticMarket(symbols=2, ticks=10), conn.writer("market_data"), progress=False)
    assert main(["tail", "market_data", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10
    assert '"symbol": "SYM00' in lines[0]
