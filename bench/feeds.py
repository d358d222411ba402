"""Market feeds into market_data: the FIX market data feed against the file feed.

Measured in one run, into the embedded store (a fresh data directory each):

- ``file_feed_ticks_per_s`` (the baseline): a CSV of N synthetic ticks read, validated
  and written by ``tradeflow feed --input``'s path (``read_frame``, ``ticks_from_frame``,
  ``replay``) at full speed.
- ``fix_md_ticks_per_s``: ``connectors.fix.marketdata.FixMarketDataFeed`` subscribed at
  the real venue (``tradeflow.infra.fix_venue.FixVenue``, the JVM from deploy/fix-venue,
  started here on a free port) publishing N trades as fast as it can (its ``rate`` far
  above what either side keeps up with); from the venue's first publish to the last
  tick written. The feed's session store and state file are fsynced after every batch,
  as in production (``--no-fsync``: not, to see what the disk costs).
- ``fix_md_p50_ms`` / ``fix_md_p99_ms``: venue publish -> market_data row, at a paced
  ``--latency-rate`` (trades/s): from the venue's ``published_us`` (logged just before
  it hands the trade to the sessions) to the moment the feed's write of the batch
  holding the tick returned (both clocks are this machine's).
- ``fix_md_vs_file_feed``: the throughput ratio, the figure to compare across machines.

Usage: ``python bench/feeds.py [--ticks N] [--symbols K] [--latency-seconds S]
[--latency-rate R]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _root  # noqa: F401 - first: puts the repository root on sys.path

from bench.harness import report
from connectors.feeds import SyntheticMarket, read_frame, replay, ticks_from_frame
from connectors.fix.marketdata import FixMarketDataFeed
from connectors.fix.settings import FixSettings
from connectors.registry import Connectors
from operators.stats import percentile
from schemas import MarketData
from tradeflow.infra.fix_venue import FixVenue, VenueMarketData
from tradeflow.settings import load_settings


def file_feed(root: Path, ticks: int, symbols: int) -> float:
    """Return ticks/s of the file feed: CSV -> validated ticks -> market_data."""
    csv = root / "ticks.csv"
    rows = ["time,symbol,price,volume"]
    rows += [f"{t.ts.isoformat()},{t.symbol},{t.price},{t.volume}"
             for t in SyntheticMarket(symbols=symbols, ticks=ticks)]
    csv.write_text("\n".join(rows) + "\n")
    conn = Connectors(load_settings(data_dir=root / "file", profile="local"))
    writer = conn.writer("market_data")
    started = time.perf_counter()
    frame = read_frame(csv)
    n = replay(ticks_from_frame(frame), writer, total=len(frame), progress=False)
    elapsed = time.perf_counter() - started
    writer.close()
    if n != ticks:
        raise RuntimeError(f"the file feed wrote {n} ticks of {ticks}")
    return n / elapsed


def fix_feed(
    root: Path, name: str, ticks: int, symbols: int, rate: float, *, fsync: bool = True
) -> dict[str, Any]:
    """Run the venue for ``ticks`` trades at ``rate``/s and the FIX feed; return its figures."""
    names = [f"SYM{i:03d}" for i in range(symbols)]
    md = VenueMarketData(names, rate=rate, max_ticks=ticks, snapshot_depth=100, start_on_subscribe=True)
    venue = FixVenue(root / f"{name}-venue", market_data=md)
    written_us: dict[tuple[str, int], int] = {}

    def on_written(batch: list[MarketData]) -> None:
        now = time.time_ns() // 1000
        for tick in batch:
            written_us[(tick.symbol, tick.seq or 0)] = now

    conn = Connectors(load_settings(data_dir=root / name, profile="local"))
    writer, dead = conn.writer("market_data"), conn.writer("dead_letters")
    venue.start()
    try:
        settings = FixSettings(port=venue.port, sender_comp_id=venue.md_comp_id,
                               target_comp_id=venue.sender_comp_id, store_dir=root / name / "session",
                               fsync=fsync)
        feed = FixMarketDataFeed(settings, names, writer, dead, root / name / "state.json",
                                 market_data_reader=conn.reader("market_data"), on_written=on_written)
        stop = threading.Event()
        deadline = time.monotonic() + ticks / rate + 120

        def done() -> bool:
            return len(written_us) >= ticks or time.monotonic() > deadline

        feed.run(stop=stop, until=done, interval=0.01)
        published = venue.published_ticks()
    finally:
        venue.stop()
        writer.close()
        dead.close()
    latencies = [
        (written_us[(str(p["symbol"]), int(p["seq"]))] - int(p["published_us"])) / 1000
        for p in published if (str(p["symbol"]), int(p["seq"])) in written_us
    ]
    first_pub = min(int(p["published_us"]) for p in published)
    last_written = max(written_us.values())
    return {
        "ticks": len(written_us),
        "published": len(published),
        "ticks_per_s": len(written_us) / ((last_written - first_pub) / 1e6),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "status": feed.status(),
    }


def main() -> None:
    """Measure and print the figures; the last line is one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=50_000, help="ticks of the throughput runs")
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--latency-rate", type=float, default=500.0, help="trades/s of the latency run")
    ap.add_argument("--no-fsync", action="store_true",
                    help="the feed's session store and state file without fsync (production fsyncs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as tmp:
        root = Path(tmp)
        file_tps = file_feed(root, args.ticks, args.symbols)
        fsync = not args.no_fsync
        burst = fix_feed(root, "fix-burst", args.ticks, args.symbols, rate=1_000_000.0, fsync=fsync)
        paced = fix_feed(root, "fix-paced", int(args.latency_seconds * args.latency_rate), args.symbols,
                         rate=args.latency_rate, fsync=fsync)
    report({
        "ticks": args.ticks,
        "symbols": args.symbols,
        "fsync": not args.no_fsync,
        "file_feed_ticks_per_s": round(file_tps),
        "fix_md_ticks_per_s": round(burst["ticks_per_s"]),
        "fix_md_vs_file_feed": round(burst["ticks_per_s"] / file_tps, 3),
        "fix_md_burst_ticks": burst["ticks"],
        "fix_md_burst_p99_ms": round(burst["p99_ms"], 1),
        "fix_md_latency_rate": args.latency_rate,
        "fix_md_latency_ticks": paced["ticks"],
        "fix_md_p50_ms": round(paced["p50_ms"], 2),
        "fix_md_p99_ms": round(paced["p99_ms"], 2),
        "fix_md_gaps": burst["status"]["gaps"] + paced["status"]["gaps"],
        "fix_md_lost": burst["status"]["lost"] + paced["status"]["lost"],
    })


if __name__ == "__main__":
    main()
