"""SIGKILL a strategy flow mid-stream, resume it with recovery, compare with a clean run.

The resumed run must yield exactly the signal ids of an uninterrupted run; signals
written twice (the epoch replayed after the kill) must be identical records. The
config uses notional sizing with a ``max_position`` cap, so the per-symbol state
(rule state and signalled net quantity) must come back from the snapshot right for
the resumed signals to match.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from schemas import Sizing, SmaWide, StrategyConfig, TradeSignal
from tests.helpers import feed_paced, indicator_rows, read_all
from tests.recovery.procs import env_for, init_recovery, kill_when, run, snapshot_committed, start

pytestmark = pytest.mark.recovery

ROWS = 120_000
FLOW = ["-m", "bytewax.run", "flows.strategy:build_flow('sma_cross')"]


def sma_wide_rows(n: int) -> list[SmaWide]:
    """Rows as Job A writes them (its operators, unvalidated construction)."""
    return indicator_rows(SyntheticMarket(symbols=40, ticks=n, seed=21), validate=False)



def test_strategy_flow_killed_mid_stream_resumes_with_the_same_signal_ids(tmp_path: Path) -> None:
    config = StrategyConfig(
        strategy_id="sma_cross",
        strategy="sma_cross",
        params={"fast": 5, "slow": 20},
        account="A1",
        sizing=Sizing.FIXED_NOTIONAL,
        notional=Decimal(10_000),
        max_position=Decimal(80),
        ts=datetime(2026, 1, 5, tzinfo=UTC),
    )
    rows = sma_wide_rows(ROWS)

    # Uninterrupted reference run over the same input, in a data directory of its own.
    ref = Connectors(load_settings(data_dir=tmp_path / "ref"))
    for stream, records in (("strategy_config", [config]), ("sma_wide", rows)):
        writer = ref.writer(stream)
        writer.write(records)
        writer.close()
    run(FLOW, env_for(tmp_path / "ref"), tmp_path / "ref.log")
    want = {s.signal_id: s for s in read_all(ref, "trade_signals")}  # type: ignore[attr-defined]
    assert len(want) > 1000

    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    conn = Connectors(settings)
    writer = conn.writer("strategy_config")
    writer.write([config])
    writer.close()
    env = env_for(data)
    rec = tmp_path / "recovery"
    init_recovery(rec, env, tmp_path / "flow.log")
    cmd = [*FLOW, "-r", str(rec), "-s", "1", "-b", "0"]
    # The rows arrive while the flow runs, following them live (about six seconds), so it
    # cannot finish before the kill, which comes once a snapshot (every second) has been
    # committed. The resumed run is a bounded one: it stops at the end of the rows.
    errors: list[BaseException] = []
    feeder = feed_paced(settings, "sma_wide", rows, errors, per_s=20_000)
    proc = start(cmd, env_for(data, TRADEFLOW_FOLLOW="true"), tmp_path / "flow.log")
    kill_when(proc, lambda: conn.size("trade_signals") > len(want) * 2 // 3 and snapshot_committed(rec))
    killed_at = conn.size("trade_signals")
    assert killed_at < len(want), "the flow finished before the kill"
    feeder.join(120)
    assert not errors, errors
    run(cmd, env, tmp_path / "flow.log")

    got: dict[str, TradeSignal] = {}
    sigs = read_all(conn, "trade_signals")
    for s in sigs:
        assert isinstance(s, TradeSignal)
        if s.signal_id in got:
            assert got[s.signal_id] == s, f"replayed signal {s.signal_id} differs"
        got[s.signal_id] = s
    assert got == want
    # duplicates only from the replayed epoch, never a second full pass
    assert len(sigs) - len(want) < killed_at
