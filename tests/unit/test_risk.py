"""Pre-trade rules: each at its boundary (limit - eps passes, limit + eps fails)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from operators.risk import (
    RULES,
    CheckInput,
    RateWindow,
    Rule,
    check_account_status,
    check_buying_power,
    check_duplicate_signal,
    check_future_signal,
    check_instrument_status,
    check_lot_size,
    check_max_gross_exposure,
    check_max_leverage,
    check_max_open_orders,
    check_max_order_notional,
    check_max_order_qty,
    check_max_position_notional,
    check_max_position_qty,
    check_min_notional,
    check_order_rate,
    check_price_collar,
    check_stale_signal,
    check_tick_size,
    check_trading_halted,
    dec_str,
    evaluate,
)
from schemas.base import Side
from schemas.strategy import OrderType, TradeSignal
from schemas.trading import (
    AccountStatus,
    AccountType,
    Instrument,
    InstrumentStatus,
    SymbolLimit,
    TradingState,
)
from tests.builders import EPS, T0, D, account, signal


def limit_signal(px: str, **kw: Any) -> TradeSignal:
    return signal(order_type=OrderType.LIMIT, limit_px=D(px), **kw)


def ctx(**kw: Any) -> CheckInput:
    fields: dict[str, Any] = {
        "signal": signal(), "account": account(), "symbol_limit": None,
        "trading_state": TradingState.ACTIVE, "duplicate": False, "mark": D(100),
        "net_qty": D(0), "open_same_side_qty": D(0), "open_orders": 0,
        "gross_exposure": D(0), "reserved_notional": D(0), "reserved_buy_notional": D(0),
        "equity": D(100_000), "cash": D(100_000), "recent_orders": 0,
    }
    fields.update(kw)
    return CheckInput(**fields)


def sym_limit(**kw: Any) -> SymbolLimit:
    return SymbolLimit(account="A1", symbol="AAPL", ts=T0, **kw)


# Each case: the rule, the exact value it computes, the step (epsilon) of its limit, and a
# builder taking the limit to put in force.
Case = tuple[Callable[[CheckInput], Any], Decimal, Decimal, Callable[[Decimal], CheckInput]]

CASES: dict[Rule, Case] = {
    Rule.MAX_ORDER_NOTIONAL: (
        check_max_order_notional, D("1005"), EPS,
        lambda lim: ctx(signal=limit_signal("100.5"), account=account(max_order_notional=lim)),
    ),
    Rule.MAX_ORDER_QTY: (
        check_max_order_qty, D("10.5"), EPS,
        lambda lim: ctx(signal=signal(qty=D("10.5")), account=account(max_order_qty=lim)),
    ),
    Rule.MAX_POSITION_QTY: (
        check_max_position_qty, D(10), EPS,
        lambda lim: ctx(net_qty=D(5), open_same_side_qty=D(2), signal=signal(qty=D(3)),
                        symbol_limit=sym_limit(max_position_qty=lim)),
    ),
    Rule.MAX_POSITION_NOTIONAL: (
        check_max_position_notional, D(1000), EPS,
        lambda lim: ctx(net_qty=D(5), open_same_side_qty=D(2), signal=signal(qty=D(3)),
                        symbol_limit=sym_limit(max_position_notional=lim)),
    ),
    Rule.MAX_GROSS_EXPOSURE: (
        check_max_gross_exposure, D(1000), EPS,
        lambda lim: ctx(gross_exposure=D(500), reserved_notional=D(200),
                        signal=signal(qty=D(3)), account=account(max_gross_exposure=lim)),
    ),
    Rule.MAX_LEVERAGE: (
        check_max_leverage, D("2.5"), EPS,
        lambda lim: ctx(gross_exposure=D(500), reserved_notional=D(200), equity=D(400),
                        signal=signal(qty=D(3)), account=account(max_leverage=lim)),
    ),
    Rule.MAX_OPEN_ORDERS: (
        check_max_open_orders, D(5), D(1),
        lambda lim: ctx(open_orders=4, account=account(max_open_orders=int(lim))),
    ),
    Rule.ORDER_RATE: (
        check_order_rate, D(3), D(1),
        lambda lim: ctx(recent_orders=2, account=account(max_orders_per_second=int(lim))),
    ),
    Rule.PRICE_COLLAR: (
        # mark 100, limit 101: 1.00 away; the collar in bps is the limit in force
        check_price_collar, D(100), EPS,
        lambda lim: ctx(signal=limit_signal("101"), account=account(price_collar_bps=lim)),
    ),
    Rule.BUYING_POWER: (
        check_buying_power, D(1500), EPS,
        lambda lim: ctx(signal=limit_signal("100"), reserved_buy_notional=D(500), cash=lim,
                        account=account(account_type=AccountType.CASH)),
    ),
}
RULE_IDS = [r.value for r in CASES]


def _run(rule: Rule, limit: Decimal) -> Any:
    check, _, _, build = CASES[rule]
    return check(build(limit))


@pytest.mark.parametrize("rule", list(CASES), ids=RULE_IDS)
def test_rule_with_value_at_limit_passes(rule: Rule) -> None:
    _, value, _, _ = CASES[rule]
    result = _run(rule, value)
    assert result.rule == rule.value
    assert result.passed, result.message


@pytest.mark.parametrize("rule", list(CASES), ids=RULE_IDS)
def test_rule_with_value_at_limit_minus_epsilon_passes(rule: Rule) -> None:
    _, value, eps, _ = CASES[rule]
    assert _run(rule, value + eps).passed


@pytest.mark.parametrize("rule", list(CASES), ids=RULE_IDS)
def test_rule_with_value_at_limit_plus_epsilon_fails(rule: Rule) -> None:
    _, value, eps, _ = CASES[rule]
    result = _run(rule, value - eps)
    assert not result.passed
    assert result.limit is not None
    assert "exceeds" in result.message


def test_max_order_notional_at_limit_plus_epsilon_fails() -> None:
    result = _run(Rule.MAX_ORDER_NOTIONAL, D("1005") - EPS)
    assert (result.passed, result.value, result.limit) == (False, "1005.0", "1004.99999999")


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        (Rule.MAX_ORDER_NOTIONAL, "1005.0"), (Rule.MAX_ORDER_QTY, "10.5"),
        (Rule.MAX_POSITION_QTY, "10"), (Rule.MAX_POSITION_NOTIONAL, "1000"),
        (Rule.MAX_GROSS_EXPOSURE, "1000"), (Rule.MAX_LEVERAGE, "2.5"),
        (Rule.MAX_OPEN_ORDERS, "5"), (Rule.ORDER_RATE, "3"), (Rule.PRICE_COLLAR, "1"),
        (Rule.BUYING_POWER, "1500"),
    ],
    ids=RULE_IDS,
)
def test_rule_reports_value_as_exact_decimal_string(rule: Rule, value: str) -> None:
    result = _run(rule, CASES[rule][1])
    assert D(result.value) == D(value)
    assert "E" not in result.value


@pytest.mark.parametrize(
    "rule",
    [r for r in CASES if r is not Rule.BUYING_POWER],
    ids=[r.value for r in CASES if r is not Rule.BUYING_POWER],
)
def test_rule_without_limit_passes_unchecked(rule: Rule) -> None:
    check, _, _, build = CASES[rule]
    unlimited = replace(build(D(1)), account=account(), symbol_limit=None)
    result = check(unlimited)
    assert result.passed
    assert result.limit is None
    assert "no limit" in result.message


def test_price_collar_limit_is_allowed_distance_from_mark() -> None:
    result = _run(Rule.PRICE_COLLAR, D(50))
    assert (result.passed, result.value, result.limit) == (False, "1", "0.5")


def test_price_collar_below_mark_is_symmetric() -> None:
    base = ctx(signal=limit_signal("99"), account=account(price_collar_bps=D(100)))
    assert check_price_collar(base).passed
    assert not check_price_collar(replace(base, signal=limit_signal("98.99999999"))).passed


def test_price_collar_market_order_with_mark_passes() -> None:
    assert check_price_collar(ctx(account=account(price_collar_bps=D(1)))).passed


@pytest.mark.parametrize("sig", [signal(), limit_signal("100")], ids=["market", "limit"])
def test_price_collar_without_mark_fails(sig: TradeSignal) -> None:
    result = check_price_collar(ctx(signal=sig, mark=None, account=account(price_collar_bps=D(5))))
    assert not result.passed
    assert "no mark" in result.message


# ---------------------------------------------------------------- order price


def test_market_order_notional_uses_last_mark() -> None:
    assert ctx(mark=D(101), signal=signal(ref_px=D(99))).order_notional == D(1010)


def test_market_order_notional_without_mark_uses_ref_px() -> None:
    assert ctx(mark=None, signal=signal(ref_px=D(99))).order_notional == D(990)


def test_limit_order_notional_uses_limit_price_not_mark() -> None:
    assert ctx(mark=D(50), signal=limit_signal("100")).order_notional == D(1000)


def test_market_order_without_any_price_fails_notional_limit() -> None:
    result = check_max_order_notional(
        ctx(mark=None, account=account(max_order_notional=D(10**9)))
    )
    assert not result.passed
    assert "no price" in result.message


def test_market_order_without_any_price_passes_when_no_notional_limit() -> None:
    assert check_max_order_notional(ctx(mark=None)).passed


# ---------------------------------------------------------------- reduce-only


@pytest.mark.parametrize(
    ("net", "open_same", "side", "qty", "reduces"),
    [
        (D(10), D(0), Side.SELL, D(10), True),
        (D(10), D(0), Side.SELL, D(10) + EPS, False),
        (D(10), D(4), Side.SELL, D(6), True),
        (D(10), D(4), Side.SELL, D(7), False),
        (D(10), D(0), Side.BUY, D(1), False),
        (D(-10), D(0), Side.BUY, D(3), True),
        (D(-10), D(0), Side.SELL, D(3), False),
        (D(0), D(0), Side.SELL, D(1), False),
    ],
)
def test_reduces_only_when_order_and_open_orders_cannot_cross_zero(
    net: Decimal, open_same: Decimal, side: Side, qty: Decimal, reduces: bool
) -> None:
    c = ctx(net_qty=net, open_same_side_qty=open_same, signal=signal(side=side, qty=qty))
    assert c.reduces is reduces


def test_projected_qty_counts_open_orders_on_the_same_side() -> None:
    c = ctx(net_qty=D(-5), open_same_side_qty=D(2), signal=signal(side=Side.SELL, qty=D(1)))
    assert c.projected_qty == D(-8)


@pytest.mark.parametrize(
    "check",
    [check_max_position_qty, check_max_position_notional, check_max_gross_exposure,
     check_max_leverage],
)
def test_exposure_rule_above_limit_passes_an_order_that_reduces(check: Any) -> None:
    over = ctx(
        net_qty=D(100), signal=signal(side=Side.SELL, qty=D(10)), gross_exposure=D(10_000),
        equity=D(1_000),
        symbol_limit=sym_limit(max_position_qty=D(1), max_position_notional=D(1)),
        account=account(max_gross_exposure=D(1), max_leverage=D("0.1")),
    )
    result = check(over)
    assert result.passed
    assert "reduces" in result.message


def test_order_qty_rule_does_not_exempt_an_order_that_reduces() -> None:
    c = ctx(net_qty=D(100), signal=signal(side=Side.SELL, qty=D(10)),
            account=account(max_order_qty=D(5)))
    assert not check_max_order_qty(c).passed


# ---------------------------------------------------------------- leverage, cash


@pytest.mark.parametrize("equity", [D(0), D(-1)])
def test_max_leverage_with_equity_at_or_below_zero_fails_as_infinite(equity: Decimal) -> None:
    result = check_max_leverage(ctx(equity=equity, account=account(max_leverage=D(100))))
    assert not result.passed
    assert result.value == "Infinity"


def test_buying_power_ignores_margin_accounts() -> None:
    c = ctx(cash=D(0), account=account(account_type=AccountType.MARGIN))
    assert check_buying_power(c).passed


def test_buying_power_ignores_sells_of_cash_accounts() -> None:
    c = ctx(cash=D(0), signal=signal(side=Side.SELL), account=account(account_type=AccountType.CASH))
    assert check_buying_power(c).passed


def test_buying_power_with_negative_cash_fails_any_buy() -> None:
    c = ctx(cash=D(-1), account=account(account_type=AccountType.CASH))
    assert not check_buying_power(c).passed


# ---------------------------------------------------------------- status rules


@pytest.mark.parametrize(
    ("rule", "given", "side", "passed"),
    [
        (check_account_status, {"account": account(status=AccountStatus.ACTIVE)}, Side.BUY, True),
        (check_account_status, {"account": account(status=AccountStatus.REDUCING)}, Side.SELL, True),
        (check_account_status, {"account": account(status=AccountStatus.REDUCING)}, Side.BUY, False),
        (check_account_status, {"account": account(status=AccountStatus.BLOCKED)}, Side.SELL, False),
        (check_trading_halted, {"trading_state": TradingState.ACTIVE}, Side.BUY, True),
        (check_trading_halted, {"trading_state": TradingState.REDUCING}, Side.SELL, True),
        (check_trading_halted, {"trading_state": TradingState.REDUCING}, Side.BUY, False),
        (check_trading_halted, {"trading_state": TradingState.HALTED}, Side.SELL, False),
        (check_trading_halted, {"trading_state": TradingState.HALTED}, Side.BUY, False),
    ],
)
def test_account_status_and_trading_state_gate_by_state_and_reduction(
    rule: Callable[[CheckInput], Any], given: dict[str, Any], side: Side, passed: bool
) -> None:
    c = ctx(**given, net_qty=D(50), signal=signal(side=side))  # long 50: a SELL reduces, a BUY does not
    assert rule(c).passed is passed


def test_account_status_unknown_account_fails() -> None:
    result = check_account_status(ctx(account=None))
    assert (result.passed, result.value) == (False, "UNKNOWN")



@pytest.mark.parametrize("duplicate", [True, False])
def test_duplicate_signal_fails_only_a_seen_signal(duplicate: bool) -> None:
    assert check_duplicate_signal(ctx(duplicate=duplicate)).passed is not duplicate


def test_evaluate_runs_every_rule_in_order_even_after_a_failure() -> None:
    results = evaluate(ctx(account=None, duplicate=True))
    assert [r.rule for r in results] == [
        "ACCOUNT_STATUS", "TRADING_HALTED", "DUPLICATE_SIGNAL", "MAX_ORDER_NOTIONAL",
        "MAX_ORDER_QTY", "MAX_POSITION_QTY", "MAX_POSITION_NOTIONAL", "MAX_GROSS_EXPOSURE",
        "MAX_LEVERAGE", "MAX_OPEN_ORDERS", "PRICE_COLLAR", "ORDER_RATE", "BUYING_POWER",
        "INSTRUMENT_STATUS", "TICK_SIZE", "LOT_SIZE", "MIN_NOTIONAL", "NO_ROUTE", "STALE_SIGNAL",
        "FUTURE_SIGNAL",
    ]
    assert len(RULES) == len(results)
    assert [r.rule for r in results if not r.passed] == ["ACCOUNT_STATUS", "DUPLICATE_SIGNAL"]


# ---------------------------------------------------------------- rate window


def test_rate_window_order_exactly_one_second_earlier_has_left() -> None:
    window = RateWindow()
    window.add(T0)
    assert window.count(T0 + timedelta(seconds=1)) == 0
    assert window.count(T0 + timedelta(milliseconds=999)) == 1


def test_rate_window_counts_orders_within_the_last_second() -> None:
    window = RateWindow()
    for ms in (0, 200, 400, 1100):
        window.add(T0 + timedelta(milliseconds=ms))
    assert window.count(T0 + timedelta(milliseconds=1150)) == 3


def test_rate_window_prunes_times_no_window_can_reach() -> None:
    window = RateWindow(times=[T0, T0 + timedelta(milliseconds=500)])
    window.add(T0 + timedelta(seconds=2))
    assert window.snapshot() == [T0 + timedelta(seconds=2)]


def test_dec_str_never_uses_scientific_notation() -> None:
    assert dec_str(D("1E+3")) == "1000"
    assert dec_str(D("1E-9")) == "0.000000001"
    assert dec_str(7) == "7"


def instrument(**kw: Any) -> Instrument:
    fields: dict[str, Any] = dict(symbol="AAPL", tick_size=D("0.05"), lot_size=D(10), min_qty=D(10),
                                  max_qty=D(500), min_notional=D(1000), price_precision=2, qty_precision=0,
                                  ts=T0)
    fields.update(kw)
    return Instrument(**fields)


def test_instrument_rules_pass_with_no_instrument_row_while_none_are_published() -> None:
    c = ctx(signal=limit_signal("100.123", qty=D("3.5")))
    for check in (check_instrument_status, check_tick_size, check_lot_size, check_min_notional):
        result = check(c)
        assert result.passed
        assert "no instrument row" in result.message


def test_instrument_status_fails_an_unknown_halted_or_closed_symbol() -> None:
    unknown = check_instrument_status(ctx(instruments_known=True))
    assert not unknown.passed
    assert unknown.message == "unknown symbol AAPL: no instrument row"
    assert (unknown.value, unknown.limit) == ("UNKNOWN", "TRADING")
    for status in (InstrumentStatus.HALTED, InstrumentStatus.CLOSED):
        r = check_instrument_status(ctx(instrument=instrument(status=status), instruments_known=True))
        assert not r.passed
        assert (r.value, r.limit, r.message) == (status.value, "TRADING", f"AAPL is {status.value}")
    assert check_instrument_status(ctx(instrument=instrument(), instruments_known=True)).passed


@pytest.mark.parametrize(
    ("px", "passed", "message"),
    [
        ("100.05", True, "limit price 100.05 is on the tick grid 0.05"),
        ("100.07", False, "limit price 100.07 is not a multiple of tick_size 0.05"),
        ("100.050", True, "limit price 100.050 is on the tick grid 0.05"),
        ("100.055", False, "limit price 100.055 has more than price_precision 2 decimal places"),
    ],
)
def test_tick_size_checks_the_limit_price_on_the_grid(px: str, passed: bool, message: str) -> None:
    r = check_tick_size(ctx(signal=limit_signal(px, qty=D(20)), instrument=instrument()))
    assert (r.passed, r.message, r.value, r.limit) == (passed, message, px, "0.05")


def test_tick_size_passes_a_market_order() -> None:
    r = check_tick_size(ctx(instrument=instrument()))
    assert r.passed
    assert r.message == "market order: no limit price to check"


@pytest.mark.parametrize(
    ("qty", "passed", "message"),
    [
        ("20", True, "qty 20 fits lot 10, min 10, max 500"),
        ("25", False, "qty 25 is not a multiple of lot_size 10"),
        ("10.5", False, "qty 10.5 has more than qty_precision 0 decimal places"),
        ("510", False, "qty 510 is above max_qty 500"),
        ("500", True, "qty 500 fits lot 10, min 10, max 500"),
    ],
)
def test_lot_size_checks_the_grid_and_the_bounds(qty: str, passed: bool, message: str) -> None:
    r = check_lot_size(ctx(signal=signal(qty=D(qty)), instrument=instrument()))
    assert (r.passed, r.message, r.value, r.limit) == (passed, message, qty, "lot 10, min 10, max 500")
    below = check_lot_size(ctx(signal=signal(qty=D(10)), instrument=instrument(min_qty=D(20))))
    assert not below.passed
    assert below.message == "qty 10 is below min_qty 20"


def test_min_notional_fails_an_order_below_the_minimum_and_one_without_a_price() -> None:
    inst = instrument()
    at = check_min_notional(ctx(signal=signal(qty=D(10)), mark=D(100), instrument=inst))
    assert (at.passed, at.value, at.limit) == (True, "1000", "1000")
    below = check_min_notional(ctx(signal=signal(qty=D(10)), mark=D("99.95"), instrument=inst))
    assert not below.passed
    assert below.message == "order notional 999.50 below the minimum 1000"
    no_px = check_min_notional(ctx(signal=signal(qty=D(10)), mark=None, instrument=inst))
    assert not no_px.passed
    assert no_px.message == "order notional: no price to value the order"
    none = check_min_notional(ctx(instrument=instrument(min_notional=None)))
    assert none.passed


# ---------------------------------------------------------------- stale signal


def test_stale_signal_fails_a_signal_older_than_the_limit_behind_the_newest_tick() -> None:
    limited = account(max_signal_age_s=D(5))
    fresh = check_stale_signal(ctx(account=limited, market_ts=T0 + timedelta(seconds=5)))
    stale = check_stale_signal(ctx(account=limited, market_ts=T0 + timedelta(seconds=5, microseconds=1)))
    assert (fresh.passed, fresh.value, fresh.limit) == (True, "5", "5")
    assert (stale.passed, stale.value) == (False, "5.000001")
    assert stale.rule == "STALE_SIGNAL"


def test_stale_signal_passes_without_a_limit_or_a_tick_and_for_a_signal_ahead_of_the_market() -> None:
    assert check_stale_signal(ctx(market_ts=T0 + timedelta(days=1))).passed  # no limit set
    limited = account(max_signal_age_s=D(5))
    assert check_stale_signal(ctx(account=limited, market_ts=None)).passed
    ahead = check_stale_signal(ctx(account=limited, market_ts=T0 - timedelta(seconds=30)))
    assert (ahead.passed, ahead.value) == (True, "0")


def test_future_signal_fails_a_signal_further_ahead_of_the_newest_tick_than_the_limit() -> None:
    limited = account(max_signal_lead_s=D(60))
    level = check_future_signal(ctx(account=limited, market_ts=T0 - timedelta(seconds=60)))
    ahead = check_future_signal(ctx(account=limited, market_ts=T0 - timedelta(seconds=60, microseconds=1)))
    assert (level.passed, level.value, level.limit) == (True, "60", "60")
    assert (ahead.passed, ahead.value, ahead.rule) == (False, "60.000001", "FUTURE_SIGNAL")
    assert check_future_signal(ctx(account=limited, market_ts=T0 + timedelta(hours=1))).value == "0"  # behind
    assert check_future_signal(ctx(account=limited, market_ts=None)).passed
    assert check_future_signal(ctx(market_ts=T0 - timedelta(days=30))).passed  # no limit set


def test_a_signal_a_month_ahead_of_an_old_market_fails_in_the_book() -> None:
    """A replay of an old market: the wall clock cannot see this signal is dated wrong."""
    from operators.portfolio import AccountBook

    book = AccountBook("A1")
    book.on_account(account(max_signal_lead_s=D(60), cash=D(10_000)))
    book.on_mark("AAPL", D(100), T0)
    out = book.on_signal(signal(ts=T0 + timedelta(days=30)), market_ts=T0)
    assert [r.rule for r in out.decision.rules if not r.passed] == ["FUTURE_SIGNAL"]
    assert out.orders == ()


def test_a_signal_dated_1970_is_stale_in_the_book() -> None:
    from operators.portfolio import AccountBook

    book = AccountBook("A1")
    book.on_account(account(max_signal_age_s=D(60), cash=D(10_000)))
    book.on_mark("AAPL", D(100), T0)
    out = book.on_signal(signal(ts=datetime(1970, 1, 1, tzinfo=UTC)))
    failed = [r.rule for r in out.decision.rules if not r.passed]
    assert "STALE_SIGNAL" in failed
