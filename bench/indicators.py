"""Job A throughput: Bytewax flow vs a plain Python loop doing the same work.

Measured in one run, on the same synthetic ticks:

- ``plain``: one process, no Bytewax: read market_data from the embedded store, decode,
  update the same ``SymbolIndicators``, build and encode sma_wide rows, write them.
- ``plain_math``: only the indicator updates, on ticks already in memory.
- ``flow_mem``: the Job A operators in a Bytewax flow, in memory (pre-encoded
  messages in, rows encoded and dropped out), one worker.
- ``flow_1p`` / ``flow_2p``: ``python -m bytewax.run "flows.indicators:build_flow()"`` on the
  embedded store with 1 process, then 2 processes as one Bytewax cluster (``-i/-a``;
  the store has 2 partitions, so each process reads one and exchanges ticks by key).
- ``flow_2p_sharded``: 2 independent processes, each reading one partition
  (``TRADEFLOW_SOURCE_PARTITIONS``): Job A is keyed like its input, so no exchange.
  Process start-up is measured separately (a run over an empty, closed stream) and
  subtracted.

Usage: ``python bench/indicators.py [--ticks N] [--symbols N]``. The last line printed
is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bytewax.operators as op
from _root import ROOT
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from bench.harness import embedded_count as count
from bench.harness import plain_loop, report
from connectors.base import SourceMessage, StoredRecord
from connectors.feeds import SyntheticMarket, replay
from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.common import decode_messages
from flows.indicators import IndicatorLogic, indicator_config, locate, to_sma_wide
from operators.indicators import IndicatorConfig, Row, SymbolIndicators, Tick
from schemas import MarketData, SmaWide, decode, encode
from tradeflow.infra.common import free_port


def feed(data_dir: Path, ticks: int, symbols: int) -> None:
    conn = Connectors(load_settings(data_dir=data_dir, partitions=2))
    replay(SyntheticMarket(symbols=symbols, ticks=ticks, seed=1), conn.writer("market_data"), progress=False)


def plain_indicators(data_dir: Path, config: IndicatorConfig) -> float:
    states: dict[str, SymbolIndicators] = {}

    def step(batch: list[StoredRecord]) -> list[tuple[str | None, bytes]]:
        out: list[tuple[str | None, bytes]] = []
        for rec in batch:
            m = decode(MarketData, rec.value)
            st = states.get(m.symbol)
            if st is None:
                st = states[m.symbol] = SymbolIndicators(config)
            for res in st.on_tick(Tick(m.symbol, m.ts, float(m.price), float(m.volume), m.wm)):
                if isinstance(res, Row):
                    row = to_sma_wide(res)
                    out.append((row.key(), encode(row)))
        return out

    return plain_loop(data_dir, "market_data", "sma_wide_plain", step)[0]


def plain_math(ticks: list[MarketData], config: IndicatorConfig) -> float:
    items = [Tick(m.symbol, m.ts, float(m.price), float(m.volume), m.wm) for m in ticks]
    states: dict[str, SymbolIndicators] = {}
    started = time.perf_counter()
    for t in items:
        st = states.get(t.symbol)
        if st is None:
            st = states[t.symbol] = SymbolIndicators(config)
        st.on_tick(t)
    return time.perf_counter() - started


def flow_in_memory(ticks: list[MarketData], config: IndicatorConfig) -> float:
    msgs = [SourceMessage("market_data", 0, i, t.symbol, encode(t)) for i, t in enumerate(ticks)]
    counted: list[int] = []
    flow = Dataflow("bench_mem")
    raw = op.input("in", flow, TestingSource(msgs, batch_size=500))
    dec = decode_messages("md", raw, MarketData, job="bench")
    keyed = op.map("key", dec.oks, locate)
    res = op.stateful_batch("ind", keyed, lambda resume: IndicatorLogic(config, resume))
    sizes = op.map("enc", op.key_rm("unkey", res), lambda r: len(encode(r)) if isinstance(r, SmaWide) else 0)
    op.output("out", op.filter("none", sizes, lambda _: False), TestingSink(counted))
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started


def run_flow(data_dir: Path, processes: int, *, sharded: bool = False) -> float:
    env = dict(
        os.environ, TRADEFLOW_DATA_DIR=str(data_dir), TRADEFLOW_PARTITIONS="2", TRADEFLOW_PROFILE="local"
    )
    cmd = [sys.executable, "-m", "bytewax.run", "flows.indicators:build_flow()"]
    started = time.perf_counter()
    if sharded:  # independent processes, each reading its own partitions: no exchange
        procs = [
            subprocess.Popen(cmd, cwd=ROOT, env=dict(env, TRADEFLOW_SOURCE_PARTITIONS=f"[{i}]"))
            for i in range(processes)
        ]
    elif processes == 1:
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env)]
    else:
        addrs = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        procs = [
            subprocess.Popen([*cmd, "-i", str(i), "-a", addrs], cwd=ROOT, env=env)
            for i in range(processes)
        ]
    for p in procs:
        if p.wait(600) != 0:
            raise SystemExit(f"flow process failed with {p.returncode}")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--symbols", type=int, default=50)
    args = ap.parse_args()
    n = args.ticks
    config = indicator_config(load_settings())
    work = Path(tempfile.mkdtemp(prefix="bench-ind-"))
    try:
        ticks = list(SyntheticMarket(symbols=args.symbols, ticks=n, seed=1))
        math_s = plain_math(ticks, config)
        mem_s = flow_in_memory(ticks, config)

        dirs = {name: work / name for name in ("plain", "f1", "f2", "f2s", "empty")}
        for name in ("plain", "f1", "f2", "f2s"):
            feed(dirs[name], n, args.symbols)
        plain_s = plain_indicators(dirs["plain"], config)

        feed(dirs["empty"], 0, 1)
        startup_1p = run_flow(dirs["empty"], 1)
        startup_2p = run_flow(dirs["empty"], 2)
        f1 = run_flow(dirs["f1"], 1)
        f2 = run_flow(dirs["f2"], 2)
        f2s = run_flow(dirs["f2s"], 2, sharded=True)
        for name in ("f1", "f2", "f2s"):
            if count(dirs[name], "sma_wide") != n:
                raise SystemExit(f"{name}: wrong sma_wide row count")

        flow_1p = n / max(f1 - startup_1p, 1e-9)
        flow_2p = n / max(f2 - startup_2p, 1e-9)
        flow_2p_sharded = n / max(f2s - startup_1p, 1e-9)
        plain = n / plain_s
        result = {
            "ticks": n,
            "symbols": args.symbols,
            "plain_ticks_per_s": round(plain),
            "plain_math_ticks_per_s": round(n / math_s),
            "flow_mem_ticks_per_s": round(n / mem_s),
            "flow_1p_ticks_per_s": round(flow_1p),
            "flow_2p_ticks_per_s": round(flow_2p),
            "flow_2p_sharded_ticks_per_s": round(flow_2p_sharded),
            "flow_1p_wall_s": round(f1, 2),
            "flow_2p_wall_s": round(f2, 2),
            "startup_1p_s": round(startup_1p, 2),
            "startup_2p_s": round(startup_2p, 2),
            "ratio_1p_vs_plain": round(flow_1p / plain, 3),
            "ratio_2p_vs_1p": round(flow_2p / flow_1p, 3),
            "ratio_2p_sharded_vs_1p": round(flow_2p_sharded / flow_1p, 3),
            "ratio_mem_vs_plain": round((n / mem_s) / plain, 3),
        }
        report(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
