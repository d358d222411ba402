"""Scaling out: Jobs A and C as 1 shard vs 2 shards (independent processes), embedded and Kafka.

Each run is a bounded ``python -m bytewax.run`` over input already written (fresh data:
a new embedded store directory, or new Kafka topics under a fresh prefix), as one
process (unsharded) or as two processes with ``TRADEFLOW_SHARD=0/2`` and ``1/2``
(``connectors.sharding``; no Bytewax cluster, nothing crosses processes). Log streams
have 2 partitions.

- Job A: ``--ticks`` synthetic ticks over ``--symbols`` symbols into market_data; the
  rate is sma_wide rows from the moment every partition of sma_wide has a row (every
  shard is producing) to the last row (end offsets polled every 20 ms), so start-up,
  shutdown and the shards' start-up skew are left out.
- Job C: ``--accounts`` accounts with limits, 50 ticks per symbol and ``--signals``
  trade signals; the rate is risk_decisions, measured the same way. Every shard
  reads all of market_data (marks) and the tables, and only its accounts' signals.
  The 2-shard decisions are checked equal to the 1-shard ones (but the latency), and on
  Kafka every input record is checked to sit in the partition ``connectors.sharding``
  computes for its key (the Java client's murmur2), which the shards' account filter
  relies on.

The Kafka broker is started here (``tradeflow.infra.kafka.KafkaBroker``, a temp dir) and
stopped at the end with every flow process. The last line printed is one JSON object:
``<profile>_a_1shard_ticks_per_s``, ``<profile>_a_2shards_ticks_per_s``,
``<profile>_c_1shard_signals_per_s``, ``<profile>_c_2shards_signals_per_s`` and the
``<profile>_ratio_a`` / ``<profile>_ratio_c`` (2 shards over 1), for profile ``local``
and ``kafka``.

Usage: ``python bench/scale.py [--ticks N] [--signals N] [--only local|kafka]``
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal

from _root import ROOT

from bench.harness import (
    CENT,
    Processes,
    Setup,
    at,
    kafka_setup,
    local_setup,
    random_market,
    report,
    running,
    workdir,
)
from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.sharding import murmur2_partition
from schemas import (
    Account,
    MarketData,
    OrderType,
    Record,
    Side,
    SymbolLimit,
    TradeSignal,
)
from tradeflow.infra.kafka import KafkaBroker

PARTITIONS = 2
FLOWS = {"a": "flows.indicators:build_flow()", "c": "flows.portfolio_risk:build_flow()"}
C_INPUTS = ["accounts", "symbol_limits", "control", "market_data", "trade_signals", "venue_fills"]


# --------------------------------------------------------------------- input


def c_inputs(signals: int, accounts: int, symbols: int) -> dict[str, list[Record]]:
    rng = random.Random(11)
    names = [f"ACC{i:03d}" for i in range(accounts)]
    syms, px, walk = random_market(rng, symbols)
    ticks: list[Record] = list(walk)
    rows: list[Record] = [
        Account(account=a, cash=Decimal(5_000_000), max_order_notional=Decimal(100_000),
                max_order_qty=Decimal(900), max_gross_exposure=Decimal(20_000_000), max_leverage=Decimal(4),
                max_open_orders=500, max_orders_per_second=10, price_collar_bps=Decimal(100),
                daily_loss_limit=Decimal(1_000_000), max_drawdown=Decimal(1_000_000), ts=at(0))
        for a in names
    ]
    limits: list[Record] = [SymbolLimit(account=a, symbol=s, max_position_qty=Decimal(5000), ts=at(0))
                            for a in names for s in syms]
    sigs: list[Record] = []
    for i in range(signals):
        s = rng.choice(syms)
        limit = rng.random() < 0.3
        sigs.append(TradeSignal(
            signal_id=f"sig{i:07d}", strategy_id="trend", symbol=s, account=rng.choice(names),
            side=Side.BUY if rng.random() < 0.55 else Side.SELL, qty=Decimal(rng.randrange(1, 1000)),
            order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            limit_px=(px[s] * Decimal(1 + rng.uniform(-0.012, 0.012))).quantize(CENT) if limit else None,
            ref_px=px[s], ts=at(60 + i * 0.01),
        ))
    # One tick per symbol after the last signal: the market data has then passed every
    # signal's event time, so signals are released as they are read, not after the
    # router's mark wait (1 s) in one burst; each is still priced at the tick before it.
    end = at(60 + signals * 0.01 + 1)
    ticks += [MarketData(symbol=s, ts=end, price=px[s], volume=Decimal(1)) for s in syms]
    return {"accounts": rows, "symbol_limits": limits, "market_data": ticks, "trade_signals": sigs}


def check_kafka_placement(setup: Setup, stream: str, key: str) -> int:
    """Check every record of a topic sits in murmur2(key) % partitions; return how many."""
    conn = Connectors(setup.settings)
    reader = conn.reader(stream)
    partitions = reader.partitions  # the topic's own count
    reader.close()
    n = 0
    for rec in conn.scan(stream, 10_000):
        k = json.loads(rec.value)[key]
        if murmur2_partition(k, partitions) != rec.partition:
            raise SystemExit(f"{stream}: key {k} in partition {rec.partition}, murmur2 says otherwise")
        n += 1
    return n


# --------------------------------------------------------------------- runs


class ShardProcesses(Processes):
    """The harness's flow processes, started as the shards of one job."""

    def start_shards(self, setup: Setup, job: str, shards: int) -> list[subprocess.Popen[bytes]]:
        """Start ``job`` as ``shards`` independent processes (``TRADEFLOW_SHARD=I/N``)."""
        cmd = [sys.executable, "-m", "bytewax.run", FLOWS[job]]
        envs = [setup.env] if shards == 1 else [dict(setup.env, TRADEFLOW_SHARD=f"{i}/{shards}")
                                               for i in range(shards)]
        procs = []
        for i, env in enumerate(envs):
            with open(self.logs / f"{setup.name}-{i}.log", "ab") as log:
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        self.running += procs
        return procs


def rate(procs: ShardProcesses, setup: Setup, job: str, shards: int, out: str, n: int) -> dict[str, float]:
    """Run the job bounded; its rate once every output partition has a record, to the ``n``-th.

    The output is keyed like the sharded input (sma_wide by symbol, risk_decisions by
    account, same hash and partition count), so shard ``i`` writes only partition ``i``:
    the clock starts when every shard is producing, leaving out start-up and the skew
    between the shards' start-ups.
    """
    reader = Connectors(setup.settings).reader(out)
    started = time.perf_counter()
    running = procs.start_shards(setup, job, shards)
    first: tuple[float, int] | None = None
    done: float | None = None
    try:
        while done is None:
            alive = any(p.poll() is None for p in running)
            ends = reader.data_ends()
            rows = sum(ends.values())
            now = time.perf_counter()
            if first is None and all(ends.values()):
                first = (now, rows)
            if rows >= n:
                done = now
            if not alive:
                break
            time.sleep(0.02)
    finally:
        reader.close()
    procs.wait(running, setup.name)
    if first is None or done is None:
        raise SystemExit(f"{setup.name}: fewer than {n} {out} records")
    if n - first[1] < n // 10:  # done within a poll or two of the first record: too few to time
        raise SystemExit(f"{setup.name}: {n} {out} records went by in one poll; give the bench more input")
    return {"per_s": (n - first[1]) / max(done - first[0], 1e-9), "wall_s": time.perf_counter() - started}


def decisions(setup: Setup) -> dict[str, object]:
    out: dict[str, object] = {}
    for rec in Connectors(setup.settings).scan("risk_decisions", 10_000):
        d = json.loads(rec.value)
        d.pop("latency_us")
        out[d["signal_id"]] = d
    return out


def profile_round(new: Callable[[str], Setup], profile: str, procs: ShardProcesses, ticks: list[MarketData],
                  c_in: dict[str, list[Record]], repeats: int) -> dict[str, float | bool]:
    """Jobs A and C, 1 shard then 2 shards, on one profile (``new(name)`` gives a fresh setup)."""
    figures: dict[str, float | bool] = {}
    made: dict[str, dict[str, object]] = {}
    rounds = [(s, label, r) for r in range(repeats) for s, label in ((1, "1shard"), (2, "2shards"))]
    for shards, label, r in rounds:  # alternated, best of ``repeats``: the machine is shared
        setup = new(f"{profile}-a-{label}-{r}")
        Connectors(setup.settings).write_all({"market_data": ticks}, ["market_data"])
        got = rate(procs, setup, "a", shards, "sma_wide", len(ticks))
        key = f"{profile}_a_{label}_ticks_per_s"
        figures[key] = max(float(figures.get(key, 0)), round(got["per_s"]))
        print(f"{profile} A {label}: {got['per_s']:,.0f} ticks/s (wall {got['wall_s']:.1f} s)", flush=True)
    for shards, label, r in rounds:
        setup = new(f"{profile}-c-{label}-{r}")
        Connectors(setup.settings).write_all(c_in, C_INPUTS)
        if profile == "kafka" and shards == 1 and r == 0:
            placed = sum(check_kafka_placement(setup, s, "account")
                         for s in ("trade_signals", "accounts"))
            print(f"kafka: {placed} trade_signals/accounts records sit where murmur2 puts them", flush=True)
        got = rate(procs, setup, "c", shards, "risk_decisions", len(c_in["trade_signals"]))
        key = f"{profile}_c_{label}_signals_per_s"
        figures[key] = max(float(figures.get(key, 0)), round(got["per_s"]))
        made[label] = decisions(setup)
        print(f"{profile} C {label}: {got['per_s']:,.0f} signals/s (wall {got['wall_s']:.1f} s)", flush=True)
    figures[f"{profile}_c_2shards_same_decisions"] = made["1shard"] == made["2shards"]
    for job, unit in (("a", "ticks"), ("c", "signals")):
        one = float(figures[f"{profile}_{job}_1shard_{unit}_per_s"])
        two = float(figures[f"{profile}_{job}_2shards_{unit}_per_s"])
        figures[f"{profile}_ratio_{job}"] = round(two / one, 2)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=120_000)
    ap.add_argument("--symbols", type=int, default=40)
    ap.add_argument("--signals", type=int, default=16_000)
    ap.add_argument("--accounts", type=int, default=40)
    ap.add_argument("--c-symbols", type=int, default=20)
    ap.add_argument("--only", choices=["local", "kafka"])
    ap.add_argument("--repeats", type=int, default=2, help="runs of each setup, alternated; best kept")
    args = ap.parse_args()

    ticks = list(SyntheticMarket(symbols=args.symbols, ticks=args.ticks, seed=3))
    c_in = c_inputs(args.signals, args.accounts, args.c_symbols)
    result: dict[str, object] = {"partitions": PARTITIONS, "ticks": args.ticks,
                                 "signals": args.signals, "accounts": args.accounts}
    with workdir("tradeflow-scale-") as (work, _):
        procs = ShardProcesses(work)
        try:
            if args.only in (None, "local"):
                result.update(profile_round(lambda name: local_setup(work, name), "local", procs, ticks,
                                            c_in, args.repeats))
            if args.only in (None, "kafka"):
                with running(KafkaBroker(work / "kafka")) as broker:
                    result.update(profile_round(lambda name: kafka_setup(broker, work, name, PARTITIONS),
                                                "kafka", procs, ticks, c_in, args.repeats))
        finally:
            procs.stop_all()
    report(result)


if __name__ == "__main__":
    main()
