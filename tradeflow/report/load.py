"""Reading a run for the report: every output stream and table it plots, decoded.

Streams are read through ``Connectors(settings)``, so a run on the embedded store,
Kafka or Fluss reads the same; records that do not decode are counted, not raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from connectors.base import ConnectorError, StoredRecord, StreamReader
from connectors.registry import Connectors
from schemas import (
    DeadLetter,
    ExecutionMetrics,
    PortfolioState,
    PositionState,
    Record,
    RiskDecision,
    RiskEvent,
    SmaWide,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    decode,
)
from schemas.base import DecodeError
from tradeflow.settings import Profile, Settings

R = TypeVar("R", bound=Record)

# --- reading ------------------------------------------------------------------------


@dataclass
class RunData:
    """What a report is drawn from: the output streams of one run, decoded."""

    portfolio: list[PortfolioState] = field(default_factory=list)
    positions: list[PositionState] = field(default_factory=list)
    reports: list[VenueFill] = field(default_factory=list)
    signals: list[TradeSignal] = field(default_factory=list)
    orders: list[ValidatedOrder] = field(default_factory=list)
    decisions: list[RiskDecision] = field(default_factory=list)
    events: list[RiskEvent] = field(default_factory=list)
    metrics: list[ExecutionMetrics] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    prices: dict[str, list[SmaWide]] = field(default_factory=dict)
    """sma_wide rows of the symbols chosen for the price plot, in ``seq`` order."""
    rows_by_symbol: Counter[str] = field(default_factory=Counter)
    """sma_wide rows per symbol (counted from the keys, without decoding)."""
    market_ticks: int = 0
    span: tuple[datetime, datetime] | None = None
    """First and last event time of sma_wide: the market the run saw."""
    notes: list[str] = field(default_factory=list)
    """Problems met while reading (undecodable records, unreadable streams)."""

    @property
    def fills(self) -> list[VenueFill]:
        """Return the venue reports that are fills (``last_qty > 0``)."""
        return [f for f in self.reports if f.last_qty > 0]


class _Reader:
    """Reads whole streams through the registry, noting what could not be read."""

    def __init__(self, settings: Settings, notes: list[str]) -> None:
        self.settings = settings
        self.conn = Connectors(settings)
        self.notes = notes
        self.attempted: set[str] = set()
        self.failed: set[str] = set()

    def _open(self, stream: str) -> StreamReader | None:
        self.attempted.add(stream)
        try:
            return self.conn.reader(stream)
        except ConnectorError as exc:
            self.failed.add(stream)
            self.notes.append(f"{stream}: could not be read ({exc})")
            return None

    def _exists(self, stream: str) -> bool:
        # The embedded store opens (and so creates) a stream's file on first read; a
        # report must not write into the run it describes, so a missing file is empty.
        if self.settings.profile_for(stream) is not Profile.LOCAL:
            return True
        return (self.settings.data_dir / f"{self.settings.physical_name(stream)}.db").exists()

    def raw(self, stream: str) -> Iterator[StoredRecord]:
        """Yield every stored record of a stream, partition by partition, in offset order."""
        reader = self._open(stream) if self._exists(stream) else None
        if reader is None:
            return
        try:
            yield from reader.scan()
        finally:
            reader.close()

    def count(self, stream: str) -> int:
        """Return the number of records of a log stream (from its end offsets)."""
        reader = self._open(stream) if self._exists(stream) else None
        if reader is None:
            return 0
        try:
            return sum(reader.end_offsets().values())
        finally:
            reader.close()

    def records(
        self, stream: str, model: type[R], keep: Callable[[str | None], bool] | None = None
    ) -> list[R]:
        """Return a stream's records that decode (and whose key ``keep`` accepts)."""
        out: list[R] = []
        bad: Counter[str] = Counter()
        for rec in self.raw(stream):
            if keep is not None and not keep(rec.key):
                continue
            try:
                out.append(decode(model, rec.value))
            except DecodeError as exc:
                bad[str(exc)[:120]] += 1
        if bad:
            reason, _ = bad.most_common(1)[0]
            self.notes.append(
                f"{stream}: {sum(bad.values())} record(s) did not decode and were left out "
                f"(e.g. {reason})"
            )
        return out


def _price_symbols(data: RunData, n: int) -> list[str]:
    by_fills = Counter(f.symbol for f in data.fills)
    chosen = [s for s, _ in sorted(by_fills.items(), key=lambda kv: (-kv[1], kv[0]))][:n]
    for sym, _ in sorted(data.rows_by_symbol.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(chosen) >= n:
            break
        if sym not in chosen:
            chosen.append(sym)
    return [s for s in chosen if data.rows_by_symbol.get(s)]


def load_run(settings: Settings, *, price_symbols: int = 3) -> RunData:
    """Read the output streams and tables of a run into a ``RunData``."""
    data = RunData()
    rd = _Reader(settings, data.notes)
    data.portfolio = rd.records("portfolio_state", PortfolioState)
    data.positions = rd.records("positions_state", PositionState)
    data.reports = rd.records("venue_fills", VenueFill)
    data.signals = rd.records("trade_signals", TradeSignal)
    data.orders = rd.records("validated_orders", ValidatedOrder)
    data.decisions = rd.records("risk_decisions", RiskDecision)
    data.events = rd.records("risk_events", RiskEvent)
    data.metrics = rd.records("execution_metrics", ExecutionMetrics)
    data.dead_letters = rd.records("dead_letters", DeadLetter)
    data.market_ticks = rd.count("market_data")

    # sma_wide is the big one: count rows per symbol from the keys, decode only the
    # first and last row of each partition (the market's span) and the chosen symbols.
    edges: list[SmaWide] = []
    previous: StoredRecord | None = None
    for rec in rd.raw("sma_wide"):
        data.rows_by_symbol[rec.key or ""] += 1
        if previous is None or previous.partition != rec.partition:
            edges += _decoded_or_none(previous) + _decoded_or_none(rec)
        previous = rec
    edges += _decoded_or_none(previous)
    if edges:
        data.span = (min(r.ts for r in edges), max(r.ts for r in edges))
    chosen = set(_price_symbols(data, price_symbols))
    rows = rd.records("sma_wide", SmaWide, keep=lambda key: key in chosen)
    for row in sorted(rows, key=lambda r: (r.symbol, r.seq)):
        data.prices.setdefault(row.symbol, []).append(row)
    if rd.attempted and rd.failed == rd.attempted:
        raise ConnectorError("no output stream of the run could be read: " + "; ".join(data.notes))
    return data


def _decoded_or_none(rec: StoredRecord | None) -> list[SmaWide]:
    if rec is None:
        return []
    try:
        return [decode(SmaWide, rec.value)]
    except DecodeError:
        return []
