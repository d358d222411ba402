"""Strategy configuration (a changelog table) and the signals strategies emit."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, FiniteFloat, model_validator

from schemas.base import FreeText, Name, NonNegative, Price, Qty, Record, RecordId, Side, Stamp, UtcDatetime


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"


class Sizing(StrEnum):
    """How a strategy sizes its orders."""

    FIXED_QTY = "FIXED_QTY"
    FIXED_NOTIONAL = "FIXED_NOTIONAL"


class StrategyConfig(Record):
    """One row of the strategy_config table (primary key ``strategy_id``)."""

    key_fields: ClassVar[tuple[str, ...]] = ("strategy_id",)

    strategy_id: Name
    strategy: Name
    """Name of the strategy class in the registry (``sma_cross``, ``rsi_reversion``...)."""
    params: dict[str, FiniteFloat | int | str | bool] = Field(default_factory=dict)
    symbols: list[Name] = Field(default_factory=list)
    """Symbols the strategy trades; empty means every symbol."""
    account: Name
    enabled: bool = True
    sizing: Sizing = Sizing.FIXED_QTY
    qty: Qty | None = None
    notional: Qty | None = None
    order_type: OrderType = OrderType.MARKET
    limit_offset_bps: NonNegative = Decimal(0)
    """For LIMIT orders: buy at ref * (1 - bps/1e4), sell at ref * (1 + bps/1e4)."""
    max_position: Qty | None = None
    version: int = 1
    ts: UtcDatetime

    @model_validator(mode="after")
    def _sizing_has_amount(self) -> StrategyConfig:
        if self.sizing is Sizing.FIXED_QTY and self.qty is None:
            raise ValueError("sizing FIXED_QTY needs qty")
        if self.sizing is Sizing.FIXED_NOTIONAL and self.notional is None:
            raise ValueError("sizing FIXED_NOTIONAL needs notional")
        return self


class TradeSignal(Record):
    """A strategy's wish to trade; Job C turns it into an order or a rejection."""

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    signal_id: RecordId
    strategy_id: Name
    symbol: Name
    account: Name
    side: Side
    qty: Qty
    order_type: OrderType = OrderType.MARKET
    limit_px: Price | None = None
    ts: UtcDatetime
    reason: FreeText = ""
    indicators: dict[str, FiniteFloat | None] = Field(default_factory=dict)
    ref_px: Price | None = None
    """The price the strategy saw when it fired (for market orders and sizing)."""
    entered_at: Stamp = None
    """The ``entered_at`` of the tick behind the sma_wide row the signal fired on."""

    @model_validator(mode="after")
    def _limit_has_price(self) -> TradeSignal:
        if self.order_type is OrderType.LIMIT and self.limit_px is None:
            raise ValueError("a LIMIT signal needs limit_px")
        if self.order_type is OrderType.MARKET and self.limit_px is not None:
            raise ValueError("a MARKET signal must not carry limit_px")
        return self
