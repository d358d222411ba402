"""Jobs B and D (paper venue) on a real Kafka broker write what they write locally;
the whole pipeline runs on Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from flows import execution, strategy
from schemas import MarketData, SmaWide, StrategyConfig, ValidatedOrder, VenueFill
from tests.helpers import sma_rows
from tests.integration.kafka.profiles import assert_same_by_id, kafka_settings, read_stream, run_on_both
from tradeflow.infra.kafka import KafkaBroker
from tradeflow.pipeline import run_pipeline

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_strategy_flow_on_kafka_matches_local(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    rows = sma_rows(list(SyntheticMarket(symbols=4, ticks=3000, seed=9)))
    config = StrategyConfig(
        strategy_id="sma_cross", strategy="sma_cross", params={"fast": 5, "slow": 20},
        account="ACC1", qty=Decimal(10), ts=T0,
    )
    runs = run_on_both(
        partial(strategy.build_flow, "sma_cross"), kafka_broker, tmp_path,
        {"strategy_config": [config], "control": [], "sma_wide": rows},
        ["trade_signals", "dead_letters"],
    )
    assert len(runs.local["trade_signals"]) > 20
    assert_same_by_id(runs, "trade_signals", lambda r: r.signal_id)  # type: ignore[attr-defined]
    assert runs.kafka["dead_letters"] == []
    assert all(isinstance(r, SmaWide) for r in rows)


def test_execution_flow_on_kafka_matches_local(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    orders = [
        ValidatedOrder(order_id=f"O{i}", account="A", symbol=f"S{i % 3}", side="BUY" if i % 2 else "SELL",
                       qty=Decimal(5 + i), ts=T0)
        for i in range(30)
    ]
    ticks = [
        MarketData(symbol=f"S{i % 3}", ts=T0 + timedelta(seconds=1 + i), price=Decimal(100 + i), volume=1000)
        for i in range(9)
    ]
    runs = run_on_both(
        execution.build_flow, kafka_broker, tmp_path,
        {"validated_orders": orders, "control": [], "market_data": ticks},
        ["venue_fills"],
    )
    local = [f for f in runs.local["venue_fills"] if isinstance(f, VenueFill)]
    assert sum(1 for f in local if f.status.value == "FILLED") == 30
    assert_same_by_id(runs, "venue_fills", lambda r: (r.venue, r.exec_id))  # type: ignore[attr-defined]


def test_whole_pipeline_runs_on_kafka(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data", kafka={"partitions": 2})
    market = SyntheticMarket(symbols=4, ticks=2000, seed=5)
    counts = run_pipeline(settings, iter(market), 2000, market.symbol_names(), progress=False)
    assert counts.ticks == counts.rows == 2000
    signals = read_stream(settings, "trade_signals")
    decisions = read_stream(settings, "risk_decisions")
    assert len(signals) > 0
    assert sorted(d.signal_id for d in decisions) == sorted(s.signal_id for s in signals)  # type: ignore[attr-defined]
    # Every order that passed reached the venue once and was answered (how many pass
    # depends on arrival order at start-up; see tests/integration/fluss/test_fluss_pipeline.py).
    passed = {d.order_id for d in decisions if d.order_id}  # type: ignore[attr-defined]
    orders = {o.order_id for o in read_stream(settings, "validated_orders") if o.action.value == "NEW"}  # type: ignore[attr-defined]
    assert orders == passed
    fills = read_stream(settings, "venue_fills")
    assert {f.order_id for f in fills if f.status.value in ("NEW", "REJECTED")} == orders  # type: ignore[attr-defined]
    assert counts.fills == sum(1 for f in fills if f.last_qty > 0)  # type: ignore[attr-defined]
