"""Replaying Job C's decisions from its logs vs Job C deciding them, in the same run.

Records a run of the real Job C flow (``bytewax.testing.run_main``, 1 worker, embedded
store, recovery between phases) over generated inputs: accounts with limits, symbol
limits, a synthetic market, signals from two strategies per account; then fills for
the orders it passed and a second batch of signals. Then ``tradeflow.risk_tools.replay``
reads the logs back and re-decides every signal.

- ``flow_decisions_per_s``: decisions / wall time of the flow runs (start-up included,
  once per phase; the start-up of a run over empty inputs is also printed).
- ``replay_decisions_per_s``: decisions / replay time (the logs already read; reading
  them is ``load_s``), and the ratio to the flow.
- ``differences``: replayed decisions that differ from the record (0 expected when
  marks are unambiguous; see docs/risk-audit.md).

Usage: ``python bench/risk_replay.py [--accounts N] [--symbols N] [--ticks N] [--signals N]
[--keep DIR]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import _root  # noqa: F401 - first: puts the repository root on sys.path

from bench.harness import report
from connectors.feeds import SyntheticMarket
from connectors.settings import load_settings
from operators.portfolio import order_id_for
from schemas import (
    Account,
    Decision,
    MarketData,
    RiskDecision,
    SymbolLimit,
    TradeSignal,
    VenueFill,
)
from tests.helpers import Phases, read_all
from tradeflow.risk_tools import load_log, replay


def accounts(n: int, symbols: list[str]) -> tuple[list[Account], list[SymbolLimit]]:
    t0 = SyntheticMarket().start
    rows = [
        Account(account=f"ACC{i:03d}", cash=Decimal(1_000_000), max_order_notional=Decimal(40_000),
                max_gross_exposure=Decimal(1_500_000), max_leverage=Decimal(4), max_open_orders=40,
                max_orders_per_second=50, price_collar_bps=Decimal(500), ts=t0)
        for i in range(n)
    ]
    limits = [SymbolLimit(account=a.account, symbol=s, max_position_qty=Decimal(3000),
                          max_position_notional=Decimal(300_000), ts=t0) for a in rows for s in symbols]
    return rows, limits


def signals(ticks: list[MarketData], accts: list[Account], n: int, seed: int, start: int
            ) -> list[TradeSignal]:
    rng = random.Random(seed)
    out = []
    step = max(1, len(ticks) // n)
    for k in range(n):
        tick = ticks[min(len(ticks) - 1, k * step + rng.randrange(step))]
        acct = accts[rng.randrange(len(accts))].account
        out.append(TradeSignal(
            signal_id=f"bench:{start + k}", strategy_id=rng.choice(["alpha", "beta"]), symbol=tick.symbol,
            account=acct, side=rng.choice(["BUY", "SELL"]), qty=Decimal(rng.choice([10, 50, 100, 200])),
            ts=tick.ts, ref_px=tick.price,
        ))
    return out


def fills(passed: list[TradeSignal]) -> list[VenueFill]:
    out = []
    for s in passed:
        oid = order_id_for(s.account, s.signal_id)
        px = s.ref_px or Decimal(1)
        out.append(VenueFill(order_id=oid, venue="paper", exec_id=f"{oid}-1", status="FILLED",
                             account=s.account, symbol=s.symbol, side=s.side, last_qty=s.qty, last_px=px,
                             cum_qty=s.qty, leaves_qty=Decimal(0), avg_px=px, ts=s.ts + timedelta(seconds=1)))
    return out


def startup_s(work: Path) -> float:
    settings = load_settings(data_dir=work / "empty", partitions=2)
    rec = Phases(settings, work / "empty", epoch=timedelta(seconds=1))
    rec.run()
    return rec.flow_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--signals", type=int, default=6000, help="in total, over two phases")
    parser.add_argument("--keep", type=Path, help="record into this new directory and keep it "
                        "(then: tradeflow risk replay --data-dir DIR/data)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-risk-replay-"))
    try:
        (work / "empty").mkdir()
        startup = startup_s(work)
        settings = load_settings(data_dir=work / "data", partitions=2)
        rec = Phases(settings, work, epoch=timedelta(seconds=1))
        market = SyntheticMarket(symbols=args.symbols, ticks=args.ticks, seed=11)
        ticks = list(market)
        half = len(ticks) // 2
        accts, limits = accounts(args.accounts, market.symbol_names())
        first = signals(ticks[:half], accts, args.signals // 2, 1, 0)
        rec.run(accounts=list(accts), symbol_limits=list(limits), market_data=list(ticks[:half]))
        rec.run(trade_signals=list(first))
        decided = {d.signal_id: d for d in read_all(rec.conn, "risk_decisions")
                   if isinstance(d, RiskDecision)}
        passed = [s for s in first if decided[s.signal_id].decision is Decision.PASS]
        second = signals(ticks[half:], accts, args.signals - len(first), 2, len(first))
        rec.run(venue_fills=list(fills(passed)))
        rec.run(market_data=list(ticks[half:]))
        rec.run(trade_signals=list(second))
        n = len(read_all(rec.conn, "risk_decisions"))

        started = time.perf_counter()
        log = load_log(settings)
        load_s = time.perf_counter() - started
        replayed = replay(settings, log=log)
        flow_rate = n / rec.flow_s
        result = {
            "accounts": args.accounts,
            "symbols": args.symbols,
            "ticks": args.ticks,
            "decisions": n,
            "passed": sum(1 for d in log.decisions if d.record.decision is Decision.PASS),
            "fills": len(passed),
            "flow_s": round(rec.flow_s, 2),
            "flow_startup_s": round(startup, 2),
            "flow_decisions_per_s": round(flow_rate),
            "load_s": round(load_s, 2),
            "replay_s": round(replayed.replay_s, 2),
            "replay_decisions_per_s": round(replayed.decisions_per_s),
            "ratio_replay_vs_flow": round(replayed.decisions_per_s / flow_rate, 2),
            "differences": len(replayed.differing),
            "reproduced": replayed.reproduced,
        }
        report(result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
