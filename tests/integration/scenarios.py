"""Scenarios the kafka and the fluss tests both run.

Job A compared with a run on the embedded store: the same input once, SIGKILLed mid-stream
and resumed from its Bytewax snapshots, and running through a restart of the server
(broker, tablet server) while its input is still being written; malformed market data
ending in dead_letters. The inputs of the Job B and Job D equality tests, and the whole
pipeline on a server profile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from connectors.feeds import SyntheticMarket
from connectors.kafka import recovery_positions
from connectors.registry import Connectors
from connectors.settings import Settings
from flows.indicators import build_flow
from schemas import (
    DeadLetter,
    ExecStatus,
    MarketData,
    OrderAction,
    Record,
    RiskDecision,
    SmaWide,
    StrategyConfig,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    encode,
)
from tests.flows.test_indicators_flow import BAD_PAYLOADS
from tests.helpers import feed_paced
from tests.integration.profiles import (
    ProfileRuns,
    assert_same_by_id,
    by_id,
    feed,
    local_settings,
    read_stream,
    run_flow,
)
from tests.recovery.procs import init_recovery, kill_when, run, start
from tradeflow.pipeline import run_pipeline

JOB_A = ["-m", "bytewax.run", "flows.indicators:build_flow()"]
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def row_id(rec: Record) -> tuple[str, int]:
    assert isinstance(rec, SmaWide)
    return (rec.symbol, rec.seq)


def job_a_matches_local(
    run_on_both: Callable[..., ProfileRuns], server: object, tmp_path: Path, workers: int
) -> ProfileRuns:
    """Run Job A on a server profile and on the embedded store with the same ticks.

    Both write the same rows and no dead letters. ``run_on_both`` is the server profile's.
    """
    ticks = list(SyntheticMarket(symbols=7, ticks=3000, seed=3))
    outputs = ["sma_wide", "dead_letters"]
    runs = run_on_both(build_flow, server, tmp_path, {"market_data": ticks}, outputs, workers=workers)
    assert len(runs.remote["sma_wide"]) == len(ticks)
    assert_same_by_id(runs, "sma_wide", row_id)
    assert runs.remote["dead_letters"] == runs.local["dead_letters"] == []
    return runs


def reference_rows(tmp_path: Path, ticks: list[MarketData]) -> dict[object, Record]:
    """Job A's rows for ``ticks`` on the embedded store (an uninterrupted run)."""
    settings = local_settings(tmp_path / "reference")
    feed(settings, {"market_data": ticks})
    run_flow(build_flow, settings)
    return by_id(read_stream(settings, "sma_wide"), row_id)


def progress(settings: Settings, stream: str) -> Callable[[], int]:
    """Return a cheap counter of a stream's records (one reader kept open)."""
    reader = Connectors(settings).reader(stream)

    def count() -> int:
        return sum(reader.end_offsets().values())

    return count


def snapshotted(rec: Path) -> bool:
    """Tell whether the recovery store holds a source snapshot past offset 0."""
    return any(p.offset > 0 for p in recovery_positions(rec))


@dataclass(frozen=True)
class KilledRun:
    """Job A after a SIGKILL mid-stream and a resumed run to the end."""

    settings: Settings
    env: dict[str, str]
    recovery: Path
    cmd: list[str]
    log: Path
    rows: list[Record]

    def assert_a_run_after_the_end_writes_nothing(self) -> None:
        """A bounded run resumed after the end stops at once and writes nothing more."""
        run(self.cmd, self.env, self.log)
        assert len(read_stream(self.settings, "sma_wide")) == len(self.rows)


def job_a_market(ticks: int, seed: int) -> list[MarketData]:
    """Return the ticks of Job A's server scenarios: 12 symbols, enough to fill every partition."""
    return list(SyntheticMarket(symbols=12, ticks=ticks, seed=seed))


def kill_and_resume(
    settings: Settings, env: dict[str, str], tmp_path: Path, *, seed: int, ticks: int = 60_000
) -> KilledRun:
    """SIGKILL Job A once a snapshot recorded progress, resume it; check nothing was lost.

    The input is ``job_a_market(ticks, seed)``.
    """
    market = job_a_market(ticks, seed)
    want = reference_rows(tmp_path, market)
    rec = tmp_path / "recovery"
    log = tmp_path / "flow.log"
    init_recovery(rec, env, log)
    cmd = [*JOB_A, "-r", str(rec), "-s", "1", "-b", "0"]
    written = progress(settings, "sma_wide")
    # The input arrives while the flow runs (several seconds), so the flow cannot finish
    # before the kill, which comes once a snapshot (every second) has recorded progress.
    errors: list[BaseException] = []
    feeder = feed_paced(settings, "market_data", market, errors)
    proc = start(cmd, env, log)
    kill_when(proc, lambda: snapshotted(rec), timeout=180)
    killed_at = written()
    assert 0 < killed_at < len(market)
    feeder.join(120)
    assert not errors, errors
    run(cmd, env, log)

    rows = read_stream(settings, "sma_wide")
    assert by_id(rows, row_id) == want  # nothing lost, replayed rows identical
    assert len(rows) - len(want) < killed_at  # duplicates only from the replayed interval
    assert read_stream(settings, "dead_letters") == []
    return KilledRun(settings, env, rec, cmd, log, rows)


def run_through_a_restart(
    settings: Settings,
    env: dict[str, str],
    tmp_path: Path,
    restart: Callable[[], None],
    *,
    seed: int,
    ticks: int = 60_000,
) -> None:
    """Run Job A while ``restart`` restarts the server mid-stream; check the rows.

    The input is ``job_a_market(ticks, seed)``.
    """
    market = job_a_market(ticks, seed)
    want = reference_rows(tmp_path, market)
    half = len(market) // 2
    feed(settings, {"market_data": market[:half]}, close=False)

    log = tmp_path / "flow.log"
    written = progress(settings, "sma_wide")
    proc = start(JOB_A, env | {"PYTHONFAULTHANDLER": "1"}, log)  # a native crash leaves its trace
    feed_error: list[BaseException] = []
    feeder: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 120
        while written() < len(market) // 5:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the flow made no progress"
            time.sleep(0.05)
        # The second half is written while the server restarts (a writer rides it out
        # too); the stream is closed only after it, so the flow is mid-stream here.
        feeder = feed_paced(settings, "market_data", market[half:], feed_error)
        restart()
        rc = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert feeder is not None
    feeder.join(120)
    assert not feed_error, feed_error
    assert rc == 0, f"Job A exited {rc} (negative: killed by that signal):\n{log.read_text()[-3000:]}"

    rows = read_stream(settings, "sma_wide")
    assert by_id(rows, row_id) == want
    # The idempotent writer's retries across the restart duplicate nothing.
    assert len(rows) == len(want)


def malformed_market_data() -> list[bytes]:
    """Return three good ticks of X, encoded, with every ``BAD_PAYLOADS`` entry after the first."""
    good = [MarketData(symbol="X", ts=T0.replace(second=i), price=10 + i, volume=5) for i in range(3)]
    return [encode(good[0]), *BAD_PAYLOADS, *(encode(g) for g in good[1:])]


def assert_job_a_letters_point_back(settings: Settings, placed: Mapping[bytes, tuple[int, int]]) -> None:
    """Run Job A over ``malformed_market_data()``: three rows, one dead letter per bad payload.

    Each letter names the (partition, offset) ``placed`` says its payload was written at.
    """
    run_flow(build_flow, settings)
    assert [r.price for r in read_stream(settings, "sma_wide")] == [10.0, 11.0, 12.0]  # type: ignore[attr-defined]
    letters = read_stream(settings, "dead_letters")
    assert len(letters) == len(BAD_PAYLOADS)
    for letter in letters:
        assert isinstance(letter, DeadLetter)
        assert letter.source_stream == "market_data"
        assert letter.job == "indicators"
        assert (letter.partition, letter.offset) == placed[letter.payload.encode()]


def strategy_inputs(rows: list[SmaWide]) -> dict[str, list[Record]]:
    """Job B's inputs: one sma_cross config (fast 5, slow 20) on ACC1 and the rows."""
    config = StrategyConfig(
        strategy_id="sma_cross", strategy="sma_cross", params={"fast": 5, "slow": 20},
        account="ACC1", qty=Decimal(10), ts=T0,
    )
    return {"strategy_config": [config], "control": [], "sma_wide": list(rows)}


def execution_inputs(orders: int) -> dict[str, list[Record]]:
    """Job D's inputs: ``orders`` market orders over 3 symbols and ticks that fill them all."""
    validated: list[Record] = [
        ValidatedOrder(order_id=f"O{i}", account="A", symbol=f"S{i % 3}", side="BUY" if i % 2 else "SELL",
                       qty=Decimal(5 + i), ts=T0)
        for i in range(orders)
    ]
    ticks: list[Record] = [
        MarketData(symbol=f"S{i % 3}", ts=T0 + timedelta(seconds=1 + i), price=Decimal(100 + i), volume=1000)
        for i in range(9)
    ]
    return {"validated_orders": validated, "control": [], "market_data": ticks}


def run_whole_pipeline(settings: Settings, market: SyntheticMarket) -> None:
    """Run the pipeline (A, B x2, C, D paper) over ``market``; check what went through it."""
    counts = run_pipeline(settings, iter(market), market.ticks, market.symbol_names(), progress=False)
    assert counts.ticks == counts.rows == market.ticks
    signals = [s for s in read_stream(settings, "trade_signals") if isinstance(s, TradeSignal)]
    decisions = [d for d in read_stream(settings, "risk_decisions") if isinstance(d, RiskDecision)]
    assert signals
    assert sorted(d.signal_id for d in decisions) == sorted(s.signal_id for s in signals)
    # Every order that passed reached the venue once and was answered. (How many pass
    # depends on arrival order at start-up: a signal that overtakes its symbol's first
    # tick fails PRICE_COLLAR for want of a mark.)
    passed = {d.order_id for d in decisions if d.order_id}
    orders = {
        o.order_id
        for o in read_stream(settings, "validated_orders")
        if isinstance(o, ValidatedOrder) and o.action is OrderAction.NEW
    }
    assert orders == passed
    fills = [f for f in read_stream(settings, "venue_fills") if isinstance(f, VenueFill)]
    assert {f.order_id for f in fills if f.status in (ExecStatus.NEW, ExecStatus.REJECTED)} == orders
    assert counts.fills == sum(1 for f in fills if f.last_qty > 0)
