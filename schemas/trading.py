"""Accounts, limits, orders, fills, positions, portfolio and risk: Jobs C and D."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, FiniteFloat, model_validator

from schemas.base import (
    DECIMAL_PLACES,
    AvgPrice,
    Derived,
    FreeText,
    Money,
    Name,
    NonNegative,
    OrderId,
    Price,
    Qty,
    Record,
    RecordId,
    Side,
    Stamp,
    UtcDatetime,
)
from schemas.strategy import OrderType


class AccountStatus(StrEnum):
    """Operations' view of an account."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    BLOCKED = "BLOCKED"


class AccountType(StrEnum):
    """Cash accounts cannot buy beyond their cash; margin accounts are bound by leverage."""

    CASH = "CASH"
    MARGIN = "MARGIN"


class TradingState(StrEnum):
    """Trading state of a scope (global, account, strategy) in the control table."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Account(Record):
    """One row of the accounts table: status, cash and limits (all Decimal).

    A limit left null is not checked. ``limits_version`` is bumped by whoever changes
    the limits, so each risk decision can name the version it was made under.
    """

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    account: Name
    status: AccountStatus = AccountStatus.ACTIVE
    account_type: AccountType = AccountType.MARGIN
    currency: Name = "USD"
    cash: Money = Decimal(0)
    max_order_notional: NonNegative | None = None
    max_order_qty: NonNegative | None = None
    max_gross_exposure: NonNegative | None = None
    max_leverage: NonNegative | None = None
    max_open_orders: int | None = None
    max_orders_per_second: int | None = None
    price_collar_bps: NonNegative | None = None
    daily_loss_limit: NonNegative | None = None
    max_drawdown: NonNegative | None = None
    max_reject_rate: NonNegative | None = None
    max_signal_age_s: NonNegative | None = None
    """A signal dated more than this before its symbol's newest tick fails STALE_SIGNAL."""
    max_signal_lead_s: NonNegative | None = None
    """A signal dated more than this after its symbol's newest tick fails FUTURE_SIGNAL.

    Market time, not the wall clock: it holds in a replay of an old market too (Job C
    refuses signals ahead of the wall clock before this, ``portfolio.max_future_skew_s``)."""
    cancel_on_disconnect: bool = False
    limits_version: int = 1
    updated_by: FreeText = "ops"
    ts: UtcDatetime


class SymbolLimit(Record):
    """Per-account, per-symbol position limits (primary key account + symbol)."""

    key_fields: ClassVar[tuple[str, ...]] = ("account", "symbol")

    account: Name
    symbol: Name
    max_position_qty: NonNegative | None = None
    max_position_notional: NonNegative | None = None
    limits_version: int = 1
    updated_by: FreeText = "ops"
    ts: UtcDatetime


WILDCARD = "*"
"""In a ``Route``'s account or symbol: any."""


class Route(Record):
    """Which venue an account's orders for a symbol go to (primary key account + symbol).

    ``*`` matches any account or any symbol; the most specific row wins (account and
    symbol, then account, then symbol, then ``* *``). An order no row matches goes to
    the default venue (``portfolio.default_venue``; ``venue`` None on the order).
    """

    key_fields: ClassVar[tuple[str, ...]] = ("account", "symbol")

    account: Name | Literal["*"]
    symbol: Name | Literal["*"]
    venue: Name
    updated_by: FreeText = "ops"
    ts: UtcDatetime


class VenueState(StrEnum):
    """Whether a venue takes orders: UP while a Job D serves it."""

    UP = "UP"
    DOWN = "DOWN"


class Venue(Record):
    """A venue and whether a Job D serves it (primary key venue); Job D writes UP at start."""

    key_fields: ClassVar[tuple[str, ...]] = ("venue",)

    venue: Name
    state: VenueState
    adapter: Name = "paper"
    updated_by: FreeText = "execution"
    ts: UtcDatetime


class InstrumentStatus(StrEnum):
    """Whether an instrument trades: a halt and a resume are instrument rows."""

    TRADING = "TRADING"
    HALTED = "HALTED"
    CLOSED = "CLOSED"


class Instrument(Record):
    """One row of the instruments table (primary key ``symbol``): reference data.

    Job A refuses ticks that break it (unknown or not TRADING symbol, price off the
    ``tick_size`` grid, a move beyond ``price_band_pct`` from the last accepted price);
    Job C's pre-trade rules INSTRUMENT_STATUS, TICK_SIZE, LOT_SIZE and MIN_NOTIONAL
    check orders against it. A limit left null is not checked.
    """

    key_fields: ClassVar[tuple[str, ...]] = ("symbol",)

    symbol: Name
    tick_size: Price
    """Prices are whole multiples of this."""
    lot_size: Qty
    """Order quantities are whole multiples of this."""
    min_qty: NonNegative | None = None
    max_qty: NonNegative | None = None
    min_notional: NonNegative | None = None
    price_precision: int = Field(default=DECIMAL_PLACES, ge=0, le=DECIMAL_PLACES)
    """Decimal places a price may have."""
    qty_precision: int = Field(default=DECIMAL_PLACES, ge=0, le=DECIMAL_PLACES)
    """Decimal places a quantity may have."""
    currency: Name = "USD"
    status: InstrumentStatus = InstrumentStatus.TRADING
    price_band_pct: NonNegative | None = None
    """Largest move of a tick from the last accepted price, in percent of that price."""
    updated_by: FreeText = "ops"
    ts: UtcDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        if _places(self.tick_size) > self.price_precision:
            raise ValueError(f"tick_size {self.tick_size} has more than price_precision "
                             f"{self.price_precision} decimal places")
        if _places(self.lot_size) > self.qty_precision:
            raise ValueError(f"lot_size {self.lot_size} has more than qty_precision "
                             f"{self.qty_precision} decimal places")
        if self.min_qty is not None and self.max_qty is not None and self.min_qty > self.max_qty:
            raise ValueError(f"min_qty {self.min_qty} is above max_qty {self.max_qty}")
        return self


def _places(value: Decimal) -> int:
    """Return how many decimal places ``value`` needs (trailing zeros do not count)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


class OrderAction(StrEnum):
    """What a validated order asks the venue to do."""

    NEW = "NEW"
    CANCEL = "CANCEL"


class TimeInForce(StrEnum):
    """How long an order works."""

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"


class ValidatedOrder(Record):
    """An order that passed pre-trade checks (or a cancel).

    ``venue`` None: the default venue (the Job D with ``execution.default_venue``). A
    routed order is written with its venue as the record key (``key()``), so the Job D
    of that venue reads only the partition its orders are in, and a NEW and its CANCEL
    stay in order; an unrouted one with its ``order_id``, spread over the partitions
    (a sharded default Job D reads its share).
    """

    key_fields: ClassVar[tuple[str, ...]] = ("order_id",)

    order_id: OrderId
    action: OrderAction = OrderAction.NEW
    account: Name
    symbol: Name
    side: Side
    qty: Qty
    order_type: OrderType = OrderType.MARKET
    limit_px: Price | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    signal_id: RecordId | None = None
    strategy_id: Name | None = None
    ref_px: Price | None = None
    reason: FreeText = ""
    venue: Name | None = None
    ts: UtcDatetime
    entered_at: Stamp = None
    """The signal's ``entered_at``, carried (a cancel Job C makes up has none)."""

    def key(self) -> str:
        """Return the record key: the venue of a routed order, else the order id."""
        return self.venue if self.venue is not None else self.order_id


class ExecStatus(StrEnum):
    """What an execution report says happened to an order."""

    NEW = "NEW"
    ACK = "ACK"
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    STATUS = "STATUS"
    """An answer to a status request (or a restatement): the order did not change."""
    CANCEL_REJECTED = "CANCEL_REJECTED"
    """A cancel was refused (by the venue or by Job D); the order itself did not change."""


CANCEL_REJECTED_PREFIX = "cancel rejected: "
"""How the reason of a ``CANCEL_REJECTED`` report begins (for people reading it)."""
SYNTHETIC_TAG = "-SYN-"
"""In the ``exec_id`` of a synthetic fill: quantity a venue reports filled that no
report of ours carried, made up by the adapter (``VenueFill.synthetic``)."""


class VenueFill(Record):
    """One execution report from a venue, normalised; fills carry ``last_qty > 0``.

    ``(venue, exec_id)`` is unique per report; consumers drop repeats by it. Keyed by
    account (Job C's key), so an account's reports sit in one partition in the order
    the venue adapter wrote them, and Job C applies them in that order.
    """

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    order_id: OrderId
    venue: Name
    exec_id: RecordId
    status: ExecStatus
    account: Name
    symbol: Name
    side: Side
    last_qty: NonNegative = Decimal(0)
    last_px: NonNegative = Decimal(0)
    cum_qty: NonNegative = Decimal(0)
    leaves_qty: NonNegative = Decimal(0)
    avg_px: AvgPrice = Decimal(0)
    fee: Money = Decimal(0)
    venue_order_id: RecordId | None = None
    reason: FreeText = ""
    ts: UtcDatetime
    entered_at: Stamp = None
    """The order's ``entered_at``, carried by Job D onto the reports of orders it sent."""

    @property
    def synthetic(self) -> bool:
        """True for a fill the adapter made up from a venue's CumQty (``SYNTHETIC_TAG``)."""
        return SYNTHETIC_TAG in self.exec_id

    @model_validator(mode="after")
    def _fill_has_price(self) -> VenueFill:
        if self.last_qty > 0 and self.last_px <= 0:
            raise ValueError("a fill with last_qty > 0 needs last_px > 0")
        return self


class OrderStatus(StrEnum):
    """Order lifecycle states (FIX 4.4 semantics); see operators/orders.py."""

    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCEL_PENDING = "CANCEL_PENDING"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class OrderState(Record):
    """A row of the orders changelog (primary key ``order_id``)."""

    key_fields: ClassVar[tuple[str, ...]] = ("order_id",)

    order_id: OrderId
    account: Name
    symbol: Name
    side: Side
    qty: Qty
    order_type: OrderType
    limit_px: Price | None = None
    status: OrderStatus
    cum_qty: NonNegative = Decimal(0)
    leaves_qty: NonNegative = Decimal(0)
    avg_px: AvgPrice = Decimal(0)
    signal_id: RecordId | None = None
    strategy_id: Name | None = None
    venue: Name | None = None
    ts: UtcDatetime


class PositionState(Record):
    """A row of positions_state (primary key account + symbol)."""

    key_fields: ClassVar[tuple[str, ...]] = ("account", "symbol")

    account: Name
    symbol: Name
    net_qty: Derived
    avg_px: AvgPrice
    realized_pnl: Derived
    unrealized_pnl: Derived
    last_mark: NonNegative | None = None
    market_value: Derived
    fees: Derived = Decimal(0)
    ts: UtcDatetime


class PortfolioState(Record):
    """A row of portfolio_state (primary key account)."""

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    account: Name
    cash: Derived
    equity: Derived
    realized_pnl: Derived
    unrealized_pnl: Derived
    gross_exposure: Derived
    net_exposure: Derived
    margin_used: Derived
    leverage: Derived
    open_orders: int
    reserved_notional: Derived = Decimal(0)
    trading_state: TradingState = TradingState.ACTIVE
    peak_equity: Derived
    drawdown: Derived
    day_start_equity: Derived
    ts: UtcDatetime


class Severity(StrEnum):
    """How loud a risk event is."""

    INFO = "INFO"
    WARN = "WARN"
    CRITICAL = "CRITICAL"


class RiskEvent(Record):
    """Something the risk engine wants people to know: a rejection, a halt, an anomaly."""

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    event_id: RecordId
    account: Name
    rule: Name
    severity: Severity
    message: FreeText
    symbol: Name | None = None
    order_id: OrderId | None = None
    signal_id: RecordId | None = None
    values: dict[str, str] = Field(default_factory=dict)
    """The numbers compared (as exact decimal strings), e.g. value and limit."""
    ts: UtcDatetime


class RuleResult(Record):
    """One pre-trade rule as evaluated for one signal."""

    rule: Name
    passed: bool
    value: str | None = None
    limit: str | None = None
    message: FreeText = ""


class ScopeKind(StrEnum):
    """What a control scope covers."""

    GLOBAL = "global"
    ACCOUNT = "account"
    STRATEGY = "strategy"


class Decision(StrEnum):
    """Outcome of the pre-trade checks."""

    PASS = "PASS"  # noqa: S105 - a decision, not a password
    FAIL = "FAIL"


class RiskDecision(Record):
    """Exactly one per signal: every rule evaluated, the limits in force, the inputs seen."""

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    signal_id: RecordId
    account: Name
    decision: Decision
    order_id: OrderId | None = None
    rules: list[RuleResult] = Field(default_factory=list)
    limits_version: int = 0
    input_offsets: dict[str, int] = Field(default_factory=dict)
    latency_us: FiniteFloat = 0.0
    ts: UtcDatetime


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a control row applies: ``global``, ``account:<id>`` or ``strategy:<id>``.

    ``Scope.parse`` reads the text of ``Control.scope``; ``str(scope)`` writes it back.
    """

    kind: ScopeKind
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Read a scope; ``ValueError`` for anything but the three shapes."""
        if text == ScopeKind.GLOBAL:
            return GLOBAL
        kind, sep, name = text.partition(":")
        if sep and name and kind in (ScopeKind.ACCOUNT, ScopeKind.STRATEGY):
            return cls(ScopeKind(kind), name)
        raise ValueError(f"scope must be 'global', 'account:<id>' or 'strategy:<id>', not {text!r}")

    @classmethod
    def account(cls, name: str) -> Scope:
        """Return the scope of one account."""
        return cls(ScopeKind.ACCOUNT, name)

    @classmethod
    def strategy(cls, name: str) -> Scope:
        """Return the scope of one strategy."""
        return cls(ScopeKind.STRATEGY, name)

    @classmethod
    def of_order(cls, account: str | None, strategy_id: str | None) -> tuple[Scope, ...]:
        """Return the scopes that govern an order (or signal) of this account and strategy."""
        scopes = [GLOBAL]
        if account:
            scopes.append(cls.account(account))
        if strategy_id:
            scopes.append(cls.strategy(strategy_id))
        return tuple(scopes)

    def __str__(self) -> str:
        return self.kind.value if self.kind is ScopeKind.GLOBAL else f"{self.kind.value}:{self.name}"


GLOBAL = Scope(ScopeKind.GLOBAL)
"""The scope of everything."""


class Control(Record):
    """A row of the control table: trading state for a scope.

    ``scope`` is ``global``, ``account:<id>`` or ``strategy:<id>``.
    """

    key_fields: ClassVar[tuple[str, ...]] = ("scope",)

    scope: RecordId
    state: TradingState
    reason: FreeText = ""
    updated_by: FreeText = "ops"
    ts: UtcDatetime

    @model_validator(mode="after")
    def _scope_shape(self) -> Control:
        Scope.parse(self.scope)  # ValueError for any other shape
        return self

    @property
    def target(self) -> Scope:
        """Return the scope as a value (``Scope``)."""
        return Scope.parse(self.scope)
