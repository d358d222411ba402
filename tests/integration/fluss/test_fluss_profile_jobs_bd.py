"""Jobs B and D (paper venue) on a real Fluss cluster write what they write locally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from flows import execution, strategy
from schemas import MarketData, StrategyConfig, ValidatedOrder, VenueFill
from tests.helpers import sma_rows
from tests.integration.fluss.profiles import assert_same_by_id, run_on_both
from tradeflow.infra.fluss import FlussCluster

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_strategy_flow_on_fluss_matches_local(fluss_cluster: FlussCluster, tmp_path: Path) -> None:
    rows = sma_rows(list(SyntheticMarket(symbols=3, ticks=1500, seed=9)))
    config = StrategyConfig(
        strategy_id="sma_cross", strategy="sma_cross", params={"fast": 5, "slow": 20},
        account="ACC1", qty=Decimal(10), ts=T0,
    )
    runs = run_on_both(
        partial(strategy.build_flow, "sma_cross"), fluss_cluster, tmp_path,
        {"strategy_config": [config], "control": [], "sma_wide": rows},
        ["trade_signals"],
    )
    assert len(runs.local["trade_signals"]) > 10
    assert_same_by_id(runs, "trade_signals", lambda r: r.signal_id)  # type: ignore[attr-defined]


def test_execution_flow_on_fluss_matches_local(fluss_cluster: FlussCluster, tmp_path: Path) -> None:
    orders = [
        ValidatedOrder(order_id=f"O{i}", account="A", symbol=f"S{i % 3}", side="BUY" if i % 2 else "SELL",
                       qty=Decimal(5 + i), ts=T0)
        for i in range(20)
    ]
    ticks = [
        MarketData(symbol=f"S{i % 3}", ts=T0 + timedelta(seconds=1 + i), price=Decimal(100 + i), volume=1000)
        for i in range(9)
    ]
    runs = run_on_both(
        execution.build_flow, fluss_cluster, tmp_path,
        {"validated_orders": orders, "control": [], "market_data": ticks},
        ["venue_fills"],
    )
    local = [f for f in runs.local["venue_fills"] if isinstance(f, VenueFill)]
    assert sum(1 for f in local if f.status.value == "FILLED") == 20
    assert_same_by_id(runs, "venue_fills", lambda r: (r.venue, r.exec_id))  # type: ignore[attr-defined]
