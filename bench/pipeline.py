"""End-to-end pipeline figures: the whole system (A, B x2, C, D paper) as processes.

- Throughput: ticks through the pipeline per second at full replay speed, on the
  embedded store and on a real Kafka broker (started here), same synthetic market.
  Job C decides in arrival order, as live trading does. ``*_ticks_per_s`` counts from
  Job A's first row to the last record any job wrote (the stores' ``written_at``), so
  the jobs' start-up and the wait for the pipeline to fall still are left out, as
  ``bench/kafka.py`` does for Job A; ``*_wall_ticks_per_s`` is the whole run, from
  starting the jobs until the outputs have been still for 2 s.
  ``embedded_event_time_ticks_per_s``: the same market as a backtest, Job C deciding in
  event time (``operators.eventtime``: each event time with an order in it waits for a
  round of progress rows from Job D), what ``tradeflow demo`` does when unpaced.
- Latency: tick written -> validated order written (wall clock), with the market
  replayed at ``--rate`` ticks a second (2,000) so the pipeline is not saturated; each
  order carries its tick's ``entered_at``, and the store says when the order was written.
  The headline market trades 100 times a second per symbol, so at 2,000 ticks a second
  its time runs about as fast as the wall clock (``*_market_speed``: market seconds a
  wall second, about 3), as a live market does. ``*_fast_forward_*``: the same run on
  the synthetic market's default density (40 trades a second), which 2,000 ticks a
  second replay about 50x fast: Job C's work per market second (a mark per held symbol
  and second) then comes 50x as often as live (the figures before 2026-12-07 were these).
  The percentiles are the steady state: the feed starts with the jobs and first writes
  ``--warmup-s`` seconds (2) of ticks, which queue while the jobs start; once every job
  has caught up on them (``run_pipeline``'s ``warmup``: each tick a row, each signal a
  decision, the outputs still for half a second) it writes the rest, paced from there,
  and only the orders of those ticks are timed. ``*_warmup_took_s``: from starting the
  jobs until they had caught up (their start-up); ``*_with_warmup_p99_ms`` counts the
  warm-up orders too. Before 2026-12-07 18:40 the warm-up was the first 2 s of a run fed
  without a pause: on Kafka, where Job C takes longer than that to start, its backlog
  was timed as if it were the steady state.
- CPU: ``*_cpu_us_per_tick`` (throughput runs) and ``*_paced_cpu_us_per_tick`` (latency
  runs): each job's CPU time (user + system, from /proc) from Job A's first row until it
  was stopped, over the ticks fed, in µs, and their ``total``. It includes the 2 s the
  runner waits for the outputs to stay still (jobs polling an idle store), not start-up.
  On 2 cores, a ``total`` of 1,000 µs a tick caps the pipeline near 2,000 ticks a second.

Usage: ``python bench/pipeline.py [--ticks N] [--rate R] [--skip-kafka]``. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import _root  # noqa: F401 - first: puts the repository root on sys.path

from bench.harness import report
from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.stats import percentile
from schemas import OrderAction, ValidatedOrder, decode
from tradeflow.pipeline import run_pipeline

LIVE_DENSITY = 100.0
"""Latency runs: trades a second per symbol of the market replayed (20 symbols: 2,000)."""
FAST_FORWARD_DENSITY = 2.0
"""The same at the synthetic market's default: 2,000 ticks a second replay it about 50x."""

OUTPUTS = ("sma_wide", "trade_signals", "risk_decisions", "validated_orders", "venue_fills")
"""What the jobs write along the chain; the last of these is when the pipeline was done."""


def throughput(
    settings: Settings, ticks: int, *, event_time: bool = False
) -> tuple[float, float, dict[str, float]]:
    """Return ticks a second from Job A's first row to the last output, and over the whole
    run, and each job's CPU µs a tick (``cpu_per_tick``)."""
    market = SyntheticMarket(symbols=20, ticks=ticks, seed=3)
    counts = run_pipeline(settings, iter(market), ticks, market.symbol_names(), progress=False, settle_s=2.0,
                          event_time=event_time)
    conn = Connectors(settings)
    first = min(_written(conn, "sma_wide", last=False))
    end = max(t for stream in OUTPUTS for t in _written(conn, stream, last=True))
    return (counts.ticks / (end - first).total_seconds(), counts.ticks / counts.seconds,
            cpu_per_tick(counts.cpu_s, counts.ticks))


def cpu_per_tick(cpu_s: dict[str, float], ticks: int) -> dict[str, float]:
    """Each job's CPU µs a tick, from Job A's first row until it was stopped, and their ``total``.

    The 2 s settle wait at the end is in it (the jobs polling an idle store), start-up
    is not (``Counts.cpu_s``). Empty where the runner cannot read a job's CPU time.
    """
    out = {name: round(s * 1e6 / max(1, ticks), 1) for name, s in sorted(cpu_s.items())}
    if out:
        out["total"] = round(sum(out.values()), 1)
    return out


def _written(conn: Connectors, stream: str, *, last: bool) -> list[datetime]:
    """Return when each partition's first (or last) record of ``stream`` was written."""
    reader = conn.reader(stream)
    try:
        out = []
        for part, end in reader.end_offsets().items():
            got = reader.read(part, max(0, end - 8), 8) if last else reader.read(part, 0, 1)
            out += [got[-1 if last else 0].written_at] if got else []
        return [t for t in out if t is not None]
    finally:
        reader.close()


@dataclass
class Timed:
    """What a latency run gives."""

    orders: list[tuple[datetime, float]]
    """Per validated order, when its tick entered and the ms from there to the order."""
    speed: float
    """The replay speed: market seconds a wall second."""
    cpu: dict[str, float]
    """Each job's CPU µs a tick (``cpu_per_tick``)."""
    warmed_at: datetime | None
    """When the pipeline had caught up on the warm-up ticks (the rest were fed after)."""
    warmup_took_s: float | None
    """From starting the jobs until then."""


def latency(settings: Settings, ticks: int, rate: float, density: float, warmup: int) -> Timed:
    """Replay ``ticks`` at about ``rate`` ticks a second: the first ``warmup`` of them, then,
    once every job is up and has caught up on those (``run_pipeline``'s ``warmup``), the rest.

    ``density``: the market's trades a second per symbol (``SyntheticMarket.ticks_per_s``).
    At ``LIVE_DENSITY`` its 20 symbols trade as fast as the market is replayed, so the
    market's time runs at about the wall clock's pace, as it does live (about 3x: the
    synthetic market spaces trades at least 1 ms apart). At ``FAST_FORWARD_DENSITY`` (the
    synthetic market's default, 40 trades a second) replaying 2,000 ticks a second
    fast-forwards the market about 50x, and whatever Job C does per second of market
    time (a mark per held symbol and second, the order-rate window) comes 50x as often.

    Each order carries the ``entered_at`` of the tick it came from (stamped by the feed as
    it writes the batch); the store says when the order was written (``written_at``: the
    embedded store's append time, Kafka's message timestamp). Both are wall-clock
    milliseconds, so a figure is good to about a millisecond.
    """
    market = list(SyntheticMarket(symbols=20, ticks=ticks, seed=4, ticks_per_s=density))
    span = (market[-1].ts - market[0].ts).total_seconds()
    speed = rate * span / max(1, len(market) - 1)  # event time per wall second for ``rate``
    started = datetime.now(UTC)
    counts = run_pipeline(settings, iter(market), ticks, sorted({t.symbol for t in market}), speed=speed,
                          progress=False, warmup=warmup)
    conn = Connectors(settings)
    reader = conn.reader("validated_orders")
    out = []
    try:
        for part in range(reader.partitions):
            offset = 0
            while batch := reader.read(part, offset, 1000):
                offset = batch[-1].offset + 1
                for rec in batch:
                    order = decode(ValidatedOrder, rec.value)
                    if order.action is OrderAction.NEW and order.entered_at is not None and rec.written_at:
                        ms = (rec.written_at - order.entered_at).total_seconds() * 1000
                        out.append((order.entered_at, ms))
    finally:
        reader.close()
    took = None if counts.warmed_at is None else (counts.warmed_at - started).total_seconds()
    return Timed(out, speed, cpu_per_tick(counts.cpu_s, counts.ticks), counts.warmed_at, took)


def steady(timed: list[tuple[datetime, float]], after: datetime | None) -> list[float]:
    """Return the latencies of the orders whose tick entered after ``after`` (None: all).

    The feed starts with the jobs; the warm-up ticks queue while the jobs start (their
    orders wait up to that long, seconds on Kafka), so the steady state is the ticks fed
    once the pipeline had caught up on them.
    """
    return [ms for t, ms in timed if after is None or t >= after]


def latency_figures(
    plane: str, settings_for: Callable[[str], Settings], args: argparse.Namespace
) -> dict[str, object]:
    """The latency run at the live density (the headline figures), then fast-forwarded."""
    out: dict[str, object] = {}
    for label, density in (("", LIVE_DENSITY), ("_fast_forward", FAST_FORWARD_DENSITY)):
        settings = settings_for(f"{plane}{label}_lat")
        run = latency(settings, args.latency_ticks, args.rate, density, round(args.rate * args.warmup_s))
        lat = steady(run.orders, run.warmed_at)
        out[f"{plane}{label}_p50_ms"], out[f"{plane}{label}_p99_ms"] = pct(lat, 50), pct(lat, 99)
        out[f"{plane}{label}_orders_timed"] = len(lat)
        out[f"{plane}{label}_with_warmup_p99_ms"] = pct([ms for _, ms in run.orders], 99)
        took = run.warmup_took_s
        out[f"{plane}{label}_warmup_took_s"] = None if took is None else round(took, 1)
        out[f"{plane}{label}_market_speed"] = round(run.speed, 1)
        out[f"{plane}{label}_paced_cpu_us_per_tick"] = run.cpu
    return out


def pct(xs: list[float], p: float) -> float | None:
    """Return the p-th percentile of ``xs`` (``operators.stats``), rounded to 0.01; None if empty."""
    value = percentile(xs, p)
    return None if value is None else round(value, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=20_000)
    ap.add_argument("--latency-ticks", type=int, default=12_000, help="6 s at 2,000/s: 4 s after the warm-up")
    ap.add_argument("--rate", type=float, default=2000.0, help="ticks a second in the latency run")
    ap.add_argument("--warmup-s", type=float, default=2.0,
                    help="latency: feed S seconds of ticks first and time only what is fed once the "
                         "pipeline has caught up on them")
    ap.add_argument("--skip-kafka", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pipe-"))
    result: dict[str, object] = {"ticks": args.ticks}
    broker = None
    try:
        local = lambda name: load_settings(data_dir=work / name, profile="local")  # noqa: E731
        rate, wall, cpu = throughput(local("tp"), args.ticks)
        result["embedded_ticks_per_s"], result["embedded_wall_ticks_per_s"] = round(rate), round(wall)
        result["embedded_cpu_us_per_tick"] = cpu
        backtest, _, _ = throughput(local("et"), args.ticks, event_time=True)
        result["embedded_event_time_ticks_per_s"] = round(backtest)
        result.update(latency_figures("embedded", local, args))
        result["latency_rate_ticks_per_s"], result["warmup_s"] = args.rate, args.warmup_s
        if not args.skip_kafka:
            from tradeflow.infra.kafka import KafkaBroker

            broker = KafkaBroker(work / "kafka").start()

            def kafka(name: str) -> Settings:
                return load_settings(
                    data_dir=work / name, profile="kafka",
                    kafka={"bootstrap": broker.bootstrap_servers, "topic_prefix": f"{name}.",
                           "partitions": 2},
                )

            rate, wall, cpu = throughput(kafka("ktp"), args.ticks)
            result["kafka_ticks_per_s"], result["kafka_wall_ticks_per_s"] = round(rate), round(wall)
            result["kafka_cpu_us_per_tick"] = cpu
            result.update(latency_figures("kafka", kafka, args))
            result["ratio_kafka_vs_embedded"] = round(
                result["kafka_ticks_per_s"] / result["embedded_ticks_per_s"], 3  # type: ignore[operator]
            )
        report(result)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
