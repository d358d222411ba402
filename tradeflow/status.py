"""``tradeflow status``: per job and shard, is it alive and how far behind, from its metrics.

Every job serves Prometheus metrics on ``TRADEFLOW_METRICS_PORT`` (connectors.metrics).
This command scrapes each endpoint it is given and prints one row per process:

- ``job`` and ``shard`` (``I/N``): from ``tradeflow_shard``, set when the job starts;
- ``alive``: the endpoint answered;
- ``partitions``: the stream partitions the process reads (the labels of
  ``tradeflow_source_lag``; embedded store and Kafka sources report them);
- ``lag``: records behind the end of those partitions, summed;
- ``snapshot_age_s``: seconds since the job's last recovery snapshot;
- ``dead_letters`` and ``items_in``: counters since the process started
  (``items_in_by_stream`` splits the latter per input stream; the console uses the
  ``control`` count to tell when a job has read a control row it wrote).

A process that does not answer is a row with ``alive`` false, and the command exits 1,
so it serves as a probe in scripts. The parsing is a pure function of the metrics text
(``summarize``), tested without a server.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Status:
    """What one job process says of itself (or that it said nothing)."""

    target: str
    alive: bool
    job: str = "?"
    shard: str = "?"
    partitions: dict[str, list[int]] = field(default_factory=dict)
    lag: int | None = None
    snapshot_age_s: float | None = None
    dead_letters: int = 0
    items_in: int = 0
    items_in_by_stream: dict[str, int] = field(default_factory=dict)
    latency_buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Job D's order latency histogram per ``"<venue> <ack|fill>"``: (upper bound s, cumulative count)."""
    error: str | None = None


def url_of(target: str) -> str:
    """``host:port`` or a URL -> the metrics URL."""
    if "://" in target:
        return target if target.rstrip("/").endswith("/metrics") else target.rstrip("/") + "/metrics"
    return f"http://{target}/metrics"


def summarize(target: str, text: str, now: float) -> Status:
    """Read one process's status from its metrics text (``now``: wall time, seconds)."""
    st = Status(target, alive=True)
    parts: dict[str, set[int]] = defaultdict(set)
    lag = 0
    seen_lag = False
    snapshots: list[float] = []
    jobs: list[tuple[str, str]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "tradeflow_shard" and value:
                jobs.append((labels["job"], labels["shard"]))
            elif name == "tradeflow_source_lag":
                parts[labels["stream"]].add(int(labels["partition"]))
                lag += int(value)
                seen_lag = True
            elif name == "tradeflow_last_snapshot_timestamp_seconds" and value > 0:
                snapshots.append(value)
            elif name == "tradeflow_dead_letters_total":
                st.dead_letters += int(value)
            elif name == "tradeflow_order_latency_seconds_bucket":
                key = f"{labels.get('venue', '?')} {labels.get('kind', '?')}"
                st.latency_buckets.setdefault(key, []).append((float(labels["le"]), value))
            elif name == "tradeflow_items_in_total":
                st.items_in += int(value)
                stream = labels.get("stream", "?")
                st.items_in_by_stream[stream] = st.items_in_by_stream.get(stream, 0) + int(value)
    if jobs:
        st.job = ",".join(sorted({j for j, _ in jobs}))
        st.shard = ",".join(sorted({s for _, s in jobs}))
    st.partitions = {stream: sorted(ps) for stream, ps in sorted(parts.items())}
    st.lag = lag if seen_lag else None
    st.snapshot_age_s = round(now - max(snapshots), 1) if snapshots else None
    return st


def scrape(target: str, timeout_s: float = 3.0) -> Status:
    """Fetch one endpoint and summarize it; a process that does not answer is not alive."""
    try:
        with urllib.request.urlopen(url_of(target), timeout=timeout_s) as resp:  # noqa: S310 - operator's URL
            text = resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Status(target, alive=False, error=str(reason)[:200])
    return summarize(target, text, time.time())


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Return the upper bound of the histogram bucket holding quantile ``q`` (0..1), or None.

    ``buckets`` are Prometheus ``le`` bounds with cumulative counts; the answer is an
    upper bound (the true quantile is at most it), ``inf`` past the last finite bound.
    """
    ordered = sorted(buckets)
    total = ordered[-1][1] if ordered else 0
    if not total:
        return None
    for bound, cumulative in ordered:
        if cumulative >= q * total:
            return bound
    return ordered[-1][0]


def table(rows: Iterable[Status]) -> str:
    """Render statuses as an aligned text table."""
    head = ["target", "job", "shard", "alive", "partitions", "lag", "snapshot_age_s", "dead_letters",
            "items_in"]
    lines = [head]
    for st in rows:
        parts = " ".join(f"{s}:{','.join(map(str, ps))}" for s, ps in st.partitions.items()) or "-"
        lines.append([
            st.target, st.job, st.shard, "yes" if st.alive else f"NO ({st.error})", parts,
            "-" if st.lag is None else str(st.lag),
            "-" if st.snapshot_age_s is None else f"{st.snapshot_age_s:.1f}",
            str(st.dead_letters), str(st.items_in),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def as_json(rows: Iterable[Status]) -> str:
    """Render statuses as one JSON array."""
    return json.dumps([asdict(st) for st in rows])
