"""The catalogue of streams and tables (DESIGN §2): name, record model, kind, key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.base import Record
from schemas.journal import JournalEntry
from schemas.market import MarketData, SmaWide
from schemas.ops import DeadLetter, ExecutionMetrics, Progress
from schemas.strategy import StrategyConfig, TradeSignal
from schemas.trading import (
    Account,
    Control,
    Instrument,
    OrderState,
    PortfolioState,
    PositionState,
    RiskDecision,
    RiskEvent,
    Route,
    SymbolLimit,
    ValidatedOrder,
    Venue,
    VenueFill,
)


class Kind(StrEnum):
    """A log is append-only; a table is a changelog with the latest row per key."""

    LOG = "log"
    TABLE = "table"


@dataclass(frozen=True)
class StreamSpec:
    """What a stream carries and how it is keyed."""

    name: str
    model: type[Record]
    kind: Kind
    unique: tuple[str, ...] = ()
    """Fields that identify a log record; a sink drops a record whose id it already
    wrote (the replay after a crash re-emits identical records). Empty: no check."""
    trusted: bool = False
    """Written by one of our jobs from records it validated, and read by another: the
    reader may use the fast decode (``schemas.fast.fast_decode``: shape, types and ids
    checked, the models' value validators not run; what fails goes through ``decode``).
    Streams people, feeds or venues write stay validated, and so do trade_signals,
    validated_orders and venue_fills: the risk checks and the venue rely on their
    value validators (DECIMAL(18,8) ranges, limit price rules), and the hostile corpus
    (tests/hostile.py) writes into them."""

    def record_id(self, record: Record) -> str | None:
        """Return the record's unique id, or None if the stream has none."""
        if not self.unique:
            return None
        return "|".join(str(getattr(record, f)) for f in self.unique)

    @property
    def max_record_bytes(self) -> int:
        """Return the largest encoded record ``decode`` accepts on this stream."""
        return self.model.max_record_bytes

    @property
    def key_fields(self) -> tuple[str, ...]:
        """Return the fields that form the key (partitioning key or primary key)."""
        return self.model.key_fields


def _spec(
    name: str, model: type[Record], kind: Kind = Kind.LOG, unique: tuple[str, ...] = (), *,
    trusted: bool = False,
) -> tuple[str, StreamSpec]:
    return name, StreamSpec(name, model, kind, unique, trusted)


STREAMS: dict[str, StreamSpec] = dict(
    [
        _spec("market_data", MarketData),
        _spec("sma_wide", SmaWide, trusted=True),  # A -> B; B checks price > 0 itself
        _spec("strategy_config", StrategyConfig, Kind.TABLE),
        _spec("trade_signals", TradeSignal, unique=("signal_id",)),
        _spec("accounts", Account, Kind.TABLE),
        _spec("symbol_limits", SymbolLimit, Kind.TABLE),
        _spec("validated_orders", ValidatedOrder, unique=("order_id", "action")),
        _spec("venue_fills", VenueFill, unique=("venue", "exec_id")),
        _spec("orders", OrderState, Kind.TABLE),
        _spec("positions_state", PositionState, Kind.TABLE),
        _spec("portfolio_state", PortfolioState, Kind.TABLE),
        _spec("risk_events", RiskEvent, unique=("event_id",)),
        _spec("risk_decisions", RiskDecision, unique=("signal_id",)),
        _spec("shadow_decisions", RiskDecision, unique=("signal_id",)),
        _spec("execution_metrics", ExecutionMetrics),
        _spec("dead_letters", DeadLetter),
        _spec("control", Control, Kind.TABLE),
        _spec("risk_journal", JournalEntry, unique=("account", "seq")),
        _spec("routes", Route, Kind.TABLE),
        _spec("venues", Venue, Kind.TABLE),
        _spec("instruments", Instrument, Kind.TABLE),
        _spec("progress", Progress),  # event-time mode: Jobs B and D to Job C
    ]
)


def spec(name: str) -> StreamSpec:
    """Return the spec of a stream by its logical name, with a clear error if unknown."""
    try:
        return STREAMS[name]
    except KeyError:
        known = ", ".join(sorted(STREAMS))
        raise KeyError(f"unknown stream {name!r}; known streams: {known}") from None
