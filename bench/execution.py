"""Job D's venue adapters: FIX and REST round trips to the real venue vs the paper venue.

Starts its own venue (``tradeflow.infra.fix_venue.FixVenue``, the JVM acceptor from
deploy/fix-venue, on 127.0.0.1 with a free port, every order filled in one slice) and
stops it at the end. Measured in one run, on the same orders (market BUYs of one
symbol):

- ``fix`` throughput: N orders handed to ``connectors.venues.fix.FixVenue.submit`` at
  once, timed from the first submit until ``poll_reports`` has returned a FILLED
  report for every one of them: the whole round trip through our session layer (file
  store and report outbox, fsynced unless ``--no-fsync``), TCP, the venue and back.
- ``fix`` ack latency at 500 orders/s (``fix_ack_p50_ms``/``fix_ack_p99_ms``): 1,000 orders
  submitted on a fixed schedule (open loop), from ``submit`` to the NEW report coming
  out of ``poll_reports`` (polled every 0.2 ms); and the same one order at a time
  (closed loop, ``fix_one_at_a_time_ack_*``).
- ``plain`` (``bench/plainfix.py``): a plain simplefix send/ack loop on the same acceptor
  and session, with no store, no fsync and no I/O thread; its throughput measured the
  same way and its acks at the same pace. ``fix_vs_plain_simplefix`` is the adapter's
  throughput over it: the two take turns ``--rounds`` times (sequence numbers reset at
  each logon) and the best of each counts, so both are measured under the same load.
- ``paper``: the same N orders through ``PaperVenue`` (in process, filled against one
  market tick), timed the same way; and its ack latency the same way.

- ``rest`` throughput and ack latency: the same two measures through
  ``connectors.venues.rest.RestVenue`` against the same venue's HTTP API and user stream
  (same JVM, same order book, same run), our own pace set out of the way.

The ratio ``fix / paper`` is the figure to compare across machines. A warm-up batch
(not measured) runs first so the venue's JIT is warm.

The process runs with a job's collector thresholds (``connectors.runtime``, as Job D
does; ``--default-gc`` for Python's own: one full collection of this process's objects
stalled the paced acks 33 ms).

Usage: ``python bench/execution.py [--orders N] [--latency-orders M] [--rounds R] [--no-fsync]
[--default-gc]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import _root  # noqa: F401 - first: puts the repository root on sys.path

from bench import plainfix
from bench.harness import report
from connectors.fix.settings import FixSettings
from connectors.rest.settings import RestSettings
from connectors.runtime import JOB_GC_THRESHOLDS, tune_gc
from connectors.venues import VenueAdapter
from connectors.venues.fix import FixVenue
from connectors.venues.paper import PaperVenue
from connectors.venues.rest import RestVenue
from operators.stats import percentile
from schemas import ExecStatus, MarketData, Side, ValidatedOrder
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue
from tradeflow.infra.rest_venue import VenueRest

SYMBOL = "AAPL"
POLL_S = 0.0002
TIMEOUT_S = 300.0
PACED_RATE = 500.0
"""Orders a second in the paced ack measure (issue 20: ack p99 <= 10 ms at this rate)."""
PACED_ORDERS = 1000


def orders(prefix: str, n: int) -> list[ValidatedOrder]:
    """Return ``n`` market BUY orders of 10 ``SYMBOL`` with ids ``<prefix><i>``."""
    ts = datetime.now(UTC)
    return [
        ValidatedOrder(order_id=f"{prefix}{i}", account="BENCH", symbol=SYMBOL, side=Side.BUY,
                       qty=Decimal(10), ts=ts)
        for i in range(n)
    ]


def throughput(adapter: VenueAdapter, batch: list[ValidatedOrder]) -> float:
    """Submit ``batch`` at once; return orders per second until every one is FILLED."""
    want = {o.order_id for o in batch}
    t0 = time.perf_counter()
    for o in batch:
        adapter.submit(o)
    deadline = time.monotonic() + TIMEOUT_S
    while want:
        for rep in adapter.poll_reports():
            if rep.status is ExecStatus.FILLED:
                want.discard(rep.order_id)
            elif rep.status is ExecStatus.REJECTED:
                raise RuntimeError(f"{rep.order_id} rejected: {rep.reason}")
        if want and time.monotonic() > deadline:
            raise RuntimeError(f"{len(want)} orders not filled in {TIMEOUT_S}s: {adapter.health()}")
        if want:
            time.sleep(POLL_S)
    return len(batch) / (time.perf_counter() - t0)


def ack_latencies(adapter: VenueAdapter, batch: list[ValidatedOrder]) -> list[float]:
    """Send orders one at a time; return ms from submit to NEW (each waits for its fill)."""
    out: list[float] = []
    for o in batch:
        t0 = time.perf_counter()
        adapter.submit(o)
        acked = filled = False
        deadline = time.monotonic() + TIMEOUT_S
        while not filled:
            for rep in adapter.poll_reports():
                if rep.order_id != o.order_id:
                    continue
                if rep.status in (ExecStatus.NEW, ExecStatus.ACK) and not acked:
                    acked = True
                    out.append((time.perf_counter() - t0) * 1000)
                filled = filled or rep.status is ExecStatus.FILLED
            if time.monotonic() > deadline:
                raise RuntimeError(f"{o.order_id} not filled in {TIMEOUT_S}s: {adapter.health()}")
            if not filled:
                time.sleep(POLL_S)
    return out


def paced_acks(adapter: VenueAdapter, batch: list[ValidatedOrder], rate: float) -> list[float]:
    """Submit ``batch`` at ``rate`` orders a second (open loop); return ms from each submit
    to its NEW report, waiting at the end until every order is FILLED."""
    sent: dict[str, float] = {}
    acks: list[float] = []
    filled = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT_S
    while filled < len(batch):
        due = min(len(batch), int((time.perf_counter() - t0) * rate) + 1)
        while len(sent) < due:
            o = batch[len(sent)]
            sent[o.order_id] = time.perf_counter()
            adapter.submit(o)
        for rep in adapter.poll_reports():
            at = sent.get(rep.order_id)
            if at is None:
                continue
            if rep.status in (ExecStatus.NEW, ExecStatus.ACK):
                acks.append((time.perf_counter() - at) * 1000)
            elif rep.status is ExecStatus.FILLED:
                filled += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(batch) - filled} paced orders not filled in {TIMEOUT_S}s")
        time.sleep(POLL_S)
    return acks


def run_plain(venue: QuickFixVenue, n: int, paced: int, rate: float, prefix: str) -> dict[str, Any]:
    """Measure the plain simplefix loop on the same acceptor and session (the adapter logged out)."""
    fix = plainfix.PlainFix(venue.host, venue.port, venue.target_comp_id, venue.sender_comp_id)
    try:
        fix.logon()
        plainfix.throughput(fix, f"{prefix}W", min(n, 500), SYMBOL)  # warm-up, not measured
        rate_out = plainfix.throughput(fix, f"{prefix}T", n, SYMBOL)
        acks = plainfix.paced_acks(fix, f"{prefix}P", paced, rate, SYMBOL) if paced else []
    finally:
        fix.close()
    return {"orders_per_s": rate_out, "paced_acks": acks}


def run_fix(
    store: Path, venue: QuickFixVenue, n: int, m: int, fsync: bool, prefix: str, latency: bool
) -> dict[str, Any]:
    """Measure the FIX adapter against the running venue (sequence numbers reset at logon,
    as the plain loop's are: the two take turns on one session)."""
    settings = FixSettings(
        host=venue.host, port=venue.port, sender_comp_id=venue.target_comp_id,
        target_comp_id=venue.sender_comp_id, store_dir=store, fsync=fsync, reset_on_logon=True,
    )
    adapter = FixVenue(settings)
    return measure(adapter, adapter.wait_logged_on, "logon", prefix, n, m if latency else 0)


def run_rest(store: Path, venue: QuickFixVenue, n: int, m: int, fsync: bool) -> dict[str, Any]:
    """Measure the REST adapter against the same running venue's HTTP API."""
    assert venue.rest is not None  # noqa: S101 - started with one
    settings: RestSettings = venue.rest.client_settings(
        store, fsync=fsync, rate_limit_per_s=1_000_000, rate_burst=10_000, max_concurrent=16
    )
    adapter = RestVenue(settings)
    return measure(adapter, adapter.wait_connected, "user stream", "R", n, m)


def measure(
    adapter: VenueAdapter, connected: Callable[[float], bool], what: str, prefix: str, n: int, m: int
) -> dict[str, Any]:
    """Connect ``adapter``, wait for ``connected`` (its ``what``), then measure it and close it.

    A warm-up batch, then throughput over ``n`` orders and ack latency over ``m`` sent one at
    a time; order ids start with ``prefix``.
    """
    adapter.connect()
    try:
        if not connected(30):
            raise RuntimeError(f"no {what}: {adapter.health()}")
        throughput(adapter, orders(f"{prefix}W", min(n, 500)))  # warm-up, not measured
        rate = throughput(adapter, orders(f"{prefix}T", n))
        acks = ack_latencies(adapter, orders(f"{prefix}L", m)) if m else []
        paced = paced_acks(adapter, orders(f"{prefix}P", PACED_ORDERS), PACED_RATE) if m else []
        health = adapter.health().as_dict()
    finally:
        adapter.close()
    return {"orders_per_s": rate, "acks": acks, "paced_acks": paced, "health": health}


def run_paper(n: int, m: int) -> dict[str, Any]:
    """Measure the paper venue on the same orders (one tick fills every one)."""
    def venue() -> PaperVenue:
        paper = PaperVenue()
        paper.connect()
        tick = MarketData(symbol=SYMBOL, ts=datetime.now(UTC) + timedelta(hours=1), price=Decimal(100),
                          volume=Decimal(1_000_000))
        paper.on_market(tick)  # every later order is eligible for it: fills on submit
        return paper

    make: Callable[[], PaperVenue] = venue
    throughput(make(), orders("W", min(n, 500)))
    rate = throughput(make(), orders("T", n))
    acks = ack_latencies(make(), orders("L", m))
    return {"orders_per_s": rate, "acks": acks}


def main() -> None:
    """Run the benchmark and print its figures, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders in the throughput batch")
    parser.add_argument("--latency-orders", type=int, default=300, help="orders sent one at a time")
    parser.add_argument("--rounds", type=int, default=3,
                        help="FIX adapter and plain simplefix throughput runs, taking turns; best of each")
    parser.add_argument("--no-fsync", action="store_true", help="FIX and REST stores without fsync")
    parser.add_argument("--default-gc", action="store_true",
                        help="Python's collector thresholds instead of a job's (connectors.runtime)")
    args = parser.parse_args()
    fsync = not args.no_fsync
    tune_gc(None if args.default_gc else JOB_GC_THRESHOLDS)  # the adapters run in Job D's process

    with tempfile.TemporaryDirectory(prefix="bench-execution-") as tmp:
        t0 = time.monotonic()
        venue = QuickFixVenue(Path(tmp) / "venue", reject_symbols=(), partial_fills=1, rest=VenueRest())
        venue.start()
        venue_start_s = time.monotonic() - t0
        try:
            fixes, plains = [], []
            for r in range(args.rounds):  # taking turns, so both see the same load
                first = r == 0
                fixes.append(run_fix(Path(tmp) / f"initiator{r}", venue, args.orders, args.latency_orders,
                                     fsync, f"F{r}-", latency=first))
                paced = PACED_ORDERS if first else 0
                plains.append(run_plain(venue, args.orders, paced, PACED_RATE, f"P{r}-"))
                print(f"round {r}: fix {fixes[-1]['orders_per_s']:.0f} orders/s, "
                      f"plain simplefix {plains[-1]['orders_per_s']:.0f}", flush=True)
            fix, plain = fixes[0], plains[0]
            fix_best = max(f["orders_per_s"] for f in fixes)
            plain_best = max(p["orders_per_s"] for p in plains)
            rest = run_rest(Path(tmp) / "rest", venue, args.orders, args.latency_orders, fsync)
        finally:
            venue.stop()
    paper = run_paper(args.orders, args.latency_orders)

    health = fix["health"]
    result = {
        "orders": args.orders,
        "latency_orders": args.latency_orders,
        "fsync": fsync,
        "rounds": args.rounds,
        "fix_orders_per_s": round(fix_best, 1),
        "fix_one_at_a_time_ack_p50_ms": round(percentile(fix["acks"], 50), 3),
        "fix_one_at_a_time_ack_p99_ms": round(percentile(fix["acks"], 99), 3),
        "paced_orders_per_s": PACED_RATE,
        "fix_ack_p50_ms": round(percentile(fix["paced_acks"], 50), 3),
        "fix_ack_p99_ms": round(percentile(fix["paced_acks"], 99), 3),
        "plain_simplefix_orders_per_s": round(plain_best, 1),
        "plain_paced_ack_p50_ms": round(percentile(plain["paced_acks"], 50), 3),
        "plain_paced_ack_p99_ms": round(percentile(plain["paced_acks"], 99), 3),
        "fix_vs_plain_simplefix": round(fix_best / plain_best, 3),
        "fix_vs_plain_simplefix_per_round": [
            round(f["orders_per_s"] / p["orders_per_s"], 3) for f, p in zip(fixes, plains, strict=True)
        ],
        "rest_orders_per_s": round(rest["orders_per_s"], 1),
        "rest_ack_p50_ms": round(percentile(rest["acks"], 50), 3),
        "rest_ack_p99_ms": round(percentile(rest["acks"], 99), 3),
        "paper_orders_per_s": round(paper["orders_per_s"], 1),
        "paper_ack_p50_ms": round(percentile(paper["acks"], 50), 4),
        "paper_ack_p99_ms": round(percentile(paper["acks"], 99), 4),
        "ratio_fix_vs_paper": round(fix_best / paper["orders_per_s"], 5),
        "fix_msgs_sent": health.get("msgs_sent"),
        "fix_msgs_received": health.get("msgs_received"),
        "rest_requests": rest["health"].get("requests"),
        "rest_duplicates_dropped": rest["health"].get("duplicates"),
        "venue_start_s": round(venue_start_s, 2),
        "gc_thresholds": list(gc.get_threshold()),
    }
    report(result)


if __name__ == "__main__":
    main()
