"""Jobs B and D (paper venue) on a real Kafka broker write what they write locally;
the whole pipeline runs on Kafka."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from flows import execution, strategy
from schemas import SmaWide, VenueFill
from tests.helpers import sma_rows
from tests.integration.kafka.profiles import kafka_settings, run_on_both
from tests.integration.profiles import assert_same_by_id
from tests.integration.scenarios import execution_inputs, run_whole_pipeline, strategy_inputs
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def test_strategy_flow_on_kafka_matches_local(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    rows = sma_rows(list(SyntheticMarket(symbols=4, ticks=3000, seed=9)))
    runs = run_on_both(
        partial(strategy.build_flow, "sma_cross"), kafka_broker, tmp_path, strategy_inputs(rows),
        ["trade_signals", "dead_letters"],
    )
    assert len(runs.local["trade_signals"]) > 20
    assert_same_by_id(runs, "trade_signals", lambda r: r.signal_id)  # type: ignore[attr-defined]
    assert runs.kafka["dead_letters"] == []
    assert all(isinstance(r, SmaWide) for r in rows)


def test_execution_flow_on_kafka_matches_local(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    runs = run_on_both(execution.build_flow, kafka_broker, tmp_path, execution_inputs(30), ["venue_fills"])
    local = [f for f in runs.local["venue_fills"] if isinstance(f, VenueFill)]
    assert sum(1 for f in local if f.status.value == "FILLED") == 30
    assert_same_by_id(runs, "venue_fills", lambda r: (r.venue, r.exec_id))  # type: ignore[attr-defined]


def test_whole_pipeline_runs_on_kafka(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data", kafka={"partitions": 2})
    run_whole_pipeline(settings, SyntheticMarket(symbols=4, ticks=2000, seed=5))
