"""Prometheus metrics of a job, served on ``TRADEFLOW_METRICS_PORT`` when it is set.

Every job counts items in and out per stream and dead letters per source stream; Job
C counts pre-trade checks by rule and result; Job D observes order ack and fill
latency; embedded-store sources report their lag (records behind the end) per
partition; every job observes, as it writes a record that carries ``entered_at``, the
wall time since that record's tick entered the system (``HOP_LATENCY``). Counters live
per process (one per Bytewax process).
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

ITEMS_IN = Counter("tradeflow_items_in", "Records decoded from a stream", ["job", "stream"])
ITEMS_OUT = Counter("tradeflow_items_out", "Records written to a stream", ["job", "stream"])
DEAD_LETTERS = Counter("tradeflow_dead_letters", "Records sent to dead_letters", ["job", "stream"])
RISK_CHECKS = Counter("tradeflow_risk_checks", "Pre-trade rule evaluations", ["rule", "result"])
ORDER_LATENCY = Histogram(
    "tradeflow_order_latency_seconds",
    "Wall time from handing an order to the venue to its ack or final fill",
    ["venue", "kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HOP_LATENCY = Histogram(
    "tradeflow_hop_latency_seconds",
    "Wall time from a tick entering the system (entered_at) to a job writing a record it led to",
    ["job", "stream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
"""One series per hop: the job and the stream it writes (Job A ``sma_wide``, B
``trade_signals``, C ``validated_orders``, D ``venue_fills``). Cumulative from entry, so
the difference of two hops' figures is the time spent between them."""
SOURCE_LAG = Gauge("tradeflow_source_lag", "Records behind the end of a stream", ["stream", "partition"])
"""One series per partition this process reads (embedded store and Kafka sources), so
its labels are also the partitions the process owns (``tradeflow status``)."""
SHARD = Gauge("tradeflow_shard", "The shard I/N this process runs of its job (value 1)", ["job", "shard"])
LAST_SNAPSHOT = Gauge(
    "tradeflow_last_snapshot_timestamp_seconds", "Wall time of the job's last recovery snapshot", ["job"]
)

_lock = threading.Lock()
_served: int | None = None


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """Observe each of ``amounts`` in ``histogram`` (a child): what ``observe`` of each does.

    ``Histogram.observe`` takes two locks per value and walks the buckets in Python; a
    job observes every record it writes (``HOP_LATENCY``), so per batch the values are
    counted into their buckets here and each bucket and the sum take one ``inc``. It
    reads the histogram's ``_upper_bounds``, ``_buckets`` and ``_sum`` (prometheus-client
    is pinned; tests/unit/test_metrics_batch.py holds this to ``observe``).
    """
    histogram._raise_if_not_observable()  # noqa: SLF001 - the checks observe makes
    bounds = histogram._upper_bounds  # noqa: SLF001 - sorted, the last one +Inf
    per_bucket: Tally[int] = Tally()
    total = 0.0
    seen = False
    for amount in amounts:
        seen = True
        total += amount
        if amount == amount:  # noqa: PLR0124 - NaN: observe adds it to the sum, to no bucket
            per_bucket[bisect_left(bounds, amount)] += 1  # the first bound >= amount, as observe
    if not seen:
        return
    histogram._sum.inc(total)  # noqa: SLF001
    buckets = histogram._buckets  # noqa: SLF001
    for i, n in per_bucket.items():
        buckets[i].inc(n)


def serve(port: int | None, host: str = "127.0.0.1") -> int | None:
    """Start the metrics HTTP endpoint on ``host``:``port`` once per process."""
    global _served
    if port is None:
        return None
    with _lock:
        if _served is None:
            start_http_server(port, addr=host)
            _served = port
            log.info("metrics on http://%s:%d/metrics", host, port)
    return _served
