"""Per-hop latency of a run, from the stamps its records carry (``tradeflow latency``).

Pure: records in, figures out. A tick is stamped ``entered_at`` by the feed as it is
written to market_data; every record derived from it carries that value, and each job
stamps what it writes with ``written_at`` (``flows.common.output``). A hop is measured
per record, between two write times of one chain of records:

- ``feed->A``: sma_wide ``written_at`` - its ``entered_at`` (the tick's entry);
- ``A->B``: trade_signals ``written_at`` - that of the sma_wide row it fired on
  (``signal_id`` = ``strategy:SYMBOL:seq``: the row's symbol and seq);
- ``B->C``: validated_orders ``written_at`` - that of its signal (by ``signal_id``);
- ``C->D->ack``: the order's first venue_fills report ``written_at`` - the order's
  (Job D's send and the venue's answer together: D stamps no send time);
- ``feed->ack``: that first report's ``written_at`` - ``entered_at``: end to end.

Stamps are UTC milliseconds (``schemas.base.Stamp``), so each figure is within a
millisecond. Records without stamps (a run from before them, a table row, an order
Job C made up) are not counted; a record whose partner is missing is not either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from operators.stats import percentile
from schemas import SmaWide, TradeSignal, ValidatedOrder, VenueFill
from schemas.trading import OrderAction

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


def breakdown(
    rows: Iterable[SmaWide], signals: Iterable[TradeSignal], orders: Iterable[ValidatedOrder],
    fills: Iterable[VenueFill],
) -> list[HopFigures]:
    """Return the figures of every hop in ``HOPS`` from a run's stamped records."""
    row_at: dict[tuple[str, int], datetime] = {}
    feed_a: list[tuple[datetime, datetime]] = []
    for row in rows:
        if row.entered_at is not None and row.written_at is not None:
            row_at.setdefault((row.symbol, row.seq), row.written_at)
            feed_a.append((row.entered_at, row.written_at))
    signal_at: dict[str, datetime] = {}
    a_b: list[tuple[datetime, datetime]] = []
    for sig in signals:
        if sig.written_at is None or sig.signal_id in signal_at:
            continue  # unstamped, or a replay: the first write counts
        signal_at[sig.signal_id] = sig.written_at
        row_written = row_at.get((sig.symbol, _row_seq(sig.signal_id)))
        if row_written is not None:
            a_b.append((row_written, sig.written_at))
    order_at: dict[str, tuple[datetime, datetime | None]] = {}
    b_c: list[tuple[datetime, datetime]] = []
    for order in orders:
        if order.action is not OrderAction.NEW or order.written_at is None or order.order_id in order_at:
            continue
        order_at[order.order_id] = (order.written_at, order.entered_at)
        signal_written = signal_at.get(order.signal_id or "")
        if signal_written is not None:
            b_c.append((signal_written, order.written_at))
    first_report: dict[str, datetime] = {}
    for fill in fills:
        if fill.written_at is not None and fill.order_id in order_at:
            known = first_report.get(fill.order_id)
            if known is None or fill.written_at < known:
                first_report[fill.order_id] = fill.written_at
    c_ack = [(order_at[oid][0], at) for oid, at in first_report.items()]
    feed_ack = [(entered, at) for oid, at in first_report.items()
                if (entered := order_at[oid][1]) is not None]
    return [hop_figures(hop, pairs) for hop, pairs in zip(HOPS, (feed_a, a_b, b_c, c_ack, feed_ack),
                                                           strict=True)]


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
