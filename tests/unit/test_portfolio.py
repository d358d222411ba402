"""The account book: decisions, orders, fills, marks, kill switch, snapshots."""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.portfolio import (
    LEVERAGE_UNDEFINED,
    REJECT_RATE_WINDOW,
    AccountBook,
    InputPos,
    Outcome,
    event_id_for,
    order_id_for,
)
from operators.risk import RULES
from schemas.base import Side
from schemas.strategy import OrderType, TradeSignal
from schemas.trading import (
    Account,
    AccountStatus,
    Control,
    Decision,
    ExecStatus,
    Instrument,
    OrderAction,
    OrderStatus,
    Route,
    Severity,
    SymbolLimit,
    TradingState,
    Venue,
    VenueFill,
    VenueState,
)
from tests.builders import ACCOUNT, EPS, T0, D, account, fake_clock, signal


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def account_row(ts: datetime = T0, **kw: Any) -> Account:
    return account(ts, **{"cash": D(100_000), **kw})


def sig(n: int, **kw: Any) -> TradeSignal:
    return signal(**{"signal_id": f"s{n}", "ts": at(n), **kw})


_exec = itertools.count()


def report(order_id: str, status: ExecStatus, *, side: Side = Side.BUY, ts: datetime = T0,
           **kw: Any) -> VenueFill:
    fields: dict[str, Any] = {
        "order_id": order_id, "venue": "PAPER", "exec_id": f"x{next(_exec)}",
        "status": status, "account": ACCOUNT, "symbol": "AAPL", "side": side, "ts": ts,
    }
    fields.update(kw)
    return VenueFill(**fields)


PX = D(100)


def fill(order_id: str, qty: Decimal, px: Decimal = PX, **kw: Any) -> VenueFill:
    return report(order_id, ExecStatus.PARTIAL, last_qty=qty, last_px=px, **kw)


def new_book(**limits: Any) -> AccountBook:
    book = AccountBook(ACCOUNT, clock=fake_clock())
    book.on_account(account_row(**limits))
    book.on_mark("AAPL", D(100), T0)
    return book


def open_order(book: AccountBook, n: int, **kw: Any) -> str:
    out = book.on_signal(sig(n, **kw))
    assert out.decision is not None
    assert out.decision.decision is Decision.PASS, out.decision.rules
    return out.decision.order_id or ""


def failed_rules(out: Outcome) -> list[str]:
    assert out.decision is not None
    return [r.rule for r in out.decision.rules if not r.passed]


# ---------------------------------------------------------------- signals


def test_on_signal_pass_returns_decision_with_every_rule_order_and_pending_state() -> None:
    book = new_book()
    out = book.on_signal(sig(1, order_type=OrderType.LIMIT, limit_px=D("99.5")))
    assert out.decision is not None
    assert out.decision.decision is Decision.PASS
    assert len(out.decision.rules) == len(RULES)
    assert all(r.passed for r in out.decision.rules)
    [order] = out.orders
    assert order.order_id == out.decision.order_id == order_id_for(ACCOUNT, "s1")
    assert (order.action, order.qty, order.limit_px, order.signal_id) == (
        OrderAction.NEW, D(10), D("99.5"), "s1"
    )
    [state] = out.order_states
    assert state.status is OrderStatus.PENDING_NEW
    assert out.portfolio is not None
    assert out.portfolio.reserved_notional == D(995)
    assert not out.events


def test_the_validated_order_carries_the_signal_entered_at() -> None:
    book = new_book()
    [order] = book.on_signal(sig(1, entered_at=at(-5))).orders
    assert order.entered_at == at(-5)
    [plain] = book.on_signal(sig(2)).orders
    assert plain.entered_at is None


def test_order_id_is_derived_from_account_and_signal_and_stable() -> None:
    first = open_order(new_book(), 1)
    again = open_order(new_book(), 1)
    assert first == again == order_id_for(ACCOUNT, "s1")
    assert first.startswith("O-")
    assert len(first) == 22
    assert order_id_for(ACCOUNT, "s2") != first
    assert order_id_for("A2", "s1") != first


def test_on_signal_fail_returns_decision_and_one_warn_event_per_failed_rule() -> None:
    book = new_book(max_order_qty=D(5), max_order_notional=D(500))
    out = book.on_signal(sig(1))
    assert failed_rules(out) == ["MAX_ORDER_NOTIONAL", "MAX_ORDER_QTY"]
    assert out.decision is not None
    assert out.decision.order_id is None
    assert not out.orders
    assert [e.rule for e in out.events] == ["MAX_ORDER_NOTIONAL", "MAX_ORDER_QTY"]
    assert {e.severity for e in out.events} == {Severity.WARN}
    assert out.events[0].event_id == event_id_for("REJECT", ACCOUNT, "s1", "MAX_ORDER_NOTIONAL")
    assert out.events[1].values == {"value": "10", "limit": "5"}


def test_decision_records_limits_version_offsets_and_event_time() -> None:
    book = new_book(limits_version=7)
    book.on_mark("AAPL", D(100), at(1), pos=InputPos("market_data", 2, 41))
    out = book.on_signal(sig(5), pos=InputPos("trade_signals", 0, 9))
    assert out.decision is not None
    assert out.decision.limits_version == 7
    assert out.decision.input_offsets == {"market_data:2": 41, "trade_signals:0": 9}
    assert out.decision.ts == at(5)
    assert out.decision.latency_us == 1.0


def test_signal_seen_twice_is_rejected_as_duplicate() -> None:
    book = new_book()
    open_order(book, 1)
    out = book.on_signal(sig(1))
    assert failed_rules(out) == ["DUPLICATE_SIGNAL"]
    assert not out.orders


def test_signal_before_any_account_row_is_rejected() -> None:
    book = AccountBook(ACCOUNT, clock=fake_clock())
    assert "ACCOUNT_STATUS" in failed_rules(book.on_signal(sig(1)))


def test_record_of_another_account_raises() -> None:
    with pytest.raises(ValueError, match="sent to book"):
        new_book().on_signal(sig(1, account="A2"))


def test_new_account_row_limits_apply_from_the_next_signal() -> None:
    book = new_book(max_order_qty=D(100))
    open_order(book, 1)
    book.on_account(account_row(at(2), max_order_qty=D(5), limits_version=2))
    out = book.on_signal(sig(3))
    assert failed_rules(out) == ["MAX_ORDER_QTY"]
    assert out.decision is not None
    assert out.decision.limits_version == 2


def test_symbol_limit_counts_open_orders_in_the_same_direction() -> None:
    book = new_book()
    book.on_symbol_limit(SymbolLimit(account=ACCOUNT, symbol="AAPL", max_position_qty=D(25),
                                     ts=T0))
    open_order(book, 1)
    open_order(book, 2)
    assert failed_rules(book.on_signal(sig(3, qty=D(5) + EPS))) == ["MAX_POSITION_QTY"]
    open_order(book, 4, qty=D(5))


def test_gross_exposure_counts_reserved_notional_of_open_orders() -> None:
    book = new_book(max_gross_exposure=D(2000))
    open_order(book, 1)
    open_order(book, 2)
    assert failed_rules(book.on_signal(sig(3, qty=EPS))) == ["MAX_GROSS_EXPOSURE"]


def test_order_rate_counts_accepted_orders_in_the_last_second_of_event_time() -> None:
    book = new_book(max_orders_per_second=2)
    open_order(book, 0)
    open_order(book, 500)
    assert failed_rules(book.on_signal(sig(999))) == ["ORDER_RATE"]
    open_order(book, 1000)


# ---------------------------------------------------------------- reserved exposure


def test_reserved_exposure_released_proportionally_on_partial_fill_and_fully_on_fill() -> None:
    book = new_book()
    oid = open_order(book, 1)
    assert book.reserved_notional == D(1000)
    book.on_fill(fill(oid, D(4)))
    assert book.reserved_notional == D(600)
    out = book.on_fill(fill(oid, D(6)))
    assert book.reserved_notional == 0
    assert out.portfolio is not None
    assert out.portfolio.reserved_notional == 0
    assert oid not in book.open_orders


@pytest.mark.parametrize("status", [ExecStatus.CANCELED, ExecStatus.REJECTED,
                                    ExecStatus.EXPIRED])
def test_reserved_exposure_released_when_order_ends_without_fill(status: ExecStatus) -> None:
    book = new_book()
    oid = open_order(book, 1)
    out = book.on_fill(report(oid, status))
    assert book.reserved_notional == 0
    assert out.portfolio is not None
    assert (out.portfolio.reserved_notional, out.portfolio.open_orders) == (0, 0)


def test_released_reservation_lets_the_next_order_pass() -> None:
    book = new_book(max_gross_exposure=D(1000))
    oid = open_order(book, 1)
    assert failed_rules(book.on_signal(sig(2))) == ["MAX_GROSS_EXPOSURE"]
    book.on_fill(report(oid, ExecStatus.REJECTED))
    open_order(book, 3)


# ---------------------------------------------------------------- fills and marks


def test_on_fill_updates_order_position_cash_and_portfolio() -> None:
    book = new_book()
    oid = open_order(book, 1)
    out = book.on_fill(fill(oid, D(10), D(101), fee=D(1)))
    [state] = out.order_states
    assert (state.status, state.cum_qty, state.avg_px) == (OrderStatus.FILLED, D(10), D(101))
    [position] = out.positions
    assert (position.net_qty, position.avg_px, position.unrealized_pnl) == (D(10), D(101), D(-10))
    assert out.portfolio is not None
    assert out.portfolio.cash == D(100_000) - D(1011)
    assert out.portfolio.equity == out.portfolio.cash + out.portfolio.net_exposure


def test_fill_for_unknown_order_is_not_applied_and_reported_critical() -> None:
    book = new_book()
    out = book.on_fill(fill("O-nope", D(1)))
    [event] = out.events
    assert (event.rule, event.severity) == ("UNKNOWN_ORDER", Severity.CRITICAL)
    assert not out.positions
    assert "AAPL" not in book.ledger.positions


def test_repeated_fill_is_applied_once() -> None:
    book = new_book()
    oid = open_order(book, 1)
    once = fill(oid, D(3))
    book.on_fill(once)
    out = book.on_fill(once)
    assert not out.positions
    assert [(e.rule, e.severity) for e in out.events] == [("DUPLICATE_EXEC", Severity.INFO)]
    assert book.ledger.positions["AAPL"].net_qty == D(3)


def test_overfill_applies_only_the_order_quantity_and_is_critical() -> None:
    book = new_book()
    oid = open_order(book, 1)
    out = book.on_fill(fill(oid, D(12)))
    assert book.ledger.positions["AAPL"].net_qty == D(10)
    assert [(e.rule, e.severity) for e in out.events] == [("OVERFILL", Severity.CRITICAL)]


def test_invalid_report_becomes_risk_event_and_changes_nothing() -> None:
    book = new_book()
    oid = open_order(book, 1)
    book.on_fill(report(oid, ExecStatus.REJECTED))
    out = book.on_fill(report(oid, ExecStatus.NEW))
    assert [e.rule for e in out.events] == ["INVALID_TRANSITION"]
    assert not out.order_states


def test_mark_moves_unrealised_pnl_and_older_mark_is_ignored() -> None:
    book = new_book()
    book.on_fill(fill(open_order(book, 1), D(10)))
    out = book.on_mark("AAPL", D(103), at(10))
    [position] = out.positions
    assert position.unrealized_pnl == D(30)
    assert book.on_mark("AAPL", D(1), at(9)) == Outcome()
    assert book.ledger.positions["AAPL"].unrealized_pnl == D(30)


def test_mark_of_symbol_not_held_publishes_nothing() -> None:
    assert new_book().on_mark("MSFT", D(10), at(1)) == Outcome()


def test_portfolio_leverage_undefined_when_equity_not_positive() -> None:
    book = new_book(cash=D(1000))
    book.on_fill(fill(open_order(book, 1, side=Side.SELL), D(10), side=Side.SELL))
    out = book.on_mark("AAPL", D(300), at(5))
    assert out.portfolio is not None
    assert out.portfolio.equity < 0
    assert out.portfolio.leverage == LEVERAGE_UNDEFINED


def test_account_cash_change_is_a_deposit_not_a_gain() -> None:
    book = new_book(daily_loss_limit=D(10), max_drawdown=D(10))
    book.on_fill(fill(open_order(book, 1), D(10)))
    out = book.on_account(account_row(at(5), cash=D(90_000), daily_loss_limit=D(10),
                                      max_drawdown=D(10)))
    assert out.portfolio is not None
    assert out.portfolio.cash == D(89_000)
    assert out.portfolio.peak_equity == out.portfolio.day_start_equity == D(90_000)
    assert book.trading_state is TradingState.ACTIVE


# ---------------------------------------------------------------- kill switch


def _book_with_open_orders(n: int = 3, **limits: Any) -> tuple[AccountBook, list[str]]:
    book = new_book(**limits)
    book.on_fill(fill(open_order(book, 1), D(10)))
    orders = [open_order(book, 10 + i, order_type=OrderType.LIMIT, limit_px=D(90))
              for i in range(n)]
    return book, orders


def test_daily_loss_at_limit_does_not_trip() -> None:
    book, _ = _book_with_open_orders(daily_loss_limit=D(100))
    out = book.on_mark("AAPL", D(90), at(100))
    assert book.trading_state is TradingState.ACTIVE
    assert not out.events


def test_daily_loss_above_limit_halts_cancels_every_open_order_and_emits_one_critical() -> None:
    book, orders = _book_with_open_orders(daily_loss_limit=D(100))
    out = book.on_mark("AAPL", D(90) - EPS, at(100))
    assert book.trading_state is TradingState.HALTED
    [event] = out.events
    assert (event.rule, event.severity) == ("KILL_SWITCH", Severity.CRITICAL)
    assert event.values == {"trigger": "DAILY_LOSS", "value": "100.00000010", "limit": "100",
                            "cancels": "3"}
    assert [(o.order_id, o.action) for o in out.orders] == [(o, OrderAction.CANCEL)
                                                           for o in orders]
    assert {s.status for s in out.order_states} == {OrderStatus.CANCEL_PENDING}
    assert out.portfolio is not None
    assert out.portfolio.trading_state is TradingState.HALTED


def test_kill_switch_second_trigger_cancels_nothing_again() -> None:
    book, _ = _book_with_open_orders(daily_loss_limit=D(100), max_drawdown=D(50))
    book.on_mark("AAPL", D(80), at(100))
    again = book.on_mark("AAPL", D(70), at(101))
    blocked = book.on_account(account_row(at(102), status=AccountStatus.BLOCKED,
                                          daily_loss_limit=D(100), max_drawdown=D(50)))
    halted = book.on_control(Control(scope=f"account:{ACCOUNT}", state=TradingState.HALTED,
                                     ts=at(103)))
    for out in (again, blocked, halted):
        assert not out.orders
        assert not [e for e in out.events if e.rule == "KILL_SWITCH"]


def test_kill_switch_refuses_new_orders_until_set_active_again() -> None:
    book, _ = _book_with_open_orders(daily_loss_limit=D(100))
    book.on_mark("AAPL", D(80), at(100))
    assert "TRADING_HALTED" in failed_rules(book.on_signal(sig(200, side=Side.SELL)))
    out = book.on_control(Control(scope=f"account:{ACCOUNT}", state=TradingState.ACTIVE,
                                  ts=at(300)))
    assert [e.rule for e in out.events] == ["TRADING_STATE"]
    assert book.trading_state is TradingState.ACTIVE
    open_order(book, 400, side=Side.SELL)


def test_kill_switch_after_reactivation_cancels_only_orders_not_cancelled_before() -> None:
    book, first = _book_with_open_orders(daily_loss_limit=D(100))
    book.on_mark("AAPL", D(80), at(100))
    book.on_fill(fill(first[0], D(2), D(90), ts=at(101)))  # a fill races the cancel
    book.on_account(account_row(at(200), daily_loss_limit=D(10_000)))
    later = open_order(book, 300, order_type=OrderType.LIMIT, limit_px=D(79))
    out = book.on_account(account_row(at(400), status=AccountStatus.BLOCKED))
    assert [o.order_id for o in out.orders] == [later]
    assert book.open_orders[first[0]].status is OrderStatus.PARTIALLY_FILLED


def test_drawdown_from_peak_above_limit_trips() -> None:
    book, _ = _book_with_open_orders(1, max_drawdown=D(50))
    book.on_mark("AAPL", D(110), at(100))
    assert book.peak_equity == D(100_100)
    book.on_mark("AAPL", D(105), at(101))
    assert book.trading_state is TradingState.ACTIVE
    out = book.on_mark("AAPL", D(105) - EPS, at(102))
    assert out.events[0].values["trigger"] == "MAX_DRAWDOWN"


def test_daily_loss_counts_from_equity_at_the_first_event_of_the_utc_day() -> None:
    book, _ = _book_with_open_orders(1, daily_loss_limit=D(100))
    book.on_mark("AAPL", D(91), at(100))
    next_day = datetime(2024, 3, 2, 0, 0, tzinfo=UTC)
    book.on_mark("AAPL", D(91), next_day)
    assert book.day_start_equity == D(99_910)
    book.on_mark("AAPL", D(81), next_day + timedelta(hours=1))
    assert book.trading_state is TradingState.ACTIVE
    out = book.on_mark("AAPL", D(81) - EPS, next_day + timedelta(hours=2))
    assert out.events[0].values["trigger"] == "DAILY_LOSS"


def test_reject_rate_above_limit_over_last_n_decisions_trips() -> None:
    half = D("0.5")
    book = new_book(max_reject_rate=half, max_order_qty=D(10))
    for i in range(REJECT_RATE_WINDOW // 2):
        open_order(book, i)
    for i in range(REJECT_RATE_WINDOW // 2 - 1):
        book.on_signal(sig(100 + i, qty=D(11)))
    assert book.trading_state is TradingState.ACTIVE
    assert len(book.recent_rejects) == REJECT_RATE_WINDOW - 1
    book.on_signal(sig(200, qty=D(11)))  # 10 of 20: at the limit
    assert book.trading_state is TradingState.ACTIVE
    out = book.on_signal(sig(201, qty=D(11)))  # 11 of 20
    assert out.decision is not None
    assert [e.values.get("trigger") for e in out.events if e.rule == "KILL_SWITCH"] == [
        "REJECT_RATE"
    ]
    assert len(out.orders) == REJECT_RATE_WINDOW // 2


def test_reject_rate_is_not_judged_before_n_decisions() -> None:
    book = new_book(max_reject_rate=D(0), max_order_qty=D(1))
    for i in range(REJECT_RATE_WINDOW - 1):
        book.on_signal(sig(i))
    assert book.trading_state is TradingState.ACTIVE


def _book_at_reject_limit() -> AccountBook:
    """A book whose last 20 decisions are 10 passes then 10 rejects (rate 0.5, limit 0.5)."""
    book = new_book(max_reject_rate=D("0.5"), max_order_qty=D(10))
    for i in range(REJECT_RATE_WINDOW // 2):
        open_order(book, i)
    for i in range(REJECT_RATE_WINDOW // 2):
        book.on_signal(sig(100 + i, qty=D(11)))
    assert book.trading_state is TradingState.ACTIVE
    return book


def test_reactivation_clears_the_reject_rate_window() -> None:
    book = _book_at_reject_limit()
    book.on_signal(sig(300, qty=D(11)))
    assert book.trading_state is TradingState.HALTED
    book.on_control(Control(scope="global", state=TradingState.ACTIVE, ts=at(400)))
    out = book.on_signal(sig(500, qty=D(11)))
    assert book.trading_state is TradingState.ACTIVE
    assert not [e for e in out.events if e.rule == "KILL_SWITCH"]


def test_restored_book_keeps_its_reject_rate_window() -> None:
    restored = AccountBook.from_snapshot(_book_at_reject_limit().snapshot())
    restored.on_signal(sig(300, qty=D(11)))
    assert restored.trading_state is TradingState.HALTED


def test_restored_book_keeps_its_order_rate_window() -> None:
    book = new_book(max_orders_per_second=1)
    open_order(book, 0)
    restored = AccountBook.from_snapshot(book.snapshot())
    assert failed_rules(restored.on_signal(sig(999))) == ["ORDER_RATE"]


def test_reject_rate_ignores_duplicate_deliveries() -> None:
    book = new_book(max_reject_rate=D(0))
    open_order(book, 1)
    for _ in range(REJECT_RATE_WINDOW + 1):
        assert failed_rules(book.on_signal(sig(1))) == ["DUPLICATE_SIGNAL"]
    assert book.trading_state is TradingState.ACTIVE


def test_reject_rate_ignores_signals_refused_by_reducing_state() -> None:
    book = new_book(max_reject_rate=D(0))
    book.on_fill(fill(open_order(book, 1), D(10)))
    book.on_control(Control(scope="global", state=TradingState.REDUCING, ts=at(2)))
    for i in range(REJECT_RATE_WINDOW + 1):
        assert failed_rules(book.on_signal(sig(10 + i))) == ["TRADING_HALTED"]
    assert book.trading_state is TradingState.REDUCING


def test_account_blocked_trips_kill_switch_and_account_active_restores() -> None:
    book, orders = _book_with_open_orders(2)
    out = book.on_account(account_row(at(50), status=AccountStatus.BLOCKED))
    assert out.events[0].values["trigger"] == "ACCOUNT_BLOCKED"
    assert len(out.orders) == 2
    book.on_account(account_row(at(60)))
    assert book.trading_state is TradingState.ACTIVE
    open_order(book, 70)


@pytest.mark.parametrize("scope", ["global", f"account:{ACCOUNT}"])
def test_control_halted_for_this_account_trips_kill_switch(scope: str) -> None:
    book, _ = _book_with_open_orders(2)
    out = book.on_control(Control(scope=scope, state=TradingState.HALTED, reason="ops", ts=at(50)))
    assert out.events[0].values["trigger"] == "CONTROL_HALTED"
    assert len(out.orders) == 2


def test_control_for_another_account_is_ignored() -> None:
    book, _ = _book_with_open_orders(2)
    out = book.on_control(Control(scope="account:A2", state=TradingState.HALTED, ts=at(50)))
    assert out == Outcome()
    assert book.trading_state is TradingState.ACTIVE


def test_reducing_state_admits_only_orders_that_reduce() -> None:
    book = new_book()
    book.on_fill(fill(open_order(book, 1), D(10)))
    out = book.on_control(Control(scope="global", state=TradingState.REDUCING, ts=at(2)))
    assert not out.orders
    assert failed_rules(book.on_signal(sig(3))) == ["TRADING_HALTED"]
    assert failed_rules(book.on_signal(sig(4, side=Side.SELL, qty=D(11)))) == ["TRADING_HALTED"]
    open_order(book, 5, side=Side.SELL, qty=D(6))
    assert failed_rules(book.on_signal(sig(6, side=Side.SELL, qty=D(5)))) == ["TRADING_HALTED"]


def test_strategy_control_halts_only_that_strategy() -> None:
    book = new_book()
    book.on_control(Control(scope="strategy:st", state=TradingState.HALTED, ts=at(1)))
    assert failed_rules(book.on_signal(sig(2))) == ["TRADING_HALTED"]
    open_order(book, 3, strategy_id="other")
    assert book.trading_state is TradingState.ACTIVE


def test_every_event_id_is_derived_from_inputs() -> None:
    def run() -> list[str]:
        book, orders = _book_with_open_orders(2, daily_loss_limit=D(1))
        outs = [book.on_fill(fill(orders[0], D(1), exec_id="dup")),
                book.on_fill(fill(orders[0], D(1), exec_id="dup")),
                book.on_mark("AAPL", D(50), at(100)),
                book.on_signal(sig(200))]
        return [e.event_id for o in outs for e in o.events]

    assert run() == run()
    assert len(set(run())) == len(run())


# ---------------------------------------------------------------- snapshots


def test_snapshot_is_a_copy_not_live_state() -> None:
    book = new_book()
    oid = open_order(book, 1)
    snap = book.snapshot()
    frozen = pickle.dumps(snap)
    book.on_fill(fill(oid, D(4)))
    book.on_signal(sig(2))
    book.on_mark("AAPL", D(120), at(50))
    assert pickle.dumps(snap) == frozen


def test_snapshot_of_unknown_version_is_refused() -> None:
    snap = new_book().snapshot() | {"v": 99}
    with pytest.raises(ValueError, match="version"):
        AccountBook.from_snapshot(snap)


def test_snapshot_restore_gives_same_snapshot() -> None:
    book, _ = _book_with_open_orders(2, daily_loss_limit=D(50))
    book.on_mark("AAPL", D(80), at(100))
    restored = AccountBook.from_snapshot(
        pickle.loads(pickle.dumps(book.snapshot()))  # noqa: S301 - our own bytes
    )
    assert restored.snapshot() == book.snapshot()


# A small language of inputs to drive the book at random.
Op = tuple[Any, ...]

signal_op = st.tuples(
    st.just("signal"), st.integers(0, 12), st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 20), st.sampled_from([None, 95, 100, 104]), st.sampled_from(["st", "other"]),
)
report_op = st.tuples(
    st.just("report"), st.integers(0, 12),
    st.sampled_from([ExecStatus.PARTIAL, ExecStatus.PARTIAL, ExecStatus.FILLED, *ExecStatus]),
    st.integers(0, 12), st.integers(0, 6), st.sampled_from([95, 100, 103]), st.booleans(),
)
mark_op = st.tuples(st.just("mark"), st.integers(60, 140))
control_op = st.tuples(
    st.just("control"), st.sampled_from(["global", "strategy:st", "account:A1"]),
    st.sampled_from([TradingState.ACTIVE, TradingState.ACTIVE, *TradingState]),
)
account_op = st.tuples(
    st.just("account"), st.sampled_from([AccountStatus.ACTIVE, AccountStatus.ACTIVE,
                                         *AccountStatus]),
    st.integers(900, 1100),
)
# Weighted by repetition: mostly signals and reports, sometimes marks, rarely ops changes.
ops = st.one_of(*[signal_op] * 4, *[report_op] * 4, *[mark_op] * 2, control_op, account_op)


def apply_op(book: AccountBook, i: int, op: Op) -> Outcome:
    ts = at(i * 60)
    kind = op[0]
    if kind == "signal":
        _, n, side, qty, limit_px, strategy = op
        typed: dict[str, Any] = (
            {"order_type": OrderType.LIMIT, "limit_px": D(limit_px)} if limit_px else {}
        )
        return book.on_signal(sig(0, signal_id=f"s{n}", side=side, qty=D(qty), ts=ts,
                                  strategy_id=strategy, **typed))
    if kind == "report":
        return book.on_fill(_report_op(book, ts, op))
    if kind == "mark":
        return book.on_mark("AAPL", D(op[1]), ts)
    if kind == "control":
        return book.on_control(Control(scope=op[1], state=op[2], ts=ts))
    return book.on_account(account_row(ts, status=op[1], cash=D(op[2]) * 100,
                                       **RANDOM_LIMITS))


def _report_op(book: AccountBook, ts: datetime, op: Op) -> VenueFill:
    """A report about one of the book's orders (open ones first), or an unknown one."""
    _, k, status, qty, exec_n, px, with_cum = op
    known = list(book.open_orders.values()) or list(book.closed_orders.values())
    order = known[k % len(known)] if known else None
    oid = order.order_id if order else "O-unknown"
    extra: dict[str, Any] = {"last_qty": D(qty), "last_px": D(px)} if qty else {}
    if with_cum and order is not None:
        extra["cum_qty"] = order.cum_qty + D(qty)
    return report(oid, status, side=order.side if order else Side.BUY, ts=ts,
                  exec_id=f"e{oid}-{exec_n}", **extra)


RANDOM_LIMITS: dict[str, Any] = {
    "max_order_qty": D(15), "max_gross_exposure": D(6000), "max_open_orders": 4,
    "price_collar_bps": D(500), "daily_loss_limit": D(150), "max_drawdown": D(250),
    "max_reject_rate": D("0.6"), "max_orders_per_second": 5, "max_leverage": D(3),
}


def _run(book: AccountBook, seq: list[Op], start: int = 0) -> list[Outcome]:
    return [apply_op(book, start + i, op) for i, op in enumerate(seq)]


def _fresh() -> AccountBook:
    book = AccountBook(ACCOUNT, clock=fake_clock())
    book.on_account(account_row(**RANDOM_LIMITS))
    book.on_mark("AAPL", D(100), T0)
    return book


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, min_size=20, max_size=80), st.data())
def test_snapshot_restore_then_same_inputs_give_same_outputs(
    seq: list[Op], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(seq)))
    straight = _fresh()
    expected = _run(straight, seq)

    first = _fresh()
    _run(first, seq[:cut])
    saved = pickle.dumps(first.snapshot())
    _run(first, seq[cut:cut + 3], start=cut)  # the crashed process went on a little
    resumed = AccountBook.from_snapshot(
        pickle.loads(saved), clock=fake_clock()  # noqa: S301 - our own bytes
    )
    assert _run(resumed, seq[cut:], start=cut) == expected[cut:]
    assert resumed.snapshot() == straight.snapshot()


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, min_size=20, max_size=80))
def test_random_inputs_keep_book_invariants(seq: list[Op]) -> None:
    book = _fresh()
    cancels: Counter[str] = Counter()
    signals = decisions = 0
    for i, op in enumerate(seq):
        out = apply_op(book, i, op)
        signals += op[0] == "signal"
        decisions += out.decision is not None
        cancels.update(o.order_id for o in out.orders if o.action is OrderAction.CANCEL)
        assert not [k for k, n in cancels.items() if n > 1], "an order was cancelled twice"
        orders = list(book.open_orders.values()) + list(book.closed_orders.values())
        assert all(0 <= o.cum_qty <= o.qty for o in orders)
        assert book.reserved_notional == sum(
            ((o.qty - o.cum_qty) * o.reserve_px for o in book.open_orders.values()), D(0)
        )
        if out.portfolio is not None:
            p = out.portfolio
            assert p.equity == p.cash + p.net_exposure
            assert p.drawdown == p.peak_equity - p.equity
        if book.trading_state is TradingState.HALTED:
            assert all(o.cancel_requested for o in book.open_orders.values())
    assert decisions == signals


# ---------------------------------------------------------------- routing


def route(account: str, symbol: str, venue: str) -> Route:
    return Route(account=account, symbol=symbol, venue=venue, ts=T0)


def venue_row(name: str, state: VenueState = VenueState.UP) -> Venue:
    return Venue(venue=name, state=state, adapter="paper", ts=T0)


def test_the_most_specific_route_names_the_venue_of_an_order_and_its_cancel() -> None:
    book = new_book()
    for r in (route("*", "*", "v-any"), route("*", "AAPL", "v-sym"), route(ACCOUNT, "*", "v-acct"),
              route(ACCOUNT, "MSFT", "v-both")):
        book.on_route(r)
    assert [book.route_of(s) for s in ("MSFT", "AAPL", "IBM")] == ["v-both", "v-acct", "v-acct"]
    other = AccountBook("B2")
    other.on_route(route("*", "AAPL", "v-sym"))
    other.on_route(route("*", "*", "v-any"))
    assert [other.route_of(s) for s in ("AAPL", "IBM")] == ["v-sym", "v-any"]
    book.on_venue(venue_row("v-acct"))
    out = book.on_signal(sig(1))
    (order,) = out.orders
    assert order.venue == "v-acct"
    assert order.key() == "v-acct"  # the Job D of v-acct reads the partition of this key
    assert out.order_states[0].venue == "v-acct"
    halt = book.on_control(Control(scope=f"account:{ACCOUNT}", state=TradingState.HALTED, ts=at(5)))
    (cancel,) = [o for o in halt.orders if o.action is OrderAction.CANCEL]
    assert (cancel.order_id, cancel.venue) == (order.order_id, "v-acct")  # the kill switch's cancel


def test_an_order_routed_to_a_venue_no_job_d_serves_fails_no_route() -> None:
    book = new_book()
    book.on_route(route(ACCOUNT, "*", "fix-1"))
    assert failed_rules(book.on_signal(sig(1))) == ["NO_ROUTE"]  # no venues row
    book.on_venue(venue_row("fix-1", VenueState.DOWN))
    assert failed_rules(book.on_signal(sig(2))) == ["NO_ROUTE"]
    book.on_venue(venue_row("fix-1"))
    out = book.on_signal(sig(3))
    assert failed_rules(out) == []
    assert out.decision is not None
    (no_route,) = [r for r in out.decision.rules if r.rule == "NO_ROUTE"]
    assert no_route.value == "fix-1"


def test_without_routes_orders_go_to_the_default_venue() -> None:
    book = new_book()
    out = book.on_signal(sig(1))
    (order,) = out.orders
    assert order.venue is None
    assert order.key() == order.order_id  # spread over the partitions like before routing


def test_routes_and_venues_survive_a_snapshot() -> None:
    book = new_book()
    book.on_route(route(ACCOUNT, "AAPL", "fix-1"))
    book.on_venue(venue_row("fix-1"))
    again = AccountBook.from_snapshot(pickle.loads(pickle.dumps(book.snapshot())))  # noqa: S301 - our own bytes
    assert again.route_of("AAPL") == "fix-1"
    assert again.venues == book.venues
def test_instrument_rows_are_kept_in_the_snapshot_and_checked_by_the_instrument_rules() -> None:
    book = new_book()
    row = Instrument(symbol="AAPL", tick_size=D("0.05"), lot_size=D(10), price_precision=2, qty_precision=0,
                     ts=T0)
    assert book.on_instrument(row).empty
    saved = pickle.dumps(book.snapshot())
    restored = AccountBook.from_snapshot(pickle.loads(saved), clock=fake_clock())  # noqa: S301 - our own bytes
    assert restored.instruments == {"AAPL": row}
    out = restored.on_signal(sig(1, order_type=OrderType.LIMIT, limit_px=D("99.99"), qty=D(15)))
    assert out.decision is not None
    assert {r.rule for r in out.decision.rules if not r.passed} == {"TICK_SIZE", "LOT_SIZE"}
    other = restored.on_signal(sig(2, symbol="MSFT"))  # rows are published, none for MSFT: unknown
    assert other.decision is not None
    assert {r.rule for r in other.decision.rules if not r.passed} == {"INSTRUMENT_STATUS"}
    old = book.snapshot()
    del old["instruments"]  # a snapshot from before the instruments table
    assert AccountBook.from_snapshot(old).instruments == {}
