"""Job B throughput: one strategy flow vs a plain Python loop doing the same work.

Measured in one run, on the same sma_wide rows (Job A's indicators over synthetic
ticks, written to the embedded store once per measurement):

- ``plain``: one process, no Bytewax: read sma_wide from the store, decode each row,
  run the same ``StrategyShard`` (strategy + sizing + gates), encode the signals and
  write them to the store.
- ``math``: only ``StrategyShard.on_row`` on rows already decoded in memory.
- ``flow``: ``python -m bytewax.run "flows.strategy:build_flow('bench')"`` on the
  embedded store, 1 process, 1 worker, bounded input. Process start-up is measured
  separately (a run over an empty store) and subtracted.

Usage: ``python bench/strategy.py [--rows N] [--symbols N] [--strategy NAME]``. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _root import ROOT

from bench.harness import embedded_count as count
from bench.harness import plain_loop, report
from connectors.base import StoredRecord
from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.strategy import sma_wide_columns
from operators.strategies import StrategyShard, activate
from schemas import SmaWide, StrategyConfig, decode, encode
from tests.helpers import indicator_rows

SID = "bench"
PARAMS: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 5, "slow": 20},
    "rsi_reversion": {"period": 14, "oversold": 30, "overbought": 70},
    "vwap_deviation": {"threshold_bps": 30, "rearm_bps": 5},
}


def make_rows(n: int, symbols: int) -> list[SmaWide]:
    return indicator_rows(SyntheticMarket(symbols=symbols, ticks=n, seed=1), validate=False)


def config(strategy: str) -> StrategyConfig:
    return StrategyConfig(
        strategy_id=SID, strategy=strategy, params=PARAMS[strategy], account="BENCH",
        qty=1, ts=datetime(2026, 1, 5, tzinfo=UTC),
    )


def prepare(data_dir: Path, rows: list[SmaWide], cfg: StrategyConfig) -> None:
    conn = Connectors(load_settings(data_dir=data_dir, partitions=2))
    conn.write_all({"strategy_config": [cfg], "sma_wide": rows}, ["strategy_config", "sma_wide"])


def plain_strategy(data_dir: Path, cfg: StrategyConfig) -> tuple[float, int]:
    shard = StrategyShard(SID)
    shard.apply_config(0, activate(cfg, columns=sma_wide_columns(load_settings())))

    def step(batch: list[StoredRecord]) -> list[tuple[str | None, bytes]]:
        out: list[tuple[str | None, bytes]] = []
        for rec in batch:
            sig = shard.on_row(decode(SmaWide, rec.value))
            if sig is not None:
                out.append((sig.key(), encode(sig)))
        return out

    return plain_loop(data_dir, "sma_wide", "signals_plain", step)


def math_only(rows: list[SmaWide], cfg: StrategyConfig) -> float:
    shard = StrategyShard(SID)
    shard.apply_config(0, activate(cfg))
    started = time.perf_counter()
    for row in rows:
        shard.on_row(row)
    return time.perf_counter() - started


def run_flow(data_dir: Path) -> float:
    env = dict(
        os.environ, TRADEFLOW_DATA_DIR=str(data_dir), TRADEFLOW_PARTITIONS="2",
        TRADEFLOW_PROFILE="local", TRADEFLOW_FOLLOW="false",
    )
    cmd = [sys.executable, "-m", "bytewax.run", f"flows.strategy:build_flow({SID!r})"]
    started = time.perf_counter()
    if subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode != 0:
        raise SystemExit("flow process failed")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--strategy", choices=sorted(PARAMS), default="sma_cross")
    args = ap.parse_args()
    n = args.rows
    cfg = config(args.strategy)
    work = Path(tempfile.mkdtemp(prefix="bench-strat-"))
    try:
        rows = make_rows(n, args.symbols)
        math_s = math_only(rows, cfg)
        dirs = {name: work / name for name in ("plain", "flow", "empty")}
        prepare(dirs["plain"], rows, cfg)
        prepare(dirs["flow"], rows, cfg)
        prepare(dirs["empty"], [], cfg)
        plain_s, plain_signals = plain_strategy(dirs["plain"], cfg)

        startup = run_flow(dirs["empty"])
        flow_wall = run_flow(dirs["flow"])
        flow_signals = count(dirs["flow"], "trade_signals")
        if flow_signals != plain_signals:
            raise SystemExit(f"flow wrote {flow_signals} signals, the plain loop {plain_signals}")

        flow_rate = n / max(flow_wall - startup, 1e-9)
        plain_rate = n / plain_s
        result = {
            "strategy": args.strategy,
            "rows": n,
            "symbols": args.symbols,
            "signals": flow_signals,
            "rows_per_s": round(flow_rate),
            "plain_rows_per_s": round(plain_rate),
            "math_rows_per_s": round(n / math_s),
            "ratio_vs_plain": round(flow_rate / plain_rate, 3),
            "flow_wall_s": round(flow_wall, 2),
            "startup_s": round(startup, 2),
        }
        report(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
