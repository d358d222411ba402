"""One account's whole state for Job C: limits, positions, open orders, cash, kill switch.

Pure domain code: it imports only schemas, the other domain modules and the standard
library. The flow keys Job C by account and keeps one ``AccountBook`` per key; every
input goes through one ``on_*`` method, which returns an ``Outcome`` (the records to
publish). Because everything an account-wide check needs lives in one book, the
checks are atomic.

From signal to decision (``on_signal``): the book gathers a ``risk.CheckInput`` (the
position, open orders, reserved exposure, marks, limits in force), ``risk.evaluate``
runs every rule, and the signal gets exactly one ``RiskDecision`` with every
``RuleResult``. If all passed, the order is opened (PENDING_NEW), its exposure
reserved, and a ``ValidatedOrder`` goes out; otherwise one WARN ``RiskEvent`` per
failed rule does.

Determinism (replaying the inputs reproduces the outputs):

* Every time that affects an output is an event time from the inputs; wall clock is
  read only for ``RiskDecision.latency_us``.
* ``order_id`` = ``"O-"`` + the first 20 hex digits of SHA-256 of ``account|signal_id``,
  so a replayed signal maps to the same order (Job D drops the repeat).
* Risk event ids = ``"E-"`` + 20 hex digits of SHA-256 of their inputs: ``REJECT|
  account|signal_id|rule`` for a rejection, ``REPORT|account|venue|exec_id|kind`` for a
  bad venue report, ``STATE|account|n`` for the n-th trading-state change of the book
  (the counter is part of the snapshot).

Reserved exposure: each open order reserves ``leaves_qty * reserve_px`` (limit price,
or the mark / ref price at validation for a market order). The sum is derived from the
open orders, so it is released exactly as they fill, cancel, reject or expire.

Running sums (``OrderSums``): what the checks need from the open orders (reserved
notional in total and per side, leaves per symbol and side) is updated as each order
opens, fills and closes, so a check costs the same with 1 or 1,000 working orders and
after any length of history. Each sum equals the scan over the open orders exactly,
digit and exponent (``operators.accounting.ExactSum``); ``_recompute`` rebuilds them
from scratch (restore, and tests comparing the two). Arithmetic of one input runs in
one ``MONEY`` context, entered once per ``on_*`` call.

Trading state and the kill switch:

* The state is the last explicit instruction: an Account row (ACTIVE -> ACTIVE,
  REDUCING -> REDUCING, BLOCKED -> HALTED) or a Control row for ``global`` or
  ``account:<id>`` (its state). Strategy-scoped Control rows restrict that strategy's
  signals only. Note that any new Account row re-applies its status, so a row
  published with status ACTIVE also re-enables an account the kill switch halted.
* The kill switch trips on: daily loss (equity dropped more than
  ``daily_loss_limit`` below the equity at the first event of the UTC day), drawdown
  (more than ``max_drawdown`` below the peak equity), reject rate (more than
  ``max_reject_rate`` of the last ``REJECT_RATE_WINDOW`` decisions failed, once that
  many were made), and manually (account BLOCKED, Control HALTED). Daily loss and
  drawdown are equity drops, so they include fees. The reject rate judges decisions
  on their merits only: a duplicate delivery, or a signal refused by the account
  status or trading state (e.g. a strategy still buying while the account is
  REDUCING), is not counted, so upstream replays and our own restrictions cannot
  trip it.
* Tripping (entering HALTED from another state) emits one CRITICAL ``KILL_SWITCH``
  risk event and a CANCEL ``ValidatedOrder`` for every open order not cancelled
  before. A cancel carries the *same* ``order_id`` as the order it cancels
  (``action=CANCEL``): the stream is keyed by order id, so the cancel stays behind
  the order in its partition. An order is cancelled at most once, ever.
* Going back to ACTIVE clears the reject-rate window (its rejects were made while
  halted). REDUCING admits only orders that reduce the position (see
  ``risk.CheckInput.reduces``); it cancels nothing.

Cash: the first Account row seeds cash; a later row moves cash, peak equity and
day-start equity by the change in the row's ``cash`` (a deposit or withdrawal, not a
gain or loss).

Fills for an order the book does not know are not applied: Job D never sends an order
without a validated_orders record, so such a fill is reported as a CRITICAL
``UNKNOWN_ORDER`` risk event for reconciliation. Terminal orders are kept (the last
``CLOSED_ORDERS_KEPT``) to catch late duplicates and overfills.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from enum import StrEnum
from functools import wraps
from hashlib import sha256
from typing import Any, NamedTuple, ParamSpec, TypeVar

from operators.accounting import MONEY, ZERO, ExactSum, Ledger, Position, scan_sum, shared
from operators.orders import IDENTITY, Order, OrderIssue
from operators.risk import CheckInput, RateWindow, Rule, dec_str, evaluate
from schemas.base import Record, Side
from schemas.built import build, restored, trusting
from schemas.strategy import TradeSignal
from schemas.trading import (
    GLOBAL,
    WILDCARD,
    Account,
    AccountStatus,
    Control,
    Decision,
    Instrument,
    OrderAction,
    OrderState,
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
    TradingState,
    ValidatedOrder,
    Venue,
    VenueFill,
)

REJECT_RATE_WINDOW = 20
"""N: the reject rate is measured over the last N decisions judged on their merits."""

CLOSED_ORDERS_KEPT = 1_000
"""Terminal orders remembered per account (late duplicates, overfills)."""

SEEN_SIGNALS_KEPT = 10_000
"""Signal ids remembered per account for DUPLICATE_SIGNAL (order ids are also checked)."""

LEVERAGE_UNDEFINED = Decimal(-1)
"""Published as ``PortfolioState.leverage`` when equity <= 0 with exposure (unbounded)."""

SNAPSHOT_VERSION = 2
"""2: the account and symbol-limit rows are their field values (Decimals, enums, times),
restored as they were validated (``schemas.built.restored``, as the orders and positions
always were), not parsed and validated again from JSON (the larger part of a restore).
1 (still restored): JSON dumps."""

_SNAPSHOT_VERSIONS = (1, SNAPSHOT_VERSION)

_NEW_ORDER_TRUSTED = frozenset({*IDENTITY, "action", "ref_px", "reason", "ts", "entered_at"})
"""What a new order takes on trust (``schemas.built.trusting``): every field, copied from
the validated signal (its id derived from the signal's, its venue from a validated route)
or an enum member."""

_DECISION_TRUSTED = frozenset({"signal_id", "decision", "order_id", "rules", "limits_version",
                               "input_offsets", "ts"})
"""What a decision takes on trust: the signal's fields, the rule results (records built by
operators.risk), the limits version of the validated account row and the book's own
offsets (a new dict); the book's account id and the latency are checked."""

_STATUS_STATE = {
    AccountStatus.ACTIVE: TradingState.ACTIVE,
    AccountStatus.REDUCING: TradingState.REDUCING,
    AccountStatus.BLOCKED: TradingState.HALTED,
}
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_GATES = frozenset({Rule.ACCOUNT_STATUS, Rule.DUPLICATE_SIGNAL, Rule.TRADING_HALTED,
                    Rule.INSTRUMENT_STATUS})
"""Rules about the signal's admissibility rather than its size: decisions failing one
of them are left out of the reject rate."""


class InputPos(NamedTuple):
    """Where an input was read from (recorded in ``RiskDecision.input_offsets``)."""

    stream: str
    partition: int
    offset: int


class KillTrigger(StrEnum):
    """What tripped the kill switch (``values["trigger"]`` of the risk event)."""

    DAILY_LOSS = "DAILY_LOSS"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    REJECT_RATE = "REJECT_RATE"
    ACCOUNT_BLOCKED = "ACCOUNT_BLOCKED"
    CONTROL_HALTED = "CONTROL_HALTED"
    POISON_INPUT = "POISON_INPUT"


@dataclass(frozen=True)
class Outcome:
    """The records one input produced, to publish on their streams."""

    decision: RiskDecision | None = None
    orders: tuple[ValidatedOrder, ...] = ()
    """New orders and cancels, for validated_orders."""
    order_states: tuple[OrderState, ...] = ()
    positions: tuple[PositionState, ...] = ()
    portfolio: PortfolioState | None = None
    events: tuple[RiskEvent, ...] = ()

    @property
    def empty(self) -> bool:
        """Tell whether there is nothing to publish."""
        return (self.decision is None and self.portfolio is None and not self.orders
                and not self.order_states and not self.positions and not self.events)

    def __add__(self, other: Outcome) -> Outcome:
        """Concatenate two outcomes; the later portfolio row (and decision) wins."""
        if other.empty:  # most often: the kill switch did not trip (outcomes are frozen)
            return self
        if self.empty:
            return other
        return Outcome(
            decision=other.decision if other.decision is not None else self.decision,
            orders=self.orders + other.orders,
            order_states=self.order_states + other.order_states,
            positions=self.positions + other.positions,
            portfolio=other.portfolio if other.portfolio is not None else self.portfolio,
            events=self.events + other.events,
        )


NOTHING = Outcome()
"""The outcome of an input that produced no record (outcomes are frozen: one serves all)."""


def order_id_for(account: str, signal_id: str) -> str:
    """Return the deterministic order id of a signal (stable across runs and replays)."""
    return "O-" + sha256(f"{account}|{signal_id}".encode()).hexdigest()[:20]


def event_id_for(*parts: str) -> str:
    """Return a deterministic risk event id derived from ``parts``."""
    return "E-" + sha256("|".join(parts).encode()).hexdigest()[:20]


class OrderSums:
    """Running sums over an account's open orders: what a check needs, O(1) to read.

    ``reserved``: ``reserved_notional`` of every open order; ``by_side``: the same per
    side; ``leaves``: ``leaves_qty`` per (symbol, side), the key dropped once no open
    order has it. Each is an ``ExactSum``: equal, digit for digit, to the scan.
    """

    __slots__ = ("by_side", "leaves", "reserved")

    def __init__(self, orders: Iterable[Order] = ()) -> None:
        self.reserved = ExactSum()
        self.by_side = {Side.BUY: ExactSum(), Side.SELL: ExactSum()}
        self.leaves: dict[tuple[str, Side], ExactSum] = {}
        with localcontext(MONEY):
            for order in orders:
                self.add(order)

    def add(self, order: Order, cum_qty: Decimal | None = None) -> None:
        """Count an open order (as it was when its ``cum_qty`` was ``cum_qty``); in MONEY."""
        key = (order.symbol, order.side)
        if key not in self.leaves:
            self.leaves[key] = ExactSum()
        self._count(order, cum_qty, ExactSum.add)

    def remove(self, order: Order, cum_qty: Decimal | None = None) -> None:
        """Take out an order counted by ``add`` with the same ``cum_qty``; in MONEY."""
        self._count(order, cum_qty, ExactSum.remove)
        key = (order.symbol, order.side)
        if self.leaves[key].empty:
            del self.leaves[key]

    def _count(
        self, order: Order, cum_qty: Decimal | None, change: Callable[[ExactSum, Decimal], None]
    ) -> None:
        # The sums an order's open part is in: ``add`` and ``remove`` change the same ones.
        leaves, reserved = _open_part(order, cum_qty)
        change(self.reserved, reserved)
        change(self.by_side[order.side], reserved)
        change(self.leaves[order.symbol, order.side], leaves)


def _open_part(order: Order, cum_qty: Decimal | None) -> tuple[Decimal, Decimal]:
    # The order's leaves quantity when its filled quantity was cum_qty (default: now), and
    # the notional those leaves reserve.
    leaves = order.qty - (order.cum_qty if cum_qty is None else cum_qty)
    return leaves, leaves * order.reserve_px


_P = ParamSpec("_P")


def _in_money(method: Callable[_P, Outcome]) -> Callable[_P, Outcome]:
    """Run an ``on_*`` method in the ``MONEY`` context: one input's arithmetic, entered once."""

    @wraps(method)
    def in_money(*args: _P.args, **kwargs: _P.kwargs) -> Outcome:
        with localcontext(MONEY):
            return method(*args, **kwargs)

    return in_money


class AccountBook:
    """Everything Job C knows about one account, and the rules that change it."""

    __slots__ = (
        "_clock", "_sums", "account", "account_id", "closed_orders", "day", "day_start_equity",
        "instruments", "ledger", "mark_pos", "offsets", "open_orders", "peak_equity", "rate",
        "recent_rejects", "routes", "seen_signals", "state_seq", "strategy_states", "symbol_limits",
        "trading_state", "venues", "_deferred",
    )

    def __init__(self, account: str, *, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.account_id = account
        self.account: Account | None = None
        self.symbol_limits: dict[str, SymbolLimit] = {}
        self.routes: dict[tuple[str, str], Route] = {}
        """This account's routes and those of any account (``*``), by (account, symbol)."""
        self.venues: dict[str, Venue] = {}
        self.instruments: dict[str, Instrument] = {}
        """The latest instruments row per symbol (every symbol's rows reach every book)."""
        self.ledger = Ledger()
        self.open_orders: dict[str, Order] = {}
        self.closed_orders: dict[str, Order] = {}
        self.trading_state = TradingState.ACTIVE
        self.strategy_states: dict[str, TradingState] = {}
        self.peak_equity = ZERO
        self.day: date | None = None
        self.day_start_equity = ZERO
        self.recent_rejects: list[bool] = []
        """Whether each of the last ``REJECT_RATE_WINDOW`` decisions on merits failed."""
        self.seen_signals: dict[str, None] = {}
        self.rate = RateWindow()
        self.offsets: dict[str, int] = {}
        self.mark_pos: dict[str, InputPos] = {}
        """The market_data record each symbol was last marked from (for exact replay)."""
        self.state_seq = 0
        self._clock = clock
        self._sums: OrderSums | None = None
        """Running sums over ``open_orders``; None while there is none (all zero)."""
        self._deferred: dict[str, datetime] = {}
        """Symbols marked with ``defer`` whose rows are not out yet, in the order last marked."""

    # ----------------------------------------------------------------- inputs

    @_in_money
    def on_signal(
        self, signal: TradeSignal, *, pos: InputPos | None = None, market_ts: datetime | None = None
    ) -> Outcome:
        """Check a signal; return its decision and either the order or the rejections.

        ``market_ts``: the time of the symbol's newest tick when the signal came (for
        STALE_SIGNAL; None: the book's own last mark of the symbol).
        """
        started = self._clock()
        self._own(signal.account)
        self._advance(signal.ts, pos)
        order_id = order_id_for(self.account_id, signal.signal_id)
        ctx = self._check_input(signal, order_id, market_ts)
        results = evaluate(ctx)
        failed = [r for r in results if not r.passed]  # one pass: most often none
        passed = not failed
        self._remember_signal(signal.signal_id)
        if not any(r.rule in _GATES for r in failed):
            self.recent_rejects.append(not passed)
            if len(self.recent_rejects) > REJECT_RATE_WINDOW:
                del self.recent_rejects[0]
        if passed:
            outcome = self._open_order(signal, ctx, order_id)
        else:
            outcome = Outcome(events=tuple(self._rejection(signal, r) for r in failed))
        kill = self._check_kill_switch(signal.ts)
        if kill is not NOTHING:
            outcome += kill
        decision = trusting(RiskDecision, _DECISION_TRUSTED)(
            signal_id=signal.signal_id,
            account=self.account_id,
            decision=Decision.PASS if passed else Decision.FAIL,
            order_id=order_id if passed else None,
            rules=results,
            limits_version=self.account.limits_version if self.account else 0,
            input_offsets=self._input_offsets(),
            latency_us=(self._clock() - started) / 1000,
            ts=signal.ts,
        )
        # ``Outcome(decision=decision) + outcome``: the outcome holds no decision yet.
        return Outcome(decision=decision, orders=outcome.orders, order_states=outcome.order_states,
                       positions=outcome.positions, portfolio=outcome.portfolio,
                       events=outcome.events)

    @_in_money
    def on_fill(self, fill: VenueFill, *, pos: InputPos | None = None) -> Outcome:
        """Apply an execution report: order state machine, then position and cash."""
        self._own(fill.account)
        self._advance(fill.ts, pos)
        order = self.open_orders.get(fill.order_id)
        counted = order is not None
        if order is None:
            order = self.closed_orders.get(fill.order_id)
        if order is None:
            return Outcome(events=(self._unknown_order(fill),))
        cum_qty = order.cum_qty
        result = order.apply(fill)
        sums = self._sums
        if counted and sums is not None and (order.cum_qty is not cum_qty or not order.is_open):
            sums.remove(order, cum_qty)
            if order.is_open:
                sums.add(order)
        events = tuple(self._issue_event(fill, issue) for issue in result.issues)
        positions: tuple[PositionState, ...] = ()
        if result.fill_qty > 0:
            position = self.ledger.apply_fill(
                order.symbol, order.side, result.fill_qty, result.fill_px, result.fee
            )
            positions = (self._position_state(position, fill.ts),)
            self._track_peak()
        if not order.is_open and order.order_id in self.open_orders:
            self._close(order)
        if not (result.changed or positions):
            return Outcome(events=events)
        outcome = Outcome(
            order_states=(order.to_state(),) if result.changed else (),
            positions=positions,
            portfolio=self.portfolio_state(fill.ts),
            events=events,
        )
        return outcome + self._check_kill_switch(fill.ts)

    @_in_money
    def on_mark(
        self, symbol: str, price: Decimal, ts: datetime, *, pos: InputPos | None = None, defer: bool = False
    ) -> Outcome:
        """Mark a symbol: unrealised PnL moves, and the kill switch may trip.

        ``defer``: leave the position and portfolio rows the mark changes to
        ``deferred_rows`` (several marks in a row then write each row once, the latest).
        The kill switch is checked on every mark all the same.
        """
        self._advance(ts, pos)
        if not self.ledger.mark(symbol, price, ts):
            return NOTHING
        if pos is not None:
            self.mark_pos[symbol] = pos
        position = self.ledger.positions.get(symbol)
        if position is None or position.net_qty == 0:
            return NOTHING
        self._track_peak()
        if defer:
            self._deferred.pop(symbol, None)
            self._deferred[symbol] = ts
            return self._check_kill_switch(ts)
        outcome = Outcome(
            positions=(self._position_state(position, ts),),
            portfolio=self.portfolio_state(ts),
        )
        return outcome + self._check_kill_switch(ts)

    @_in_money
    def deferred_rows(self) -> Outcome:
        """Return the rows of the marks applied with ``defer`` since the last call.

        Each marked symbol's position row as of its last mark, and one portfolio row as
        of the last mark: the rows the same marks applied one by one would have left
        last for each key.
        """
        if not self._deferred:
            return NOTHING
        marked, self._deferred = self._deferred, {}
        positions = tuple(
            self._position_state(p, ts) for sym, ts in marked.items()
            if (p := self.ledger.positions.get(sym)) is not None and p.net_qty != 0
        )
        return Outcome(positions=positions, portfolio=self.portfolio_state(next(reversed(marked.values()))))

    @_in_money
    def on_account(self, row: Account, *, pos: InputPos | None = None) -> Outcome:
        """Replace the account row: limits, cash movements, and the trading state."""
        self._own(row.account)
        self._advance(row.ts, pos)
        delta = row.cash - (self.account.cash if self.account else ZERO)
        self.ledger.cash += delta
        self.peak_equity += delta
        self.day_start_equity += delta
        self.account = _lean(row)
        self._track_peak()
        outcome = self._set_state(
            _STATUS_STATE[row.status], row.ts, KillTrigger.ACCOUNT_BLOCKED,
            f"account row status {row.status.value}",
        )
        return outcome + Outcome(portfolio=self.portfolio_state(row.ts))

    def on_symbol_limit(self, limit: SymbolLimit, *, pos: InputPos | None = None) -> Outcome:
        """Replace the position limits of one symbol (from the next message on)."""
        self._own(limit.account)
        self._advance(limit.ts, pos)
        self.symbol_limits[limit.symbol] = _lean(limit)
        return Outcome()

    def on_route(self, route: Route, *, pos: InputPos | None = None) -> Outcome:
        """Replace a route of this account (or of any account) from the next signal on."""
        if route.account != WILDCARD:
            self._own(route.account)
        self._advance(route.ts, pos)
        self.routes[(route.account, route.symbol)] = route
        return Outcome()

    def on_venue(self, venue: Venue, *, pos: InputPos | None = None) -> Outcome:
        """Record whether a venue is served (UP) from the next signal on."""
        self._advance(venue.ts, pos)
        self.venues[venue.venue] = venue
        return Outcome()

    def route_of(self, symbol: str) -> str | None:
        """Return the venue an order of this account in ``symbol`` goes to (None: the default).

        The most specific route wins: this account and symbol, this account, the symbol,
        then any account and symbol.
        """
        routes = self.routes
        if not routes:
            return None
        for key in ((self.account_id, symbol), (self.account_id, WILDCARD), (WILDCARD, symbol),
                    (WILDCARD, WILDCARD)):
            route = routes.get(key)
            if route is not None:
                return route.venue
        return None

    def on_instrument(self, row: Instrument, *, pos: InputPos | None = None) -> Outcome:
        """Replace the reference data of one symbol (from the next message on)."""
        self._advance(row.ts, pos)
        self.instruments[row.symbol] = row
        return Outcome()

    @_in_money
    def on_control(self, control: Control, *, pos: InputPos | None = None) -> Outcome:
        """Apply a control row for this account, ``global``, or a strategy."""
        self._advance(control.ts, pos)
        target = control.target
        if target.kind is ScopeKind.STRATEGY:
            self.strategy_states[target.name] = control.state
            return Outcome()
        if target not in (GLOBAL, Scope.account(self.account_id)):
            return Outcome()
        outcome = self._set_state(
            control.state, control.ts, KillTrigger.CONTROL_HALTED,
            f"control {control.scope} {control.state.value}: {control.reason}".rstrip(": "),
        )
        if outcome.empty:
            return outcome
        return outcome + Outcome(portfolio=self.portfolio_state(control.ts))

    # ----------------------------------------------------------------- views

    @property
    def reserved_notional(self) -> Decimal:
        """Return the notional reserved by every open order."""
        return self._reserved(None)

    def _reserved(self, side: Side | None) -> Decimal:
        # The notional reserved by the open orders (on ``side``, or all).
        if self._sums is None:
            return ZERO
        sums = self._sums.reserved if side is None else self._sums.by_side[side]
        value = sums.total()
        if value is None:  # a running sum would have rounded: scan, as before
            value = scan_sum(o.reserved_notional for o in self.open_orders.values()
                             if side is None or o.side is side)
        return value

    def _open_qty(self, symbol: str, side: Side) -> Decimal:
        # The leaves of the open orders in ``symbol`` on ``side``.
        sums = self._sums.leaves.get((symbol, side)) if self._sums is not None else None
        if sums is None:
            return ZERO
        value = sums.total()
        if value is None:
            with localcontext(MONEY):
                value = scan_sum(o.leaves_qty for o in self.open_orders.values()
                                 if o.symbol == symbol and o.side is side)
        return value

    def _recompute(self) -> None:
        """Rebuild every running sum from scratch (restore; tests compare the two)."""
        self._sums = OrderSums(self.open_orders.values()) if self.open_orders else None
        self.ledger._recompute()  # noqa: SLF001 - the same helper, one level down

    def check_sums(self) -> None:
        """Raise ``AssertionError`` if a running sum differs from a scan (debug, tests)."""
        with localcontext(MONEY):
            opens = list(self.open_orders.values())
            scans: dict[str, Decimal] = {
                "reserved": sum((o.reserved_notional for o in opens), ZERO),
            }
            held: dict[str, Decimal] = {"reserved": self.reserved_notional}
            for side in Side:
                scans[side.value] = sum((o.reserved_notional for o in opens if o.side is side),
                                        ZERO)
                held[side.value] = self._reserved(side)
            leaves = set(self._sums.leaves) if self._sums is not None else set()
            for sym, side in {(o.symbol, o.side) for o in opens} | leaves:
                key = f"{sym}/{side.value}"
                scans[key] = sum((o.leaves_qty for o in opens
                                  if o.symbol == sym and o.side is side), ZERO)
                held[key] = self._open_qty(sym, side)
        if {k: str(v) for k, v in held.items()} != {k: str(v) for k, v in scans.items()}:
            raise AssertionError(f"order sums {held} != scan {scans}")
        if any(not o.is_open for o in opens):
            raise AssertionError("a terminal order among the open ones")
        if (self._sums is None) != (not opens):
            raise AssertionError("running sums without open orders, or the reverse")
        self.ledger.check_sums()

    def portfolio_state(self, ts: datetime) -> PortfolioState:
        """Return the account's portfolio_state row as of now, stamped ``ts``."""
        ledger = self.ledger
        leverage = ledger.leverage()
        equity = ledger.equity
        return build(
            PortfolioState,
            account=self.account_id,
            cash=ledger.cash,
            equity=equity,
            realized_pnl=ledger.realized_pnl,
            unrealized_pnl=ledger.unrealized_pnl,
            gross_exposure=ledger.gross_exposure,
            net_exposure=ledger.net_exposure,
            margin_used=ledger.margin_used(
                self.account.max_leverage if self.account else None
            ),
            leverage=LEVERAGE_UNDEFINED if leverage is None else leverage,
            open_orders=len(self.open_orders),
            reserved_notional=self.reserved_notional,
            trading_state=self.trading_state,
            peak_equity=self.peak_equity,
            drawdown=MONEY.subtract(self.peak_equity, equity),
            day_start_equity=self.day_start_equity,
            ts=ts,
        )

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """Return the whole book as plain picklable data (a copy, never live state)."""
        return {
            "v": SNAPSHOT_VERSION,
            "account_id": self.account_id,
            "account": dict(self.account.__dict__) if self.account else None,
            "symbol_limits": [dict(lim.__dict__) for lim in self.symbol_limits.values()],
            "routes": [r.model_dump(mode="json") for r in self.routes.values()],
            "venues": [v.model_dump(mode="json") for v in self.venues.values()],
            "instruments": [row.model_dump(mode="json") for row in self.instruments.values()],
            "ledger": self.ledger.snapshot(),
            "open_orders": [o.to_dict() for o in self.open_orders.values()],
            "closed_orders": [o.to_dict() for o in self.closed_orders.values()],
            "trading_state": self.trading_state.value,
            "strategy_states": {k: v.value for k, v in self.strategy_states.items()},
            "peak_equity": self.peak_equity,
            "day": self.day.isoformat() if self.day else None,
            "day_start_equity": self.day_start_equity,
            "recent_rejects": list(self.recent_rejects),
            "seen_signals": list(self.seen_signals),
            "rate": self.rate.snapshot(),
            "offsets": dict(self.offsets),
            "state_seq": self.state_seq,
            "mark_pos": {k: tuple(v) for k, v in self.mark_pos.items()},
        }

    @classmethod
    def from_snapshot(
        cls, data: dict[str, Any], *, clock: Callable[[], int] = time.perf_counter_ns
    ) -> AccountBook:
        """Rebuild a book from ``snapshot`` output."""
        version = data.get("v")
        if version not in _SNAPSHOT_VERSIONS:
            raise ValueError(f"unsupported account book snapshot version {version!r}")
        # Every slot is set below: no empty book is built only to be replaced.
        book = cls.__new__(cls)
        book.account_id = data["account_id"]
        book._clock = clock
        row = _row if version == SNAPSHOT_VERSION else _json_row
        book.account = row(Account, data["account"]) if data["account"] else None
        limits = [row(SymbolLimit, d) for d in data["symbol_limits"]]
        book.symbol_limits = {lim.symbol: lim for lim in limits}
        routes = [Route.model_validate(d) for d in data.get("routes", ())]
        book.routes = {(r.account, r.symbol): r for r in routes}
        book.venues = {v.venue: v for v in (Venue.model_validate(d) for d in data.get("venues", ()))}
        rows = [Instrument.model_validate(d) for d in data.get("instruments", ())]  # older snapshots: none
        book.instruments = {row.symbol: row for row in rows}
        book.ledger = Ledger.from_snapshot(data["ledger"])  # rebuilds its own sums
        book.open_orders = _orders(data["open_orders"])
        book.closed_orders = _orders(data["closed_orders"])
        book.trading_state = TradingState(data["trading_state"])
        book.strategy_states = {k: TradingState(v) for k, v in data["strategy_states"].items()}
        book.peak_equity = data["peak_equity"]
        book.day = date.fromisoformat(data["day"]) if data["day"] else None
        book.day_start_equity = data["day_start_equity"]
        book.recent_rejects = list(data["recent_rejects"])[-REJECT_RATE_WINDOW:]
        book.seen_signals = dict.fromkeys(data["seen_signals"])
        book.rate = RateWindow(times=data["rate"])
        book.offsets = dict(data["offsets"])
        book.state_seq = data["state_seq"]
        book.mark_pos = {k: InputPos(*v) for k, v in data.get("mark_pos", {}).items()}
        book._sums = OrderSums(book.open_orders.values()) if book.open_orders else None
        book._deferred = {}
        return book

    # ----------------------------------------------------------------- internals

    def _input_offsets(self) -> dict[str, int]:
        """Return the offsets this state reflects, and each held position's mark.

        The tick each held position was valued at is ``market_data:<p>@<SYMBOL>``, so a
        replay can value it the same.
        """
        out = dict(self.offsets)
        for sym, pos in self.mark_pos.items():
            position = self.ledger.positions.get(sym)
            if position is not None and position.net_qty != 0:
                out[f"{pos.stream}:{pos.partition}@{sym}"] = pos.offset
        return out

    def _own(self, account: str) -> None:
        if account != self.account_id:
            raise ValueError(f"record for account {account!r} sent to book {self.account_id!r}")

    def _advance(self, ts: datetime, pos: InputPos | None) -> None:
        if pos is not None:
            self.offsets[f"{pos.stream}:{pos.partition}"] = pos.offset
        day = ts.date()
        if self.day is None or day > self.day:
            self.day = day
            self.day_start_equity = self.ledger.equity

    def _track_peak(self) -> None:
        self.peak_equity = max(self.peak_equity, self.ledger.equity)

    def _remember_signal(self, signal_id: str) -> None:
        seen = self.seen_signals
        seen[signal_id] = None
        if len(seen) > SEEN_SIGNALS_KEPT:
            self.seen_signals = seen = _evicting(seen)
            while len(seen) > SEEN_SIGNALS_KEPT:
                seen.popitem(last=False)

    def _close(self, order: Order) -> None:
        del self.open_orders[order.order_id]
        if not self.open_orders:
            self._sums = None
            self.open_orders = {}  # an emptied dict keeps its table: drop it
        order.share()
        closed = self.closed_orders
        closed[order.order_id] = order
        if len(closed) > CLOSED_ORDERS_KEPT:
            self.closed_orders = closed = _evicting(closed)
            while len(closed) > CLOSED_ORDERS_KEPT:
                closed.popitem(last=False)

    def _effective_state(self, strategy_id: str) -> TradingState:
        strategy = self.strategy_states.get(strategy_id, TradingState.ACTIVE)
        return max(self.trading_state, strategy, key=_STRICTNESS.__getitem__)

    def _check_input(self, signal: TradeSignal, order_id: str, market_ts: datetime | None) -> CheckInput:
        symbol, ledger = signal.symbol, self.ledger
        if market_ts is None and (known := ledger.marks.get(symbol)) is not None:
            market_ts = known[1]
        position = ledger.positions.get(symbol)
        return CheckInput(
            signal=signal,
            account=self.account,
            symbol_limit=self.symbol_limits.get(symbol),
            trading_state=self._effective_state(signal.strategy_id),
            duplicate=signal.signal_id in self.seen_signals
            or order_id in self.open_orders or order_id in self.closed_orders,
            mark=ledger.mark_px(symbol),
            market_ts=market_ts,
            net_qty=position.net_qty if position else ZERO,
            open_same_side_qty=self._open_qty(symbol, signal.side),
            open_orders=len(self.open_orders),
            gross_exposure=ledger.gross_exposure,
            reserved_notional=self.reserved_notional,
            reserved_buy_notional=self._reserved(Side.BUY),
            equity=ledger.equity,
            cash=ledger.cash,
            recent_orders=self.rate.count(signal.ts),
            venue=(venue := self.route_of(symbol)),
            venue_state=(row.state if venue is not None and (row := self.venues.get(venue)) else None),
            instrument=self.instruments.get(symbol),
            instruments_known=bool(self.instruments),
        )

    def _open_order(self, signal: TradeSignal, ctx: CheckInput, order_id: str) -> Outcome:
        order = Order(
            order_id=order_id,
            account=self.account_id,
            symbol=signal.symbol,
            side=signal.side,
            qty=signal.qty,
            order_type=signal.order_type,
            ts=signal.ts,
            limit_px=signal.limit_px,
            reserve_px=ctx.order_px or ZERO,
            signal_id=signal.signal_id,
            strategy_id=signal.strategy_id,
            venue=ctx.venue,
        )
        self.open_orders[order_id] = order
        if self._sums is None:
            self._sums = OrderSums()
        self._sums.add(order)
        self.rate.add(signal.ts)
        validated = trusting(ValidatedOrder, _NEW_ORDER_TRUSTED)(
            **order.identity(), action=OrderAction.NEW, ref_px=signal.ref_px,
            reason=signal.reason, ts=signal.ts, entered_at=signal.entered_at,
        )
        return Outcome(
            orders=(validated,),
            order_states=(order.to_state(),),
            portfolio=self.portfolio_state(signal.ts),
        )

    def _set_state(
        self, target: TradingState, ts: datetime, trigger: KillTrigger, reason: str
    ) -> Outcome:
        if target is self.trading_state:
            return Outcome()
        if target is TradingState.HALTED:
            return self._trip(trigger, ts, reason, {})
        previous = self.trading_state
        self.trading_state = target
        self.state_seq += 1
        if target is TradingState.ACTIVE:
            self.recent_rejects.clear()
        event = self._state_event(
            "TRADING_STATE", Severity.INFO, f"trading {previous.value} -> {target.value} ({reason})",
            {"from": previous.value, "to": target.value}, ts,
        )
        return Outcome(events=(event,))

    def _state_event(
        self, rule: str, severity: Severity, message: str, values: dict[str, str], ts: datetime
    ) -> RiskEvent:
        # The event of the book's latest trading-state change (``state_seq`` numbers them).
        return RiskEvent(
            event_id=event_id_for("STATE", self.account_id, str(self.state_seq)),
            account=self.account_id,
            rule=rule,
            severity=severity,
            message=message,
            values=values,
            ts=ts,
        )

    def _check_kill_switch(self, ts: datetime) -> Outcome:
        row = self.account
        if row is None or self.trading_state is TradingState.HALTED:
            return NOTHING
        # In this order; a figure is computed only for a limit that is set.
        for trigger, limit in ((KillTrigger.DAILY_LOSS, row.daily_loss_limit),
                               (KillTrigger.MAX_DRAWDOWN, row.max_drawdown),
                               (KillTrigger.REJECT_RATE, row.max_reject_rate)):
            value = None if limit is None else self._kill_figure(trigger)
            if value is not None and limit is not None and value > limit:
                reason = f"{trigger.value} {dec_str(value)} exceeds {dec_str(limit)}"
                values = {"value": dec_str(value), "limit": dec_str(limit)}
                return self._trip(trigger, ts, reason, values)
        return NOTHING

    def _kill_figure(self, trigger: KillTrigger) -> Decimal | None:
        # What ``trigger`` compares with its limit: the equity's drop since the day's start
        # or the peak; the reject rate (None until REJECT_RATE_WINDOW decisions are made).
        if trigger is KillTrigger.REJECT_RATE:
            if len(self.recent_rejects) < REJECT_RATE_WINDOW:
                return None
            return MONEY.divide(Decimal(sum(self.recent_rejects)), REJECT_RATE_WINDOW)
        start = self.day_start_equity if trigger is KillTrigger.DAILY_LOSS else self.peak_equity
        return MONEY.subtract(start, self.ledger.equity)

    def halt_on_poison(self, reason: str, ts: datetime) -> Outcome:
        """Halt the account after an input this book failed on (it may be half-applied).

        The kill switch's usual outcome (a CRITICAL event, cancels of the open orders);
        if even that fails, the account is halted without it. Operations set it back.
        """
        if self.trading_state is TradingState.HALTED:
            return Outcome()
        try:
            with localcontext(MONEY):
                return self._trip(KillTrigger.POISON_INPUT, ts, reason, {})
        except Exception:  # noqa: BLE001 - the book is broken: halting is all that is left
            self.trading_state = TradingState.HALTED
            self.state_seq += 1
            return Outcome()

    def _trip(
        self, trigger: KillTrigger, ts: datetime, reason: str, values: dict[str, str]
    ) -> Outcome:
        self.trading_state = TradingState.HALTED
        self.state_seq += 1
        cancels: list[ValidatedOrder] = []
        states: list[OrderState] = []
        for order in self.open_orders.values():
            if order.cancel_requested:
                continue
            order.request_cancel(ts)
            cancels.append(_cancel_of(order, ts, f"kill switch: {reason}"))
            states.append(order.to_state())
        event = self._state_event(
            "KILL_SWITCH", Severity.CRITICAL,
            f"trading HALTED: {reason}; {len(cancels)} open orders cancelled",
            {"trigger": trigger.value, **values, "cancels": str(len(cancels))}, ts,
        )
        return Outcome(
            orders=tuple(cancels),
            order_states=tuple(states),
            portfolio=self.portfolio_state(ts),
            events=(event,),
        )

    def _rejection(self, signal: TradeSignal, result: RuleResult) -> RiskEvent:
        values = {k: v for k, v in (("value", result.value), ("limit", result.limit)) if v}
        return build(
            RiskEvent,
            event_id=event_id_for("REJECT", self.account_id, signal.signal_id, result.rule),
            account=self.account_id,
            rule=result.rule,
            severity=Severity.WARN,
            message=f"signal {signal.signal_id} rejected: {result.message}",
            symbol=signal.symbol,
            signal_id=signal.signal_id,
            values=values,
            ts=signal.ts,
        )

    def _issue_event(self, fill: VenueFill, issue: OrderIssue) -> RiskEvent:
        return build(
            RiskEvent,
            event_id=event_id_for(
                "REPORT", self.account_id, fill.venue, fill.exec_id, issue.kind.value
            ),
            account=self.account_id,
            rule=issue.kind.value,
            severity=issue.severity,
            message=issue.message,
            symbol=fill.symbol,
            order_id=fill.order_id,
            values=dict(issue.values),
            ts=fill.ts,
        )

    def _unknown_order(self, fill: VenueFill) -> RiskEvent:
        return build(
            RiskEvent,
            event_id=event_id_for(
                "REPORT", self.account_id, fill.venue, fill.exec_id, "UNKNOWN_ORDER"
            ),
            account=self.account_id,
            rule="UNKNOWN_ORDER",
            severity=Severity.CRITICAL,
            message=f"report {fill.exec_id} from {fill.venue} for unknown order "
            f"{fill.order_id}: not applied, reconcile with the venue",
            symbol=fill.symbol,
            order_id=fill.order_id,
            values={
                "venue": fill.venue, "exec_id": fill.exec_id, "status": fill.status.value,
                "side": fill.side.value, "last_qty": dec_str(fill.last_qty),
                "last_px": dec_str(fill.last_px),
            },
            ts=fill.ts,
        )

    def _position_state(self, position: Position, ts: datetime) -> PositionState:
        return build(
            PositionState,
            account=self.account_id,
            symbol=position.symbol,
            net_qty=position.net_qty,
            avg_px=position.avg_px,
            realized_pnl=position.realized_pnl,
            unrealized_pnl=position.unrealized_pnl,
            last_mark=position.last_mark,
            market_value=position.market_value,
            fees=position.fees,
            ts=ts,
        )


_V = TypeVar("_V")
_Row = TypeVar("_Row", bound=Record)

_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
"""One shared pydantic fields-set per combination of field names (see ``_lean``)."""


def _lean(row: _Row, *, own: bool = False) -> _Row:
    """Return ``row`` sharing its pydantic fields-set and its amounts with other rows.

    A decoded or restored Account names its 19 fields in a set of 2 KB, more than the
    row's values; the book keeps one per account, and keeps ``shared`` objects for its
    Decimal limits, which most accounts repeat. The rows are frozen, so pydantic
    never changes the set in place (``model_copy`` copies it). ``own``: ``row`` was
    made here, change it in place; else return an equal copy, leaving the input as is.
    """
    names = row.__pydantic_fields_set__
    shared_set = _FIELDS_SETS.get(frozenset(names))
    if shared_set is None:
        shared_set = _FIELDS_SETS[frozenset(names)] = set(names)
    values = {k: shared(v) if type(v) is Decimal else v for k, v in row.__dict__.items()}
    if names is shared_set and all(v is row.__dict__[k] for k, v in values.items()):
        return row
    if own:
        object.__setattr__(row, "__pydantic_fields_set__", shared_set)
        row.__dict__.update(values)
        return row
    return type(row).model_construct(_fields_set=shared_set, **values)


def _row(model: type[_Row], values: dict[str, Any]) -> _Row:
    # A row of a version-2 snapshot: its field values, as they were validated (with one
    # fields set per model; a restore does not look for shared amounts: time).
    names = frozenset(model.model_fields)
    every = _FIELDS_SETS.get(names)
    if every is None:
        every = _FIELDS_SETS[names] = set(names)
    return restored(model, values, every)


def _json_row(model: type[_Row], values: dict[str, Any]) -> _Row:
    # A row of a version-1 snapshot: its JSON dump.
    return _lean(model.model_validate(values), own=True)


def _evicting(kept: dict[str, _V]) -> OrderedDict[str, _V]:
    """Return ``kept`` as an OrderedDict, whose oldest entry goes in O(1).

    A dict that drops its first key over and over leaves holes at its front, which
    every ``next(iter(d))`` walks; a book switches once it reaches its cap.
    """
    return kept if isinstance(kept, OrderedDict) else OrderedDict(kept)


def _orders(rows: Iterable[dict[str, Any]]) -> dict[str, Order]:
    orders = [Order.from_dict(row) for row in rows]
    return {o.order_id: o for o in orders}


def _cancel_of(order: Order, ts: datetime, reason: str) -> ValidatedOrder:
    return ValidatedOrder(**order.identity(), action=OrderAction.CANCEL, reason=reason, ts=ts)
