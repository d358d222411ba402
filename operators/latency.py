"""Per-hop latency of a run, from its records' stamps and write times (``tradeflow latency``).

Pure: records in, figures out. A tick is stamped ``entered_at`` by the feed as it is
written to market_data and every record derived from it carries that value; the time
each record was written is the store's (``connectors.base.StoredRecord.written_at``:
the embedded store's append time, Kafka's message timestamp), never a field of the
record, so a replayed record is the same record. A hop is measured per record,
between two write times of one chain of records:

- ``feed->A``: an sma_wide row's write time - its ``entered_at`` (the tick's entry);
- ``A->B``: a signal's write time - that of the sma_wide row it fired on
  (``signal_id`` = ``strategy:SYMBOL:seq``: the row's symbol and seq);
- ``B->C``: a validated order's write time - that of its signal (by ``signal_id``);
- ``C->D->ack``: the order's first venue_fills report's write time - the order's
  (Job D's send and the venue's answer together: D stamps no send time);
- ``feed->ack``: that first report's write time - ``entered_at``: end to end.

Stamps are UTC milliseconds (``schemas.base.Stamp``), so each figure is within a
millisecond. Records without a stamp or a write time (a run from before them, a table
row, an order Job C made up, a backend without write times) are not counted; a record
whose partner is missing is not either. The first write of an id counts (a replay
written again later is not a new hop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from operators.stats import percentile
from schemas import SmaWide, TradeSignal, ValidatedOrder, VenueFill
from schemas.trading import OrderAction

R = TypeVar("R")

HOPS = ("feed->A", "A->B", "B->C", "C->D->ack", "feed->ack")
"""The hops ``breakdown`` reports, in pipeline order."""


@dataclass(frozen=True, slots=True)
class HopFigures:
    """Latency of one hop over a run, in milliseconds (None when ``count`` is 0)."""

    hop: str
    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def hop_figures(hop: str, pairs: Iterable[tuple[datetime, datetime]]) -> HopFigures:
    """Return count, p50, p90, p99 and max of ``end - start`` over ``(start, end)`` pairs."""
    ms = [(end - start).total_seconds() * 1000 for start, end in pairs]
    return HopFigures(hop, len(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99),
                      max(ms) if ms else None)


Written = tuple[R, datetime | None]
"""A record and the time the store says it was written (None: not known)."""

Pair = tuple[datetime, datetime]
"""The start and end of one measured hop."""


def breakdown(
    rows: Iterable[Written[SmaWide]], signals: Iterable[Written[TradeSignal]],
    orders: Iterable[Written[ValidatedOrder]], fills: Iterable[Written[VenueFill]],
) -> list[HopFigures]:
    """Return the figures of every hop in ``HOPS`` from a run's records and their write times."""
    row_at, feed_a = _rows(rows)
    signal_at, a_b = _signals(signals, row_at)
    order_at: dict[str, tuple[datetime, datetime | None]] = {}
    b_c: list[tuple[datetime, datetime]] = []
    for order, at in orders:
        if order.action is not OrderAction.NEW or at is None or order.order_id in order_at:
            continue
        order_at[order.order_id] = (at, order.entered_at)
        signal_written = signal_at.get(order.signal_id or "")
        if signal_written is not None:
            b_c.append((signal_written, at))
    first_report: dict[str, datetime] = {}
    for fill, at in fills:
        if at is not None and fill.order_id in order_at:
            known = first_report.get(fill.order_id)
            if known is None or at < known:
                first_report[fill.order_id] = at
    c_ack = [(order_at[oid][0], at) for oid, at in first_report.items()]
    feed_ack = [(entered, at) for oid, at in first_report.items()
                if (entered := order_at[oid][1]) is not None]
    return [hop_figures(hop, pairs) for hop, pairs in zip(HOPS, (feed_a, a_b, b_c, c_ack, feed_ack),
                                                           strict=True)]


def _rows(rows: Iterable[Written[SmaWide]]) -> tuple[dict[tuple[str, int], datetime], list[Pair]]:
    """Return each row's first write time by (symbol, seq), and the feed->A pairs."""
    row_at: dict[tuple[str, int], datetime] = {}
    feed_a: list[Pair] = []
    for row, at in rows:
        if at is None or (row.symbol, row.seq) in row_at:
            continue
        row_at[(row.symbol, row.seq)] = at
        if row.entered_at is not None:
            feed_a.append((row.entered_at, at))
    return row_at, feed_a


def _signals(
    signals: Iterable[Written[TradeSignal]], row_at: dict[tuple[str, int], datetime]
) -> tuple[dict[str, datetime], list[Pair]]:
    """Return each signal's first write time by id, and the A->B pairs."""
    signal_at: dict[str, datetime] = {}
    a_b: list[Pair] = []
    for sig, at in signals:
        if at is None or sig.signal_id in signal_at:
            continue  # no write time, or a replay: the first write counts
        signal_at[sig.signal_id] = at
        row_written = row_at.get((sig.symbol, _row_seq(sig.signal_id)))
        if row_written is not None:
            a_b.append((row_written, at))
    return signal_at, a_b


def _row_seq(signal_id: str) -> int:
    """Return the sma_wide seq a signal id names (``strategy:SYMBOL:seq``), or -1."""
    tail = signal_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else -1


def render(figures: Iterable[HopFigures]) -> str:
    """Render hop figures as a plain-text table (milliseconds; ``-`` where there are none)."""
    head: tuple[str, ...] = ("hop", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    lines = [head]
    for f in figures:
        lines.append((f.hop, str(f.count), *(_ms(v) for v in (f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(_line(line, widths) for line in lines)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    first, *rest = cells
    right = (cell.rjust(w) for cell, w in zip(rest, widths[1:], strict=True))
    return "  ".join([first.ljust(widths[0]), *right]).rstrip()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


__all__ = ["HOPS", "HopFigures", "breakdown", "hop_figures", "render"]
