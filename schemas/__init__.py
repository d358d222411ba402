"""Pydantic models of every stream and table, and their one JSON encoding.

``encode`` is the fast encoder (``schemas.fast``): the same bytes as the pydantic path
(``schemas.base.encode``), for every record. ``decode`` validates (ingress);
``checked_decode`` returns or refuses what ``decode`` does, faster (the flows read
streams from outside with it); ``fast_decode`` is for internal hops only.
"""

from schemas.base import SCHEMA_VERSION, DecodeError, Record, Side, decode, validate
from schemas.fast import checked_decode, fast_decode
from schemas.fast import fast_encode as encode
from schemas.journal import JournalEntry, JournalKind, JournalMark
from schemas.market import MarketData, SmaWide
from schemas.ops import DeadLetter, ExecutionMetrics, Progress
from schemas.strategy import OrderType, Sizing, StrategyConfig, TradeSignal
from schemas.streams import STREAMS, Kind, StreamSpec, spec
from schemas.trading import (
    CANCEL_REJECTED_PREFIX,
    GLOBAL,
    SYNTHETIC_TAG,
    WILDCARD,
    Account,
    AccountStatus,
    AccountType,
    Control,
    Decision,
    ExecStatus,
    Instrument,
    InstrumentStatus,
    OrderAction,
    OrderState,
    OrderStatus,
    PortfolioState,
    PositionState,
    RiskDecision,
    RiskEvent,
    Route,
    RuleResult,
    Scope,
    ScopeKind,
    Severity,
    SymbolLimit,
    TimeInForce,
    TradingState,
    ValidatedOrder,
    Venue,
    VenueFill,
    VenueState,
)

__all__ = [
    "CANCEL_REJECTED_PREFIX", "GLOBAL", "SCHEMA_VERSION", "STREAMS", "SYNTHETIC_TAG",
    "WILDCARD", "Account", "AccountStatus", "AccountType", "Control", "DeadLetter", "Decision",
    "DecodeError", "ExecStatus", "ExecutionMetrics", "Instrument", "InstrumentStatus",
    "JournalEntry", "JournalKind", "JournalMark", "Kind", "MarketData", "OrderAction",
    "OrderState", "OrderStatus", "OrderType", "PortfolioState", "PositionState", "Progress", "Record",
    "RiskDecision", "RiskEvent", "Route", "RuleResult", "Scope", "ScopeKind", "Severity",
    "Side", "Sizing", "SmaWide", "StrategyConfig", "StreamSpec", "SymbolLimit", "TimeInForce",
    "TradeSignal", "TradingState", "ValidatedOrder", "Venue", "VenueFill", "VenueState",
    "checked_decode", "decode", "encode", "fast_decode", "spec", "validate",
]
