"""Pydantic models of every stream and table, and their one JSON encoding."""

from schemas.base import SCHEMA_VERSION, DecodeError, Record, Side, decode, encode, validate
from schemas.journal import JournalEntry, JournalKind, JournalMark
from schemas.market import MarketData, SmaWide
from schemas.ops import DeadLetter, ExecutionMetrics
from schemas.strategy import OrderType, Sizing, StrategyConfig, TradeSignal
from schemas.streams import STREAMS, Kind, StreamSpec, spec
from schemas.trading import (
    Account,
    AccountStatus,
    AccountType,
    Control,
    Decision,
    ExecStatus,
    OrderAction,
    OrderState,
    OrderStatus,
    PortfolioState,
    PositionState,
    RiskDecision,
    RiskEvent,
    RuleResult,
    Severity,
    SymbolLimit,
    TimeInForce,
    TradingState,
    ValidatedOrder,
    VenueFill,
)

__all__ = [
    "SCHEMA_VERSION", "STREAMS", "Account", "AccountStatus", "AccountType", "Control",
    "DeadLetter", "DecodeError", "Decision", "ExecStatus", "ExecutionMetrics", "JournalEntry",
    "JournalKind", "JournalMark", "Kind",
    "MarketData", "OrderAction", "OrderState", "OrderStatus", "OrderType", "PortfolioState",
    "PositionState", "Record", "RiskDecision", "RiskEvent", "RuleResult", "Severity", "Side",
    "Sizing", "SmaWide", "StrategyConfig", "StreamSpec", "SymbolLimit", "TimeInForce",
    "TradeSignal", "TradingState", "ValidatedOrder", "VenueFill", "decode", "encode", "spec",
    "validate",
]
