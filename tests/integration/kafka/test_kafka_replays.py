"""A job SIGKILLed on Kafka and resumed writes what it replays once (connectors/replays.py).

Job B follows sma_wide rows written while it runs (so however fast it is, it cannot
finish first), with a snapshot every 5 seconds, and is killed once two thirds of its
signals are out: the resumed run emits again what
it had emitted since its last snapshot. (With a snapshot every second, a loaded CI
machine once killed the job just after a snapshot with no signal written since, and
the control below found no copies to see.) Kafka keeps whatever it is sent; the sink reads
back the ids trade_signals ends with when it starts, so every signal id is in the
topic once. With the window at 0 (the filter off) the same run leaves copies, which
is what makes this test able to fail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from schemas import Sizing, StrategyConfig, TradeSignal
from tests.helpers import feed_paced, indicator_rows, read_all
from tests.integration.kafka.profiles import kafka_env, kafka_settings
from tests.integration.profiles import feed, read_stream
from tests.recovery.procs import init_recovery, kill_when, run, start
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.recovery

ROWS = 60_000
FLOW = ["-m", "bytewax.run", "flows.strategy:build_flow('sma_cross')"]


def killed_and_resumed(broker: KafkaBroker, tmp_path: Path, window: int) -> tuple[list[TradeSignal], int]:
    """Run Job B with a kill; return the signals the topic holds and the ids of a clean run."""
    tmp_path.mkdir(parents=True)
    config = StrategyConfig(
        strategy_id="sma_cross", strategy="sma_cross", params={"fast": 5, "slow": 20}, account="A1",
        sizing=Sizing.FIXED_NOTIONAL, notional=Decimal(10_000), max_position=Decimal(80),
        ts=datetime(2026, 1, 5, tzinfo=UTC),
    )
    rows = indicator_rows(SyntheticMarket(symbols=40, ticks=ROWS, seed=21), validate=False)

    # The uninterrupted reference run, on topics of its own.
    ref = kafka_settings(broker, tmp_path / "ref", replay_window=window)
    feed(ref, {"strategy_config": [config], "sma_wide": rows})
    run(FLOW, kafka_env(ref, TRADEFLOW_REPLAY_WINDOW=str(window)), tmp_path / "ref.log")
    want = {s.signal_id for s in read_stream(ref, "trade_signals")}  # type: ignore[attr-defined]
    assert len(want) > 500

    settings = kafka_settings(broker, tmp_path / "data", replay_window=window)
    conn = Connectors(settings)
    feed(settings, {"strategy_config": [config]})
    env = kafka_env(settings, TRADEFLOW_REPLAY_WINDOW=str(window))
    rec = tmp_path / "recovery"
    init_recovery(rec, env, tmp_path / "flow.log")
    cmd = [*FLOW, "-r", str(rec), "-s", "5", "-b", "0"]
    # The rows arrive while the flow follows them live (about six seconds), so it cannot
    # finish before the kill. The resumed run is a bounded one: it stops at their end.
    errors: list[BaseException] = []
    feeder = feed_paced(settings, "sma_wide", rows, errors)
    proc = start(cmd, dict(env, TRADEFLOW_FOLLOW="true"), tmp_path / "flow.log")
    kill_when(proc, lambda: conn.size("trade_signals") > len(want) * 2 // 3, timeout=180)
    assert conn.size("trade_signals") < len(want), "the flow finished before the kill"
    feeder.join(120)
    assert not errors, errors
    run(cmd, env, tmp_path / "flow.log")
    sigs = [s for s in read_all(conn, "trade_signals") if isinstance(s, TradeSignal)]
    assert {s.signal_id for s in sigs} == want
    return sigs, len(want)


def test_a_resumed_strategy_flow_writes_each_signal_id_once(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    sigs, distinct = killed_and_resumed(kafka_broker, tmp_path / "filtered", window=10_000)
    assert len(sigs) == distinct


def test_without_the_window_the_replay_leaves_copies(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    """The control: the same run with the filter off writes the replayed signals again."""
    sigs, distinct = killed_and_resumed(kafka_broker, tmp_path / "unfiltered", window=0)
    assert len(sigs) > distinct
