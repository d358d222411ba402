"""Pre-trade risk rules: one small function per rule, each returning a ``RuleResult``.

Pure domain code: it imports only schemas and the standard library.

How a signal is checked: the account book (operators/portfolio.py) gathers everything
the rules look at into one ``CheckInput`` (position, open orders, exposure, marks,
limits in force), then ``evaluate`` runs every rule of ``RULES`` in order, always all
of them, so the decision record shows every value compared. The signal passes when
every rule passed.

Conventions shared by every rule:

* A limit that is None is not checked: the rule passes with "no limit".
* A limit passes when ``value <= limit``: at the limit passes, one tick above fails.
  ``value`` is what the account would have *after* this order (e.g. open orders + 1).
* ``value`` and ``limit`` in the result are exact decimal strings (``format(x, "f")``).
* Arithmetic is ``MONEY``'s, called as its methods (``MONEY.multiply(a, b)`` is
  ``a * b`` in ``localcontext(MONEY)``, without entering a context per value).
* Equal results are one shared (frozen) ``RuleResult``: most rules give the same one
  signal after signal ("account is ACTIVE"), and building one costs more than the rule.
  The rules whose value is an amount that moves with every signal (notionals, exposure,
  leverage, the distance from the mark) or the signal's own id (DUPLICATE_SIGNAL) build
  theirs each time (``kept=False``):
  remembering those would only fill the memo, and empty it sooner for the others.
* Price of an order (``CheckInput.order_px``): a limit order is valued at its limit
  price; a market order at the last mark of its symbol, or the signal's ``ref_px``
  when no mark has been seen. With neither, notional rules that have a limit fail
  ("no price").
* Open orders count: position limits add the leaves of open orders on the same side;
  gross exposure and leverage add the notional reserved by every open order.
* An order that only *reduces* the position (``CheckInput.reduces``) is exempt from
  the exposure limits (MAX_POSITION_*, MAX_GROSS_EXPOSURE, MAX_LEVERAGE): cutting risk
  is always allowed, even when a limit was lowered below the current position. It is
  still subject to the fat-finger limits (order qty, notional, collar, rate).
* Instrument rules (INSTRUMENT_STATUS, TICK_SIZE, LOT_SIZE, MIN_NOTIONAL) check the
  order against the instruments row of its symbol (``CheckInput.instrument``). A symbol
  without a row passes them with "no instrument row", except INSTRUMENT_STATUS when
  the book holds rows of other symbols (``instruments_known``): then it is unknown.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from operators.accounting import MONEY, ZERO
from operators.instruments import price_off_grid, qty_off_lot
from schemas.base import Side
from schemas.built import trusting
from schemas.strategy import OrderType, TradeSignal
from schemas.trading import (
    Account,
    AccountStatus,
    AccountType,
    Instrument,
    InstrumentStatus,
    RuleResult,
    SymbolLimit,
    TradingState,
    VenueState,
)

BPS = Decimal(10_000)
INFINITY = Decimal("Infinity")


class Rule(StrEnum):
    """Stable names of the pre-trade rules (used in decisions and risk events)."""

    ACCOUNT_STATUS = "ACCOUNT_STATUS"
    TRADING_HALTED = "TRADING_HALTED"
    DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_ORDER_QTY = "MAX_ORDER_QTY"
    MAX_POSITION_QTY = "MAX_POSITION_QTY"
    MAX_POSITION_NOTIONAL = "MAX_POSITION_NOTIONAL"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    MAX_LEVERAGE = "MAX_LEVERAGE"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    PRICE_COLLAR = "PRICE_COLLAR"
    ORDER_RATE = "ORDER_RATE"
    BUYING_POWER = "BUYING_POWER"
    INSTRUMENT_STATUS = "INSTRUMENT_STATUS"
    TICK_SIZE = "TICK_SIZE"
    LOT_SIZE = "LOT_SIZE"
    MIN_NOTIONAL = "MIN_NOTIONAL"
    NO_ROUTE = "NO_ROUTE"
    STALE_SIGNAL = "STALE_SIGNAL"
    FUTURE_SIGNAL = "FUTURE_SIGNAL"


_NAMES = MappingProxyType({rule: rule.value for rule in Rule})
"""Each rule's name (``Rule.X.value`` goes through the enum's descriptor, slowly)."""

RESULTS_KEPT = 4096
"""Distinct ``RuleResult``s remembered for reuse; the memo starts again when full."""

_RESULTS: dict[tuple[Rule, bool, str, str | None, str | None], RuleResult] = {}

_RESULT_TRUSTED = frozenset({"rule", "passed", "value", "limit"})
"""What a rule's result takes on trust (``schemas.built.trusting``): the rule's name, the
verdict and the strings this module formats; the message (free text, cut if too long) is
checked."""


def dec_str(value: Decimal | int) -> str:
    """Return an exact, non-scientific decimal string (``Infinity`` for infinity)."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


@dataclass(frozen=True)
class CheckInput:
    """Everything the rules look at for one signal, as of just before the signal.

    The figures several rules share (``order_px``, ``order_notional``, ``projected_qty``,
    ``reduces``) are derived once, when the input is built.
    """

    signal: TradeSignal
    account: Account | None
    """The account row in force; None if no row was seen (fails ACCOUNT_STATUS)."""
    symbol_limit: SymbolLimit | None
    trading_state: TradingState
    """The most restrictive of the account's state and the signal's strategy's state."""
    duplicate: bool
    """The signal id (or the order id derived from it) was seen before."""
    mark: Decimal | None
    """Last mark of the signal's symbol."""
    net_qty: Decimal
    """Current signed position in the signal's symbol."""
    open_same_side_qty: Decimal
    """Leaves of the open orders in this symbol on the signal's side."""
    open_orders: int
    gross_exposure: Decimal
    reserved_notional: Decimal
    """Notional reserved by every open order of the account."""
    reserved_buy_notional: Decimal
    """Notional reserved by the open buy orders (what a cash account has committed)."""
    equity: Decimal
    cash: Decimal
    recent_orders: int
    """Orders accepted within the second before the signal (event time)."""
    instrument: Instrument | None = None
    """The instruments row of the signal's symbol in force; None if none was seen."""
    instruments_known: bool = False
    """The book has seen instruments rows: a symbol without one is unknown (fails
    INSTRUMENT_STATUS). False: no instruments are published, the rules pass."""
    venue: str | None = None
    """The venue the routes table sends this order to; None: the default venue."""
    venue_state: VenueState | None = None
    """That venue's row in the venues table; None if it has none."""
    market_ts: datetime | None = None
    """The time of the symbol's newest tick when the signal came; None: none seen."""

    order_px: Decimal | None = field(init=False, repr=False, compare=False)
    """The price the order is valued at (see the module docstring)."""
    order_notional: Decimal | None = field(init=False, repr=False, compare=False)
    """``qty * order_px``, or None without a price."""
    projected_qty: Decimal = field(init=False, repr=False, compare=False)
    """The position if this order and every open order on its side filled."""
    reduces: bool = field(init=False, repr=False, compare=False)
    """Whether the order only reduces the position: it is on the opposite side of the
    position and, together with the open orders on its side, it cannot take the
    position through zero."""

    def __post_init__(self) -> None:
        # The derived figures several rules share, computed once per check (in MONEY,
        # through its methods: whatever the caller's context).
        signal, net = self.signal, self.net_qty
        if signal.order_type is OrderType.LIMIT:
            px = signal.limit_px
        else:
            px = self.mark if self.mark is not None else signal.ref_px
        same_side = MONEY.add(self.open_same_side_qty, signal.qty)
        reduces = not (net == 0 or (net > 0) == (signal.side is Side.BUY)) \
            and same_side <= MONEY.abs(net)
        put = object.__setattr__  # frozen: set once, here
        put(self, "order_px", px)
        put(self, "order_notional", None if px is None else MONEY.multiply(signal.qty, px))
        put(self, "projected_qty", MONEY.add(net, MONEY.multiply(signal.side.sign, same_side)))
        put(self, "reduces", reduces)


def _result(rule: Rule, passed: bool, message: str, value: str | None = None,
            limit: str | None = None, *, kept: bool = True) -> RuleResult:
    if not kept:
        return trusting(RuleResult, _RESULT_TRUSTED)(
            rule=_NAMES[rule], passed=passed, value=value, limit=limit, message=message
        )
    key = (rule, passed, message, value, limit)
    result = _RESULTS.get(key)
    if result is None:
        if len(_RESULTS) >= RESULTS_KEPT:
            _RESULTS.clear()
        result = _RESULTS[key] = _result(rule, passed, message, value, limit, kept=False)
    return result


def _at_most(
    rule: Rule,
    what: str,
    value: Decimal | int | None,
    limit: Decimal | int | None,
    *,
    exempt: bool = False,
    within: bool | None = None,
    kept: bool = True,
) -> RuleResult:
    """Check ``value <= limit``, the shape most rules share.

    ``within`` overrides the comparison when the caller compared exactly itself;
    ``kept``: see ``_result``.
    """
    shown = None if value is None else dec_str(value)
    if limit is None:
        return _result(rule, True, f"{what}: no limit set", shown, kept=kept)
    cap = dec_str(limit)
    if value is None:
        return _result(rule, False, f"{what}: no price to value the order", None, cap, kept=kept)
    if (value <= limit) if within is None else within:
        return _result(rule, True, f"{what} {shown} within the limit {cap}", shown, cap, kept=kept)
    if exempt:
        message = f"{what} {shown} above the limit {cap}, allowed: the order reduces"
        return _result(rule, True, message, shown, cap, kept=kept)
    return _result(rule, False, f"{what} {shown} exceeds the limit {cap}", shown, cap, kept=kept)


def check_account_status(ctx: CheckInput) -> RuleResult:
    """Fail an unknown or BLOCKED account; a REDUCING account takes reducing orders only."""
    rule = Rule.ACCOUNT_STATUS
    if ctx.account is None:
        return _result(rule, False, f"account {ctx.signal.account} is unknown", "UNKNOWN")
    return _state_gate(rule, "account", ctx.account.status, ctx.reduces)


def check_trading_halted(ctx: CheckInput) -> RuleResult:
    """Fail when trading is HALTED; in REDUCING pass only orders that reduce."""
    return _state_gate(Rule.TRADING_HALTED, "trading", ctx.trading_state, ctx.reduces)


def _state_gate(rule: Rule, what: str, state: AccountStatus | TradingState, reduces: bool) -> RuleResult:
    """Pass ACTIVE, pass REDUCING for an order that reduces only, fail any other state.

    An account's status and a scope's trading state share the names ACTIVE and REDUCING;
    the third (BLOCKED, HALTED) stops every order.
    """
    if state == "ACTIVE":
        return _result(rule, True, f"{what} is ACTIVE", state.value)
    if state == "REDUCING" and reduces:
        return _result(rule, True, f"{what} is REDUCING and the order reduces", state.value)
    if state == "REDUCING":
        return _result(rule, False, f"{what} is REDUCING: only reducing orders", state.value)
    return _result(rule, False, f"{what} is {state.value}", state.value)


def check_duplicate_signal(ctx: CheckInput) -> RuleResult:
    """Fail a signal whose id was seen before."""
    sid = ctx.signal.signal_id
    if ctx.duplicate:
        return _result(Rule.DUPLICATE_SIGNAL, False, f"signal {sid} was seen before", sid,
                       kept=False)
    return _result(Rule.DUPLICATE_SIGNAL, True, "first time this signal is seen", sid, kept=False)


def _limit(ctx: CheckInput, name: str) -> Decimal | int | None:
    return getattr(ctx.account, name) if ctx.account is not None else None


def check_max_order_notional(ctx: CheckInput) -> RuleResult:
    """Fail an order whose notional (qty * order price) exceeds ``max_order_notional``."""
    return _at_most(Rule.MAX_ORDER_NOTIONAL, "order notional", ctx.order_notional,
                    _limit(ctx, "max_order_notional"), kept=False)


def check_max_order_qty(ctx: CheckInput) -> RuleResult:
    """Fail an order whose quantity exceeds ``max_order_qty``."""
    return _at_most(Rule.MAX_ORDER_QTY, "order qty", ctx.signal.qty,
                    _limit(ctx, "max_order_qty"))


def check_max_position_qty(ctx: CheckInput) -> RuleResult:
    """Fail when |position + open orders on the side + order| exceeds the symbol's limit."""
    limit = ctx.symbol_limit.max_position_qty if ctx.symbol_limit else None
    return _at_most(Rule.MAX_POSITION_QTY, f"projected {ctx.signal.symbol} position",
                    abs(ctx.projected_qty), limit, exempt=ctx.reduces)


def check_max_position_notional(ctx: CheckInput) -> RuleResult:
    """Fail when the projected position's notional exceeds the symbol's limit.

    The projected position is valued at the last mark, else at the order's price.
    """
    limit = ctx.symbol_limit.max_position_notional if ctx.symbol_limit else None
    px = ctx.mark if ctx.mark is not None else ctx.order_px
    value = None
    if px is not None:
        value = MONEY.multiply(MONEY.abs(ctx.projected_qty), px)
    return _at_most(Rule.MAX_POSITION_NOTIONAL, f"projected {ctx.signal.symbol} notional",
                    value, limit, exempt=ctx.reduces, kept=False)


def _projected_gross(ctx: CheckInput) -> Decimal | None:
    notional = ctx.order_notional
    if notional is None:
        return None
    return MONEY.add(MONEY.add(ctx.gross_exposure, ctx.reserved_notional), notional)


def check_max_gross_exposure(ctx: CheckInput) -> RuleResult:
    """Fail when gross exposure + reserved notional + order notional exceeds the limit."""
    return _at_most(Rule.MAX_GROSS_EXPOSURE, "projected gross exposure", _projected_gross(ctx),
                    _limit(ctx, "max_gross_exposure"), exempt=ctx.reduces, kept=False)


def check_max_leverage(ctx: CheckInput) -> RuleResult:
    """Fail when projected gross exposure / equity exceeds ``max_leverage``.

    With equity zero or negative any exposure is unbounded leverage ("Infinity").
    """
    limit = _limit(ctx, "max_leverage")
    gross = _projected_gross(ctx)
    leverage: Decimal | None = None
    within: bool | None = None
    if gross is not None and ctx.equity <= 0:
        leverage = INFINITY if gross > 0 else ZERO
    elif gross is not None:
        leverage = MONEY.divide(gross, ctx.equity)
        # Compare exactly; the (rounded) quotient is only for the record.
        within = None if limit is None else gross <= MONEY.multiply(limit, ctx.equity)
    return _at_most(Rule.MAX_LEVERAGE, "projected leverage", leverage, limit,
                    exempt=ctx.reduces, within=within, kept=False)


def check_max_open_orders(ctx: CheckInput) -> RuleResult:
    """Fail when the open orders, this one included, would exceed ``max_open_orders``."""
    return _at_most(Rule.MAX_OPEN_ORDERS, "open orders", ctx.open_orders + 1,
                    _limit(ctx, "max_open_orders"))


def check_price_collar(ctx: CheckInput) -> RuleResult:
    """Fail a limit price more than ``price_collar_bps`` away from the last mark.

    The comparison is exact: ``|limit px - mark| <= mark * bps / 10000``; ``value`` is
    the distance and ``limit`` the allowed distance. Any order needs a mark to pass.
    """
    rule, bps = Rule.PRICE_COLLAR, _limit(ctx, "price_collar_bps")
    if bps is None:
        return _at_most(rule, "price distance from the mark", None, None)
    if ctx.mark is None:
        return _result(rule, False, f"no mark for {ctx.signal.symbol} to check the price",
                       None, f"{dec_str(bps)}bps")
    allowed = MONEY.divide(MONEY.multiply(ctx.mark, bps), BPS)
    if ctx.signal.order_type is OrderType.MARKET or ctx.signal.limit_px is None:
        return _result(rule, True, f"market order; mark {dec_str(ctx.mark)}", "0",
                       dec_str(allowed))
    distance = MONEY.abs(MONEY.subtract(ctx.signal.limit_px, ctx.mark))
    return _at_most(rule, f"limit price {dec_str(ctx.signal.limit_px)}: distance from mark "
                    f"{dec_str(ctx.mark)}", distance, allowed, kept=False)


def check_order_rate(ctx: CheckInput) -> RuleResult:
    """Fail when this order would make more than ``max_orders_per_second`` in 1 s."""
    return _at_most(Rule.ORDER_RATE, "orders in the last second", ctx.recent_orders + 1,
                    _limit(ctx, "max_orders_per_second"))


def check_buying_power(ctx: CheckInput) -> RuleResult:
    """Fail a cash account's buy whose notional plus reserved buys exceeds its cash."""
    rule = Rule.BUYING_POWER
    if ctx.account is None or ctx.account.account_type is not AccountType.CASH:
        return _result(rule, True, "not a cash account: bound by leverage instead")
    if ctx.signal.side is not Side.BUY:
        return _result(rule, True, "a sell needs no cash")
    notional = ctx.order_notional
    value = None
    if notional is not None:
        value = MONEY.add(notional, ctx.reserved_buy_notional)
    return _at_most(rule, "buy notional plus reserved buys", value, ctx.cash)


NO_INSTRUMENT = "no instrument row"


def check_instrument_status(ctx: CheckInput) -> RuleResult:
    """Fail a symbol whose instrument is HALTED or CLOSED, or that has no row while others do."""
    rule, inst, symbol = Rule.INSTRUMENT_STATUS, ctx.instrument, ctx.signal.symbol
    if inst is None and not ctx.instruments_known:
        return _result(rule, True, f"{symbol}: {NO_INSTRUMENT} (no instruments published)")
    if inst is None:
        return _result(rule, False, f"unknown symbol {symbol}: {NO_INSTRUMENT}", "UNKNOWN",
                       InstrumentStatus.TRADING.value)
    status = inst.status
    if status is InstrumentStatus.TRADING:
        return _result(rule, True, f"{symbol} is TRADING", status.value, status.value)
    return _result(rule, False, f"{symbol} is {status.value}", status.value,
                   InstrumentStatus.TRADING.value)


def check_tick_size(ctx: CheckInput) -> RuleResult:
    """Fail a limit price that is not on the instrument's tick grid (or too precise)."""
    rule, inst, px = Rule.TICK_SIZE, ctx.instrument, ctx.signal.limit_px
    if inst is None:
        return _result(rule, True, f"{ctx.signal.symbol}: {NO_INSTRUMENT}")
    tick = dec_str(inst.tick_size)
    if ctx.signal.order_type is OrderType.MARKET or px is None:
        return _result(rule, True, "market order: no limit price to check", None, tick)
    off = price_off_grid(px, inst)
    if off is None:
        return _result(rule, True, f"limit price {dec_str(px)} is on the tick grid {tick}",
                       dec_str(px), tick)
    return _result(rule, False, f"limit price {dec_str(px)} {off}", dec_str(px), tick)


def check_lot_size(ctx: CheckInput) -> RuleResult:
    """Fail a quantity off the lot grid, too precise, or outside ``[min_qty, max_qty]``."""
    rule, inst, qty = Rule.LOT_SIZE, ctx.instrument, ctx.signal.qty
    if inst is None:
        return _result(rule, True, f"{ctx.signal.symbol}: {NO_INSTRUMENT}", dec_str(qty))
    bounds = [f"lot {dec_str(inst.lot_size)}"]
    if inst.min_qty is not None:
        bounds.append(f"min {dec_str(inst.min_qty)}")
    if inst.max_qty is not None:
        bounds.append(f"max {dec_str(inst.max_qty)}")
    limit = ", ".join(bounds)
    off = qty_off_lot(qty, inst)
    if off is None:
        return _result(rule, True, f"qty {dec_str(qty)} fits {limit}", dec_str(qty), limit)
    return _result(rule, False, f"qty {dec_str(qty)} {off}", dec_str(qty), limit)


def check_min_notional(ctx: CheckInput) -> RuleResult:
    """Fail an order whose notional (qty * order price) is below the instrument's minimum."""
    rule, inst = Rule.MIN_NOTIONAL, ctx.instrument
    if inst is None:
        return _result(rule, True, f"{ctx.signal.symbol}: {NO_INSTRUMENT}")
    floor = inst.min_notional
    notional = ctx.order_notional
    shown = None if notional is None else dec_str(notional)
    if floor is None:
        return _result(rule, True, "order notional: no minimum set", shown)
    cap = dec_str(floor)
    if notional is None:
        return _result(rule, False, "order notional: no price to value the order", None, cap)
    if notional >= floor:
        return _result(rule, True, f"order notional {shown} at or above the minimum {cap}", shown, cap)
    return _result(rule, False, f"order notional {shown} below the minimum {cap}", shown, cap)


def check_no_route(ctx: CheckInput) -> RuleResult:
    """Fail an order routed to a venue no Job D serves (no venues row, or not UP).

    An order no route names goes to the default venue and passes.
    """
    rule = Rule.NO_ROUTE
    if ctx.venue is None:
        return _result(rule, True, "no route: the default venue", value="default")
    if ctx.venue_state is VenueState.UP:
        return _result(rule, True, f"routed to {ctx.venue}, which is UP", value=ctx.venue)
    state = "has no venues row" if ctx.venue_state is None else f"is {ctx.venue_state.value}"
    return _result(rule, False, f"routed to {ctx.venue}, which {state}: no Job D serves it",
                   value=ctx.venue)


Check = Callable[[CheckInput], RuleResult]

def check_stale_signal(ctx: CheckInput) -> RuleResult:
    """Fail a signal dated more than ``max_signal_age_s`` before its symbol's newest tick.

    A signal that old was made from a market that has moved on (a replay of an old
    signal, a strategy stuck behind its input); ``value`` is its age in seconds.
    """
    rule, limit = Rule.STALE_SIGNAL, _limit(ctx, "max_signal_age_s")
    if limit is None:
        return _result(rule, True, "no max_signal_age_s")
    if ctx.market_ts is None:
        return _result(rule, True, f"no tick of {ctx.signal.symbol} seen yet", None, dec_str(limit))
    age = _seconds(ctx.market_ts - ctx.signal.ts)
    return _at_most(rule, f"signal age behind the newest {ctx.signal.symbol} tick (s)",
                    max(age, Decimal(0)), limit)


def check_future_signal(ctx: CheckInput) -> RuleResult:
    """Fail a signal dated more than ``max_signal_lead_s`` after its symbol's newest tick.

    Job C waits (``mark_wait_s``) for the market to reach a signal's time; a signal still
    that far ahead of it is dated wrong. Market time, so it holds in a replay of an old
    market, where the wall-clock check cannot see it; ``value`` is the lead in seconds.
    """
    rule, limit = Rule.FUTURE_SIGNAL, _limit(ctx, "max_signal_lead_s")
    if limit is None:
        return _result(rule, True, "no max_signal_lead_s")
    if ctx.market_ts is None:
        return _result(rule, True, f"no tick of {ctx.signal.symbol} seen yet", None, dec_str(limit))
    lead = _seconds(ctx.signal.ts - ctx.market_ts)
    return _at_most(rule, f"signal lead over the newest {ctx.signal.symbol} tick (s)",
                    max(lead, Decimal(0)), limit)


def _seconds(gap: timedelta) -> Decimal:
    return (Decimal(gap.days * 86_400 + gap.seconds) + Decimal(gap.microseconds).scaleb(-6)).normalize()


RULES: tuple[Check, ...] = (
    check_account_status,
    check_trading_halted,
    check_duplicate_signal,
    check_max_order_notional,
    check_max_order_qty,
    check_max_position_qty,
    check_max_position_notional,
    check_max_gross_exposure,
    check_max_leverage,
    check_max_open_orders,
    check_price_collar,
    check_order_rate,
    check_buying_power,
    check_instrument_status,
    check_tick_size,
    check_lot_size,
    check_min_notional,
    check_no_route,
    check_stale_signal,
    check_future_signal,
)
"""Every pre-trade rule, in the order they appear in a decision."""


def evaluate(ctx: CheckInput, rules: Iterable[Check] = RULES) -> list[RuleResult]:
    """Run every rule on ``ctx`` and return all the results (passing or not)."""
    return [check(ctx) for check in rules]


class RateWindow:
    """Event times of accepted orders, to count them over a sliding window.

    ``count(now)`` counts the times ``t`` with ``t > now - span``: an order exactly one
    span earlier has left the window. Times older than the newest minus the span are
    pruned, so a signal more than a span out of order may be under-counted.
    """

    __slots__ = ("_times", "span")

    def __init__(self, span: timedelta = timedelta(seconds=1),
                 times: Iterable[datetime] = ()) -> None:
        self.span = span
        self._times: list[datetime] = sorted(times)

    def count(self, now: datetime) -> int:
        """Return how many recorded times lie within the window ending at ``now``."""
        return len(self._times) - bisect_right(self._times, now - self.span)

    def add(self, ts: datetime) -> None:
        """Record an accepted order at ``ts`` and prune times no window can reach."""
        insort(self._times, ts)
        cut = bisect_right(self._times, self._times[-1] - self.span)
        del self._times[:cut]

    def snapshot(self) -> list[datetime]:
        """Return the recorded times (a copy)."""
        return list(self._times)
