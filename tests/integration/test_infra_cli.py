"""`tradeflow infra up|status|down` starts real servers in the background and stops them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tradeflow.infra.common import port_open
from tradeflow.infra.manage import InfraState, load_state

pytestmark = pytest.mark.integration


def tradeflow(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tradeflow", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@contextmanager
def infra_up(root: Path, *options: str) -> Iterator[tuple[str, InfraState]]:
    """Run ``tradeflow infra up --dir root *options``; yield what it printed and its saved state.

    ``tradeflow infra down`` runs on the way out, also when the test (or the ``up``) failed.
    """
    try:
        out = tradeflow("infra", "up", "--dir", str(root), *options)
        yield out, load_state(root)
    finally:
        tradeflow("infra", "down", "--dir", str(root))


def test_infra_up_status_down_for_kafka_and_the_fix_venue(tmp_path: Path) -> None:
    root = tmp_path / "infra"
    with infra_up(root, "--only", "kafka,fix") as (out, state):
        assert "export TRADEFLOW_KAFKA__BOOTSTRAP=127.0.0.1:" in out
        assert port_open(state.ports["kafka"])
        assert port_open(state.ports["fix"])
        assert tradeflow("infra", "status", "--dir", str(root)).split() == ["fix", "up", "kafka", "up"]
    assert not port_open(state.ports["kafka"])
    assert not port_open(state.ports["fix"])
    assert "(none)" in tradeflow("infra", "status", "--dir", str(root))


def test_infra_up_secure_kafka_prints_the_admin_principal_and_each_jobs(tmp_path: Path) -> None:
    with infra_up(tmp_path / "infra", "--only", "kafka", "--secure") as (out, state):
        assert "export TRADEFLOW_KAFKA__SASL_USERNAME=admin" in out
        assert "export TRADEFLOW_KAFKA__SSL_CA_LOCATION=" in out
        assert "# job strategy: TRADEFLOW_KAFKA__SASL_USERNAME=job-strategy" in out
        password_file = Path(out.split("TRADEFLOW_KAFKA__SASL_PASSWORD_FILE=")[1].split()[0])
        assert password_file.stat().st_mode & 0o077 == 0  # readable by its owner only
        assert password_file.read_text() not in out  # files, never the secrets themselves
        assert port_open(state.ports["kafka"])
    assert not port_open(state.ports["kafka"])
