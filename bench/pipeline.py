"""End-to-end pipeline figures: the whole system (A, B x2, C, D paper) as processes.

- Throughput: ticks through the pipeline per second at full replay speed, on the
  embedded store and on a real Kafka broker (started here), same synthetic market.
- Latency: tick written -> validated order written (wall clock), with the market
  replayed at a modest pace so the pipeline is not saturated; orders are matched to
  their tick by (symbol, event time), and observed by polling every 5 ms.

Usage: ``python bench/pipeline.py [--ticks N] [--skip-kafka]``. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import _root  # noqa: F401 - first: puts the repository root on sys.path

from bench.harness import report
from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.stats import percentile
from schemas import OrderAction, ValidatedOrder, decode
from tradeflow.pipeline import run_pipeline


def throughput(settings: Settings, ticks: int) -> float:
    market = SyntheticMarket(symbols=20, ticks=ticks, seed=3)
    counts = run_pipeline(settings, iter(market), ticks, market.symbol_names(), progress=False, settle_s=2.0)
    return counts.ticks / counts.seconds


class StampedTicks:
    """Ticks that remember the wall time they were handed to the writer."""

    def __init__(self, market: SyntheticMarket) -> None:
        self.market = market
        self.written: dict[tuple[str, str], float] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        for tick in self.market:
            self.written[(tick.symbol, tick.ts.isoformat())] = time.perf_counter()
            yield tick


def latency(settings: Settings, ticks: int, speed: float) -> list[float]:
    market = SyntheticMarket(symbols=20, ticks=ticks, seed=4)
    stamped = StampedTicks(market)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        conn = Connectors(settings)
        offsets: dict[int, int] = {}
        while not stop.is_set():
            try:
                reader = conn.reader("validated_orders")
            except Exception:  # noqa: BLE001 - the stream may not exist yet
                time.sleep(0.05)
                continue
            for part in range(reader.partitions):
                for rec in reader.read(part, offsets.get(part, 0), 1000):
                    offsets[part] = rec.offset + 1
                    order = decode(ValidatedOrder, rec.value)
                    if order.action is OrderAction.NEW:
                        seen.setdefault(f"{order.symbol}|{order.ts.isoformat()}", time.perf_counter())
            reader.close()
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_pipeline(settings, iter(stamped), ticks, market.symbol_names(), speed=speed, progress=False)
    finally:
        stop.set()
        watcher.join(5)
    out = []
    for key, at in seen.items():
        symbol, ts = key.split("|", 1)
        wrote = stamped.written.get((symbol, ts))
        if wrote is not None:
            out.append((at - wrote) * 1000)
    return out


def pct(xs: list[float], p: float) -> float | None:
    """Return the p-th percentile of ``xs`` (``operators.stats``), rounded to 0.01; None if empty."""
    value = percentile(xs, p)
    return None if value is None else round(value, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=20_000)
    ap.add_argument("--latency-ticks", type=int, default=4_000)
    ap.add_argument("--speed", type=float, default=10.0, help="replay pace for the latency run")
    ap.add_argument("--skip-kafka", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pipe-"))
    result: dict[str, object] = {"ticks": args.ticks}
    broker = None
    try:
        local = lambda name: load_settings(data_dir=work / name, profile="local")  # noqa: E731
        result["embedded_ticks_per_s"] = round(throughput(local("tp"), args.ticks))
        lat = latency(local("lat"), args.latency_ticks, args.speed)
        result["embedded_p50_ms"], result["embedded_p99_ms"] = pct(lat, 50), pct(lat, 99)
        result["embedded_orders_timed"] = len(lat)
        if not args.skip_kafka:
            from tradeflow.infra.kafka import KafkaBroker

            broker = KafkaBroker(work / "kafka").start()

            def kafka(name: str) -> Settings:
                return load_settings(
                    data_dir=work / name, profile="kafka",
                    kafka={"bootstrap": broker.bootstrap_servers, "topic_prefix": f"{name}.",
                           "partitions": 2},
                )

            result["kafka_ticks_per_s"] = round(throughput(kafka("ktp"), args.ticks))
            lat = latency(kafka("klat"), args.latency_ticks, args.speed)
            result["kafka_p50_ms"], result["kafka_p99_ms"] = pct(lat, 50), pct(lat, 99)
            result["kafka_orders_timed"] = len(lat)
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
