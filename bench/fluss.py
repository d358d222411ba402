"""Job A over a real Fluss cluster vs the embedded store and Kafka; upserts; point lookups.

Measured in one run, so the ratios compare like with like on a shared machine:

- throughput, bounded runs of ``python -m bytewax.run "flows.indicators:build_flow()"`` (1 process)
  over N ticks already in market_data, on the embedded store (baseline), on a Kafka
  broker and on a Fluss cluster (log tables with ``--buckets`` buckets, Kafka topics
  with as many partitions). The rate is taken from the first output row to the last
  (``bench/kafka.py``'s ``throughput``), so process start-up is left out;
- upserts: ``--upserts`` PositionState rows over ``--keys`` keys into positions_state
  through the fluss profile's writer, 500 rows per acknowledged batch (what a sink's
  ``write_batch`` does), and the same into the embedded store and a compacted Kafka
  topic;
- point lookups through ``CachedLookup`` with the cache off (``ttl_s=0``): latency of
  one ``get`` after another (p50/p99), of a ``get_many`` of 128 distinct keys, and of
  a cache hit;
- tick -> sma_wide latency of a live Job A (follow mode, 1 process, default poll
  interval): ticks written one at a time at ``--rate``/s, each row stamped when a
  scanner of sma_wide receives it.

The Fluss cluster and the Kafka broker are started here (temp dirs) and stopped at the
end, also on error or Ctrl-C, with every flow process. The last line printed is one
JSON object.

Usage: ``python bench/fluss.py [--ticks N] [--symbols N] [--buckets N] [--upserts N]
[--keys N] [--lookups N]``
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import _root  # noqa: F401 - first: puts the repository root on sys.path, bench/ off it

# isort: split
import fluss  # pyfluss, not this file: bench/_root.py took bench/ off sys.path

from bench import harness
from connectors.fluss import CachedLookup, FlussClient
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.stats import percentile
from schemas import PositionState
from tradeflow.infra.fluss import FlussCluster
from tradeflow.infra.kafka import KafkaBroker


class FlussArrivals(harness.Arrivals):
    """Scan the sma_wide table from the start."""

    def consume(self) -> None:
        client = FlussClient(self.settings.fluss, fetch_wait_ms=2)  # its own hop adds ~nothing
        try:
            self._scan(client)  # the scanner is gone when it returns, before the close
        finally:
            client.close()

    def _scan(self, client: FlussClient) -> None:
        table = client.table(fluss.TablePath(self.settings.fluss.database, "sma_wide"))
        buckets = table.get_table_info().num_buckets
        scan = table.new_scan().project_by_name(["payload"])
        scanner = client.run(scan.create_record_batch_log_scanner)
        scanner.subscribe_buckets(dict.fromkeys(range(buckets), 0))
        self.ready.set()
        poll = partial(scanner.poll_record_batch, 5)
        while not self.stop.is_set():
            for rb in client.run(poll):
                self.stamp(rb.batch.column("payload").to_pylist(), time.time())


def positions(n: int, keys: int) -> list[PositionState]:
    t0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    return [
        PositionState(
            account=f"ACC{i % keys % 97}", symbol=f"S{i % keys}", net_qty=Decimal(i % 500 - 250),
            avg_px=Decimal("101.25"), realized_pnl=Decimal(i % 13), unrealized_pnl=Decimal(0),
            market_value=Decimal(i), ts=t0 + timedelta(milliseconds=i),
        )
        for i in range(n)
    ]


def upsert_rate(settings: Settings, rows: list[PositionState], batch: int = 500) -> float:
    """Upsert ``rows`` in acknowledged batches; return rows per second."""
    writer = Connectors(settings).writer("positions_state")
    try:
        writer.write(rows[:batch])  # warm up: table, connection, writer id
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            writer.write(rows[i : i + batch])
        return len(rows) / (time.perf_counter() - started)
    finally:
        writer.close()


def lookups(settings: Settings, keys: list[str], n: int) -> dict[str, float]:
    """Latency of uncached gets one after another, of a 128-key get_many, and of a hit."""
    rng = random.Random(7)
    lookup = CachedLookup(settings, "positions_state", ttl_s=0)
    try:
        lookup.get(keys[0])  # warm up
        single = []
        for _ in range(n):
            key = rng.choice(keys)
            started = time.perf_counter()
            if lookup.get(key) is None:
                raise SystemExit(f"lookup of {key} found nothing")
            single.append((time.perf_counter() - started) * 1000)
        many = []
        for _ in range(10):
            batch = rng.sample(keys, min(128, len(keys)))
            started = time.perf_counter()
            lookup.get_many(batch)
            many.append((time.perf_counter() - started) * 1000)
    finally:
        lookup.close()
    cached = CachedLookup(settings, "positions_state", ttl_s=3600)
    try:
        cached.get(keys[0])
        started = time.perf_counter()
        for _ in range(10_000):
            cached.get(keys[0])
        hit_us = (time.perf_counter() - started) / 10_000 * 1e6
    finally:
        cached.close()
    return {
        "p50_ms": percentile(single, 50),
        "p99_ms": percentile(single, 99),
        "mean_ms": statistics.fmean(single),
        "samples": len(single),
        "batch128_p50_ms": percentile(many, 50),
        "hit_us": hit_us,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.job_a_options(ap, ticks=60_000, latency_ticks=1000)
    ap.add_argument("--buckets", type=int, default=4, help="buckets of each log table (and Kafka partitions)")
    ap.add_argument("--upserts", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=1000, help="distinct (account, symbol) keys of the upserts")
    ap.add_argument("--lookups", type=int, default=200)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    ticks, live_ticks = harness.job_a_markets(args)
    rows = positions(args.upserts, args.keys)
    keys = sorted({r.key() for r in rows})
    with harness.workdir("bench-fluss-") as (work, procs):  # noqa: SIM117 - the servers need work
        with (
            harness.running(FlussCluster(work / "fluss", buckets=args.buckets)) as cluster,
            harness.running(KafkaBroker(work / "kafka")) as broker,
        ):
            emb = harness.throughput(procs, harness.local_setup(work, "emb-1p"), ticks, 1)
            kaf_setup = harness.kafka_setup(broker, work, "kafka-1p", args.buckets)
            kaf = harness.throughput(procs, kaf_setup, ticks, 1)
            flu_setup = harness.fluss_setup(cluster, work, "fluss-1p", args.buckets)
            flu = harness.throughput(procs, flu_setup, ticks, 1)
            local = load_settings(profile="local", data_dir=work / "emb-upserts")
            emb_upserts = upsert_rate(local, rows)
            kaf_upserts = upsert_rate(harness.kafka_setup(broker, work, "kafka-upserts", 1).settings, rows)
            flu_upserts = upsert_rate(flu_setup.settings, rows)
            lat = lookups(flu_setup.settings, keys, args.lookups)
            lat_setup = harness.fluss_setup(cluster, work, "lat", args.buckets, follow=True)
            live = harness.latency(procs, lat_setup, live_ticks, args.rate, FlussArrivals)

    result = {
        "ticks": args.ticks,
        "symbols": args.symbols,
        "buckets": args.buckets,
        "fluss_ticks_per_s": round(flu["ticks_per_s"]),
        "embedded_ticks_per_s": round(emb["ticks_per_s"]),
        "kafka_ticks_per_s": round(kaf["ticks_per_s"]),
        "ratio_vs_embedded": round(flu["ticks_per_s"] / emb["ticks_per_s"], 3),
        "ratio_vs_kafka": round(flu["ticks_per_s"] / kaf["ticks_per_s"], 3),
        "fluss_first_row_s": round(flu["first_row_s"], 2),
        "embedded_first_row_s": round(emb["first_row_s"], 2),
        "kafka_first_row_s": round(kaf["first_row_s"], 2),
        "fluss_peak_rss_mb": round(flu["peak_rss_mb"], 1),
        "embedded_peak_rss_mb": round(emb["peak_rss_mb"], 1),
        "kafka_peak_rss_mb": round(kaf["peak_rss_mb"], 1),
        "upserts": args.upserts,
        "upsert_keys": len(keys),
        "upsert_rows_per_s": round(flu_upserts),
        "embedded_upsert_rows_per_s": round(emb_upserts),
        "kafka_upsert_rows_per_s": round(kaf_upserts),
        "upsert_ratio_vs_embedded": round(flu_upserts / emb_upserts, 3),
        "upsert_ratio_vs_kafka": round(flu_upserts / kaf_upserts, 3),
        "lookup_samples": lat["samples"],
        "lookup_p50_ms": round(lat["p50_ms"], 2),
        "lookup_p99_ms": round(lat["p99_ms"], 2),
        "lookup_mean_ms": round(lat["mean_ms"], 2),
        "lookup_batch128_p50_ms": round(lat["batch128_p50_ms"], 2),
        "lookup_cache_hit_us": round(lat["hit_us"], 2),
        **harness.latency_figures(live, args.rate),
    }
    harness.report(result)


if __name__ == "__main__":
    main()
