"""Jobs B and D (paper venue) on a real Fluss cluster write what they write locally."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from flows import execution, strategy
from schemas import VenueFill
from tests.helpers import sma_rows
from tests.integration.fluss.profiles import run_on_both
from tests.integration.profiles import assert_same_by_id
from tests.integration.scenarios import execution_inputs, strategy_inputs
from tradeflow.infra.fluss import FlussCluster

pytestmark = pytest.mark.integration


def test_strategy_flow_on_fluss_matches_local(fluss_cluster: FlussCluster, tmp_path: Path) -> None:
    rows = sma_rows(list(SyntheticMarket(symbols=3, ticks=1500, seed=9)))
    runs = run_on_both(
        partial(strategy.build_flow, "sma_cross"), fluss_cluster, tmp_path, strategy_inputs(rows),
        ["trade_signals"],
    )
    assert len(runs.local["trade_signals"]) > 10
    assert_same_by_id(runs, "trade_signals", lambda r: r.signal_id)  # type: ignore[attr-defined]


def test_execution_flow_on_fluss_matches_local(fluss_cluster: FlussCluster, tmp_path: Path) -> None:
    runs = run_on_both(execution.build_flow, fluss_cluster, tmp_path, execution_inputs(20), ["venue_fills"])
    local = [f for f in runs.local["venue_fills"] if isinstance(f, VenueFill)]
    assert sum(1 for f in local if f.status.value == "FILLED") == 20
    assert_same_by_id(runs, "venue_fills", lambda r: (r.venue, r.exec_id))  # type: ignore[attr-defined]
