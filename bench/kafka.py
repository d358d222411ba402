"""Job A over a real Kafka broker vs the embedded store: throughput and latency.

Measured in one run, on the same synthetic ticks (``connectors.feeds.SyntheticMarket``):

- throughput, bounded runs of ``python -m bytewax.run "flows.indicators:build_flow()"`` over N
  ticks already in market_data: embedded store with 1 and 2 processes (the
  baseline), then Kafka with 1 and 2 processes (``-i 0/1 -a "P1;P2"``, topics with
  ``--partitions`` partitions). The rate is taken from the first output row to the
  last (the sink's end offsets polled every 20 ms), so process start-up and
  shutdown are left out; time to the first row is reported apart.
- latency, follow mode on Kafka with 1 process: the flow runs live, ticks are
  produced one at a time at ``--rate`` per second, and a consumer of sma_wide
  stamps each row's arrival; latency = arrival - the moment just before the tick
  was produced (so it includes the producer's acks=all round trip, the source's
  idle poll, the flow, the sink's flush and the downstream fetch). Once with the
  project's default polling (1 ms at the end of a live stream, 50 ms once quiet:
  ``connectors.base.Polling``) and, as the baseline, once with the 50 ms poll interval
  only (``poll_busy_for_ms=0``, what sources did before issue 20).

The broker is started here (``tradeflow.infra.kafka.KafkaBroker``, a temp dir) and
stopped at the end, also on error or Ctrl-C, with every flow process. The last line
printed is one JSON object.

Usage: ``python bench/kafka.py [--ticks N] [--symbols N] [--partitions N]
[--latency-ticks N] [--rate R]``
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from _root import ROOT
from confluent_kafka import Consumer, TopicPartition

from bench.harness import (
    Arrivals,
    Setup,
    job_a_markets,
    job_a_options,
    kafka_setup,
    latency,
    latency_figures,
    local_setup,
    report,
    running,
    throughput,
    workdir,
)
from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.replays import read_tail_ids
from schemas import spec
from tradeflow.infra.kafka import KafkaBroker


class KafkaArrivals(Arrivals):
    """Consume the sma_wide topic from the start."""

    def consume(self) -> None:
        kafka = self.settings.kafka
        consumer = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap,
                "group.id": "bench-latency",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            },
            logger=logging.getLogger("bench.kafka"),
        )
        topic = f"{kafka.topic_prefix}sma_wide"
        consumer.assign([TopicPartition(topic, p, 0) for p in range(kafka.partitions)])
        self.ready.set()
        try:
            while not self.stop.is_set():
                msgs = consumer.consume(500, 0.005)
                self.stamp([m.value() or b"" for m in msgs if m.error() is None], time.time())
        finally:
            consumer.close()


def job_c_run(
    setup: Setup, signals: int, *, journal: bool, logs: Path, replay_window: int | None = None
) -> float:
    """Run Job C (bounded) over ``signals`` signals of 10 accounts; return signals/s.

    The inputs are written and closed first; the time is the process's wall time
    minus its time to the first decision (process start-up and the table gates).
    """
    from decimal import Decimal

    from schemas import Account, TradeSignal

    conn = Connectors(setup.settings)
    t0 = SyntheticMarket(symbols=4, ticks=1, seed=3).start
    accounts = [Account(account=f"A{i}", cash=Decimal(10**9), ts=t0) for i in range(10)]
    ticks = list(SyntheticMarket(symbols=4, ticks=200, seed=3))
    sigs = [
        TradeSignal(signal_id=f"s{i}", strategy_id="st", symbol=ticks[i % 200].symbol, account=f"A{i % 10}",
                    side="BUY" if i % 3 else "SELL", qty=Decimal(1), ts=ticks[-1].ts)
        for i in range(signals)
    ]
    for stream, records in (("accounts", accounts), ("market_data", ticks), ("trade_signals", sigs),
                            ("symbol_limits", []), ("control", []), ("venue_fills", [])):
        w = conn.writer(stream)
        w.write(records)
        w.close_stream()
        w.close()
    env = dict(setup.env, TRADEFLOW_PORTFOLIO__JOURNAL="true" if journal else "false")
    if replay_window is not None:
        env["TRADEFLOW_REPLAY_WINDOW"] = str(replay_window)
    log = open(logs / f"{setup.name}-c.log", "ab")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.portfolio_risk:build_flow()"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    reader = conn.reader("risk_decisions")
    first = None
    try:
        while proc.poll() is None:
            if first is None and sum(reader.end_offsets().values()) > 0:
                first = time.perf_counter()
            time.sleep(0.01)
    finally:
        reader.close()
        log.close()
    end = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"Job C failed on {setup.name}; see {logs}")
    return signals / (end - (first or started))


def replay_readback(setup: Setup) -> tuple[float, int]:
    """Time what a restarted Job C's risk_decisions sink reads back (ms, ids found)."""
    conn = Connectors(setup.settings)
    reader = conn.reader("risk_decisions")
    try:
        started = time.perf_counter()
        ids = read_tail_ids(reader, spec("risk_decisions"), setup.settings.replay_window)
        return 1000 * (time.perf_counter() - started), len(ids)
    finally:
        reader.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    job_a_options(ap, ticks=100_000, latency_ticks=2000)
    ap.add_argument("--partitions", type=int, default=4, help="partitions of each log topic (>= 2)")
    ap.add_argument("--c-signals", type=int, default=5000, help="signals in the Job C journal-cost runs")
    args = ap.parse_args()
    if args.partitions < 2:
        ap.error("--partitions must be >= 2 to spread the topics over 2 processes")
    logging.basicConfig(level=logging.ERROR)

    ticks, lat_ticks = job_a_markets(args)
    with workdir("bench-kafka-") as (work, procs), running(KafkaBroker(work / "kafka")) as broker:
        emb = {p: throughput(procs, local_setup(work, f"emb-{p}p"), ticks, p) for p in (1, 2)}
        kaf = {
            p: throughput(procs, kafka_setup(broker, work, f"kafka-{p}p", args.partitions), ticks, p)
            for p in (1, 2)
        }
        lat_setup = kafka_setup(broker, work, "lat", args.partitions, follow=True)
        lat = latency(procs, lat_setup, lat_ticks, args.rate, KafkaArrivals)
        slow_setup = kafka_setup(broker, work, "lat-slow", args.partitions, follow=True, poll_busy_for_ms=0)
        slow = latency(procs, slow_setup, lat_ticks, args.rate, KafkaArrivals)
        c_setups = {on: kafka_setup(broker, work, f"c-journal-{on}", args.partitions) for on in (False, True)}
        c_rates = {on: job_c_run(c_setups[on], args.c_signals, journal=on, logs=work) for on in (False, True)}
        # The replay filter (connectors/replays.py): Job C with it off, against the
        # journal-on run above (on by default); and what a restart pays to read back
        # the ids the stream ends with.
        c_unfiltered = job_c_run(kafka_setup(broker, work, "c-no-replay-filter", args.partitions),
                                 args.c_signals, journal=True, logs=work, replay_window=0)
        readback_ms, readback_ids = replay_readback(c_setups[True])

    result = {
        "ticks": args.ticks,
        "symbols": args.symbols,
        "partitions": args.partitions,
        "kafka_1p_ticks_per_s": round(kaf[1]["ticks_per_s"]),
        "kafka_2p_ticks_per_s": round(kaf[2]["ticks_per_s"]),
        "embedded_1p_ticks_per_s": round(emb[1]["ticks_per_s"]),
        "embedded_2p_ticks_per_s": round(emb[2]["ticks_per_s"]),
        "ratio_vs_embedded": round(kaf[1]["ticks_per_s"] / emb[1]["ticks_per_s"], 3),
        "ratio_2p_vs_embedded_2p": round(kaf[2]["ticks_per_s"] / emb[2]["ticks_per_s"], 3),
        "ratio_kafka_2p_vs_1p": round(kaf[2]["ticks_per_s"] / kaf[1]["ticks_per_s"], 3),
        "kafka_1p_first_row_s": round(kaf[1]["first_row_s"], 2),
        "embedded_1p_first_row_s": round(emb[1]["first_row_s"], 2),
        "kafka_1p_wall_s": round(kaf[1]["wall_s"], 2),
        "embedded_1p_wall_s": round(emb[1]["wall_s"], 2),
        "kafka_1p_peak_rss_mb": round(kaf[1]["peak_rss_mb"], 1),
        "kafka_2p_peak_rss_mb": round(kaf[2]["peak_rss_mb"], 1),
        "embedded_1p_peak_rss_mb": round(emb[1]["peak_rss_mb"], 1),
        **latency_figures(lat, args.rate),
        "interval_only_latency_p50_ms": round(slow["p50_ms"], 2),
        "interval_only_latency_p99_ms": round(slow["p99_ms"], 2),
        "latency_p50_vs_interval_only": round(lat["p50_ms"] / slow["p50_ms"], 3),
        "c_signals": args.c_signals,
        "c_journal_off_signals_per_s": round(c_rates[False]),
        "c_journal_on_signals_per_s": round(c_rates[True]),
        "c_journal_cost_ratio": round(c_rates[True] / c_rates[False], 3),
        "c_replay_filter_off_signals_per_s": round(c_unfiltered),
        "c_replay_filter_cost_ratio": round(c_rates[True] / c_unfiltered, 3),
        "replay_readback_ids": readback_ids,
        "replay_readback_ms": round(readback_ms, 1),
    }
    report(result)


if __name__ == "__main__":
    main()
