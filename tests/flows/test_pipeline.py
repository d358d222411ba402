"""The whole pipeline as separate processes (A, B x2, C, D paper) on the embedded store."""

from __future__ import annotations

import io
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from schemas import (
    ExecStatus,
    OrderAction,
    PositionState,
    RiskDecision,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    decode,
)
from tests.helpers import read_all
from tradeflow.pipeline import print_summary, run_pipeline


def test_pipeline_runs_end_to_end_and_positions_reconcile_with_fills(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    market = SyntheticMarket(symbols=4, ticks=3000, seed=5)
    counts = run_pipeline(settings, iter(market), 3000, market.symbol_names(), speed=None, progress=False)
    conn = Connectors(settings)

    assert counts.ticks == counts.rows == 3000
    signals = [s for s in read_all(conn, "trade_signals") if isinstance(s, TradeSignal)]
    assert {s.strategy_id for s in signals} == {"sma_cross", "rsi_reversion"}
    decisions = [d for d in read_all(conn, "risk_decisions") if isinstance(d, RiskDecision)]
    assert sorted(d.signal_id for d in decisions) == sorted(s.signal_id for s in signals)

    orders = [o for o in read_all(conn, "validated_orders") if isinstance(o, ValidatedOrder)]
    news = {o.order_id for o in orders if o.action is OrderAction.NEW}
    assert news == {d.order_id for d in decisions if d.order_id}
    fills = [f for f in read_all(conn, "venue_fills") if isinstance(f, VenueFill)]
    answered = {f.order_id for f in fills if f.status in (ExecStatus.NEW, ExecStatus.REJECTED)}
    assert answered == news  # every order reached the venue exactly once and was answered
    assert len({(f.venue, f.exec_id) for f in fills}) == len(fills)

    # positions_state agrees with the fills replayed through plain arithmetic
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for f in fills:
        net[(f.account, f.symbol)] += f.last_qty * f.side.sign
    reader = conn.reader("positions_state")
    table = {key: decode(PositionState, raw) for key, raw in reader.scan_latest()}
    assert {k: v for k, v in net.items() if v} == {
        (p.account, p.symbol): p.net_qty for p in table.values() if p.net_qty
    }
    out = io.StringIO()
    print_summary(counts, out)
    assert "ACC-SMA" in out.getvalue()


def test_a_warm_up_is_caught_up_on_before_the_rest_is_fed(tmp_path: Path) -> None:
    from datetime import timedelta

    from schemas import SmaWide

    settings = load_settings(data_dir=tmp_path / "data")
    market = list(SyntheticMarket(symbols=4, ticks=1200, seed=7))
    speed = (market[-1].ts - market[0].ts).total_seconds() / 1.5  # the 1,200 ticks in about 1.5 s
    symbols = sorted({t.symbol for t in market})
    counts = run_pipeline(settings, iter(market), 1200, symbols, speed=speed, progress=False, warmup=400)
    assert counts.ticks == counts.rows == 1200
    warmed = counts.warmed_at
    assert warmed is not None
    conn = Connectors(settings)
    entered = [(rec.written_at, row.entered_at) for rec in conn.scan("sma_wide")
               if (row := decode(SmaWide, rec.value)).entered_at is not None]
    before = [written for written, at in entered if at < warmed]
    assert len(before) == 400  # the warm-up: every tick of it entered before the pipeline caught up
    assert len(entered) - len(before) == 800
    # and the warm-up's rows were all written by then: the jobs had caught up on it
    assert max(t for t in before if t is not None) <= warmed + timedelta(milliseconds=1)
    decisions = [d for d in read_all(conn, "risk_decisions") if isinstance(d, RiskDecision)]
    signals = [s for s in read_all(conn, "trade_signals") if isinstance(s, TradeSignal)]
    assert len(decisions) == len(signals)
