"""Job C's running sums: always equal to a from-scratch scan, and kept across snapshots."""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.accounting import MONEY, ZERO, ExactSum, Ledger, scan_sum
from operators.portfolio import AccountBook, Outcome
from schemas.base import Side
from schemas.strategy import OrderType, TradeSignal
from schemas.trading import (
    Account,
    AccountStatus,
    AccountType,
    Control,
    ExecStatus,
    SymbolLimit,
    TradingState,
    VenueFill,
)
from tests.builders import ACCOUNT, T0, D, account, fake_clock

SYMBOLS = ("AAPL", "MSFT", "X")
# Prices and quantities with different exponents: the sums must keep the scan's exponent.
PRICES = ("100", "100.0", "100.10", "99.5", "101.25", "0.00000001", "123.45678901", "98")
QTYS = ("1", "10", "10.00", "2.5", "0.00000001", "7", "3.333")


def sums_of(book: AccountBook) -> dict[str, str]:
    """Every running sum the book keeps, as the strings they would be published as."""
    sums = book._sums  # noqa: SLF001 - the state under test
    out = {
        "sums_held": str(sums is not None),
        "reserved": str(book.reserved_notional),
        "net": str(book.ledger.net_exposure),
        "gross": str(book.ledger.gross_exposure),
        "equity": str(book.ledger.equity),
        "realized": str(book.ledger.realized_pnl),
        "unrealized": str(book.ledger.unrealized_pnl),
        "open_orders": str(len(book.open_orders)),
    }
    for side in Side:
        out[f"reserved/{side.value}"] = str(book._reserved(side))  # noqa: SLF001
    for sym, side in sums.leaves if sums is not None else ():
        out[f"leaves/{sym}/{side.value}"] = str(book._open_qty(sym, side))  # noqa: SLF001
    return out


def recomputed(book: AccountBook) -> dict[str, str]:
    """The same sums after ``_recompute`` on a copy of the book (from scratch)."""
    fresh = copy.deepcopy(book)
    fresh._recompute()  # noqa: SLF001 - the debug helper under test
    return sums_of(fresh)


def account_row(rng: random.Random, ts: datetime, **kw: Any) -> Account:
    fields: dict[str, Any] = {
        "cash": D(rng.choice(["100000", "100000.50", "5000"])),
        "account_type": rng.choice([AccountType.CASH, AccountType.MARGIN]),
        "max_order_qty": D(rng.choice(["15", "100"])),
        "max_gross_exposure": D(rng.choice(["6000", "1000000"])),
        "max_open_orders": rng.choice([4, 300]), "price_collar_bps": D(500),
        "daily_loss_limit": D(rng.choice(["150", "100000"])),
        "max_drawdown": D(rng.choice(["250", "100000"])),
        "max_reject_rate": D("0.9"), "max_orders_per_second": rng.choice([5, 100]),
        "max_leverage": D(rng.choice(["3", "10"])),
    }
    return account(ts, **{**fields, **kw})


def random_step(book: AccountBook, rng: random.Random, i: int) -> Outcome:
    """One random input: a signal, a fill / cancel / other report, a mark, or ops."""
    ts = T0 + timedelta(milliseconds=50 * i)
    r = rng.random()
    if r < 0.35:
        limit = rng.random() < 0.5
        return book.on_signal(TradeSignal(
            signal_id=f"s{rng.randrange(i + 1)}", strategy_id="st", account=ACCOUNT,
            symbol=rng.choice(SYMBOLS), side=rng.choice([Side.BUY, Side.SELL]),
            qty=D(rng.choice(QTYS)), order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            limit_px=D(rng.choice(PRICES)) if limit else None,
            ref_px=D(rng.choice(PRICES)) if rng.random() < 0.5 else None, ts=ts,
        ))
    if r < 0.75:
        known = list(book.open_orders.values()) or list(book.closed_orders.values())
        if not known:
            return Outcome()
        order = rng.choice(known)
        status = rng.choice([ExecStatus.PARTIAL, ExecStatus.FILLED, ExecStatus.CANCELED,
                             *ExecStatus])
        leaves = order.qty - order.cum_qty
        half = (leaves / 2).quantize(D("1E-8")) or leaves  # a fill holds DECIMAL(18,8)
        qty = rng.choice([leaves, half, D(rng.choice(QTYS))]) if leaves else D(1)
        extra: dict[str, Any] = {}
        if status in (ExecStatus.PARTIAL, ExecStatus.FILLED):
            extra = {"last_qty": qty, "last_px": D(rng.choice(PRICES)), "fee": D("0.01")}
        return book.on_fill(VenueFill(
            order_id=order.order_id, venue="V", exec_id=f"e{i}", status=status,
            account=ACCOUNT, symbol=order.symbol, side=order.side, ts=ts, **extra,
        ))
    if r < 0.93:
        return book.on_mark(rng.choice(SYMBOLS), D(rng.choice(PRICES)), ts)
    if r < 0.97:
        return book.on_control(Control(
            scope=rng.choice(["global", "account:A1", "strategy:st"]),
            state=rng.choice([TradingState.ACTIVE, TradingState.ACTIVE, *TradingState]), ts=ts,
        ))
    return book.on_account(account_row(
        rng, ts, status=rng.choice([AccountStatus.ACTIVE, AccountStatus.ACTIVE, *AccountStatus])
    ))


def go_on_alike(a: AccountBook, b: AccountBook, seed: int, steps: int = 5) -> None:
    """Give both books the same ``steps`` random inputs (from ``seed``); assert the same outcomes."""
    twin = random.Random(seed)  # noqa: S311 - reproducible
    for j in range(seed + 1, seed + 1 + steps):
        state = twin.getstate()
        out_a = random_step(a, twin, j)
        twin.setstate(state)
        out_b = random_step(b, twin, j)
        assert out_a == out_b
        assert repr(out_a) == repr(out_b)


def snapshots_along(seed: int, steps: int, every: int) -> Iterator[tuple[int, AccountBook, dict[str, Any]]]:
    """Drive a new book with ``steps`` random inputs; every ``every`` steps yield it with a
    copy of its snapshot (pickled and back, as Bytewax stores it)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible
    book = new_book(rng)
    for i in range(steps):
        random_step(book, rng, i)
        if i % every == 0:
            yield i, book, pickle.loads(pickle.dumps(book.snapshot()))  # noqa: S301 - our own bytes


def new_book(rng: random.Random) -> AccountBook:
    book = AccountBook(ACCOUNT, clock=fake_clock())
    book.on_account(account_row(rng, T0))
    for sym in SYMBOLS:
        book.on_symbol_limit(SymbolLimit(account=ACCOUNT, symbol=sym, ts=T0,
                                         max_position_qty=D(rng.choice(["50", "500"]))))
    return book


@pytest.mark.parametrize(("seed", "pnl_sums_from"), [*((s, 8) for s in range(12)),
                                                      *((s, 1) for s in range(12))])
def test_running_sums_equal_a_recomputation_after_every_step(
    seed: int, pnl_sums_from: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import operators.accounting as accounting

    # 1: the running PnL sums from the first position (else these books scan for them).
    monkeypatch.setattr(accounting, "PNL_SUMS_FROM", pnl_sums_from)
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs
    book = new_book(rng)
    opened = closed = 0
    for i in range(400):
        out = random_step(book, rng, i)
        opened += sum(o.action == "NEW" for o in out.orders)
        closed += sum(s.status in ("FILLED", "CANCELED", "REJECTED", "EXPIRED")
                      for s in out.order_states)
        assert sums_of(book) == recomputed(book), f"step {i}"
        book.check_sums()
    assert opened >= 5  # the sequence did open orders
    assert closed >= 3  # and close some


@pytest.mark.parametrize(("seed", "pnl_sums_from"), [(0, 8), (1, 8), (2, 1), (3, 1)])
def test_snapshot_round_trips_the_running_sums(
    seed: int, pnl_sums_from: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import operators.accounting as accounting

    monkeypatch.setattr(accounting, "PNL_SUMS_FROM", pnl_sums_from)
    for i, book, data in snapshots_along(100 + seed, steps=300, every=25):
        restored = AccountBook.from_snapshot(data, clock=fake_clock())
        assert sums_of(restored) == sums_of(book)
        restored.check_sums()
        assert restored.snapshot() == book.snapshot()
        go_on_alike(book, restored, i)  # the restored book goes on exactly as the original
        assert sums_of(restored) == sums_of(book)


def test_book_with_many_working_orders_keeps_sums_without_rescanning() -> None:
    book = AccountBook(ACCOUNT, clock=fake_clock())
    book.on_account(account_row(random.Random(0), T0,  # noqa: S311 max_open_orders=1000,
                                max_orders_per_second=None, account_type=AccountType.MARGIN,
                                max_order_qty=None, max_gross_exposure=None,
                                max_leverage=None))
    book.on_mark("AAPL", D("100.00"), T0)
    for n in range(300):
        book.on_signal(TradeSignal(
            signal_id=f"s{n}", strategy_id="st", symbol="AAPL", account=ACCOUNT,
            side=Side.BUY if n % 3 else Side.SELL, qty=D(n % 7 + 1), ts=T0 + timedelta(seconds=n),
            order_type=OrderType.LIMIT, limit_px=D("100.5") if n % 2 else D(100),
        ))
    assert len(book.open_orders) == 300
    assert sums_of(book) == recomputed(book)
    book.check_sums()


# ---------------------------------------------------------------- ExactSum


amounts = st.decimals(min_value=D("-1e12"), max_value=D("1e12"), places=8,
                      allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), amounts), max_size=40))
def test_exact_sum_equals_the_scan_digit_for_digit(ops: list[tuple[bool, Decimal]]) -> None:
    held: list[Decimal] = []
    agg = ExactSum()
    for remove, term in ops:
        if remove and held:
            agg.remove(held.pop(0))
        else:
            held.append(term)
            agg.add(term)
        total = agg.total()
        assert total is not None
        assert str(total) == str(scan_sum(held))


def test_exact_sum_goes_stale_rather_than_round_and_the_ledger_scans() -> None:
    agg = ExactSum([D("1e30"), D("0.00000001")])  # 39 digits: the scan rounds
    assert agg.total() is None
    ledger = Ledger(cash=ZERO)
    ledger.mark("A", D("1e20"), T0)
    ledger.mark("B", D("0.00000001"), T0)
    ledger.apply_fill("A", Side.BUY, D("1e10"), D("1"))
    ledger.apply_fill("B", Side.BUY, D("0.00000001"), D("1"))
    with_scan = scan_sum(p.market_value for p in ledger.positions.values())
    assert str(ledger.net_exposure) == str(with_scan)
    assert ledger.gross_exposure == MONEY.plus(with_scan)
    ledger.check_sums()


# ---------------------------------------------------------------- compact rows


def test_books_share_the_account_rows_fields_set_and_leave_the_input_alone() -> None:
    rows = [Account.model_validate_json(account_row(random.Random(1), T0).model_dump_json())  # noqa: S311
            for _ in range(2)]
    own_sets = [r.__pydantic_fields_set__ for r in rows]
    books = [AccountBook(ACCOUNT) for _ in rows]
    for book, row in zip(books, rows, strict=True):
        book.on_account(row)
        assert book.account == row
        assert book.account.model_dump_json() == row.model_dump_json()
        assert book.account.model_fields_set == row.model_fields_set
    assert [r.__pydantic_fields_set__ for r in rows] == own_sets  # inputs untouched
    assert all(r.__pydantic_fields_set__ is s for r, s in zip(rows, own_sets, strict=True))
    a, b = (book.account for book in books)
    assert a is not None
    assert b is not None
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    restored = AccountBook.from_snapshot(books[0].snapshot())
    assert restored.account == a
    assert restored.account is not None
    assert restored.account.__pydantic_fields_set__ is a.__pydantic_fields_set__


# ---------------------------------------------------------------- bounded history


def test_seen_signals_and_closed_orders_stay_bounded_and_evict_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import operators.portfolio as portfolio

    monkeypatch.setattr(portfolio, "SEEN_SIGNALS_KEPT", 5)
    monkeypatch.setattr(portfolio, "CLOSED_ORDERS_KEPT", 3)
    book = AccountBook(ACCOUNT, clock=fake_clock())
    book.on_account(account_row(random.Random(0), T0, max_open_orders=100,  # noqa: S311
                                max_orders_per_second=None, max_order_qty=None,
                                max_gross_exposure=None, max_leverage=None,
                                account_type=AccountType.MARGIN))
    book.on_mark("AAPL", D(100), T0)

    def signal(n: int) -> Outcome:
        return book.on_signal(TradeSignal(
            signal_id=f"s{n}", strategy_id="st", symbol="AAPL", account=ACCOUNT,
            side=Side.BUY, qty=D(1), ts=T0 + timedelta(seconds=n),
        ))

    for n in range(12):
        out = signal(n)
        assert out.decision is not None
        oid = out.decision.order_id
        assert oid is not None
        book.on_fill(VenueFill(order_id=oid, venue="V", exec_id=f"e{n}",
                               status=ExecStatus.CANCELED, account=ACCOUNT, symbol="AAPL",
                               side=Side.BUY, ts=T0 + timedelta(seconds=n)))
        assert len(book.seen_signals) <= 5
        assert len(book.closed_orders) <= 3
    assert list(book.seen_signals) == [f"s{n}" for n in range(7, 12)]
    assert [o.signal_id for o in book.closed_orders.values()] == ["s9", "s10", "s11"]
    snap = book.snapshot()
    assert snap["seen_signals"] == [f"s{n}" for n in range(7, 12)]
    # s6 was forgotten (and its order too): not a duplicate; s8 is remembered (s6 has
    # just pushed s7 out).
    again = signal(6)
    assert again.decision is not None
    assert again.decision.decision == "PASS"
    again = signal(8)
    assert again.decision is not None
    assert again.decision.decision == "FAIL"
    restored = AccountBook.from_snapshot(snap, clock=fake_clock())
    assert restored.snapshot() == snap


# ---------------------------------------------------------------- records not validated again


def test_decision_and_order_records_equal_their_validated_copies() -> None:
    from schemas.trading import Route, Venue, VenueState

    book = AccountBook(ACCOUNT, clock=fake_clock())
    book.on_account(account(cash=D(1_000_000), max_order_notional=D(50_000), limits_version=3))
    book.on_route(Route(account=ACCOUNT, symbol="MSFT", venue="fix1", ts=T0))
    book.on_venue(Venue(venue="fix1", state=VenueState.UP, ts=T0))
    book.on_mark("AAPL", D("101.25"), T0)
    book.on_mark("MSFT", D("400.5"), T0)
    signals = [
        TradeSignal(signal_id="m1", strategy_id="st", symbol="AAPL", account=ACCOUNT, side=Side.BUY,
                    qty=D("10.5"), ref_px=D("101.2"), reason="cross", ts=T0 + timedelta(seconds=1)),
        TradeSignal(signal_id="l1", strategy_id="st", symbol="MSFT", account=ACCOUNT, side=Side.SELL,
                    qty=D(3), order_type=OrderType.LIMIT, limit_px=D("400.10"),
                    ts=T0 + timedelta(seconds=2)),
        TradeSignal(signal_id="big", strategy_id="st", symbol="AAPL", account=ACCOUNT, side=Side.BUY,
                    qty=D(900), ts=T0 + timedelta(seconds=3)),  # refused: no order
    ]
    records: list[Any] = []
    for sig in signals:
        out = book.on_signal(sig)
        records += [out.decision, *out.orders]
    assert [type(r).__name__ for r in records] == ["RiskDecision", "ValidatedOrder", "RiskDecision",
                                                   "ValidatedOrder", "RiskDecision"]
    for rec in records:
        again = type(rec).model_validate(rec.model_dump())
        assert repr(again) == repr(rec)
        assert again.model_dump_json() == rec.model_dump_json()


# ---------------------------------------------------------------- snapshot versions


def as_version_1(snap: dict[str, Any]) -> dict[str, Any]:
    """The same book as a version-1 snapshot wrote it: the rows as their JSON dumps."""
    old = dict(snap, v=1)
    if snap["account"] is not None:
        old["account"] = Account(**snap["account"]).model_dump(mode="json")
    old["symbol_limits"] = [SymbolLimit(**d).model_dump(mode="json") for d in snap["symbol_limits"]]
    return old


@pytest.mark.parametrize("seed", range(3))
def test_version_1_snapshots_still_restore_to_the_same_book(seed: int) -> None:
    for i, book, snap in snapshots_along(200 + seed, steps=200, every=40):
        old = AccountBook.from_snapshot(as_version_1(snap), clock=fake_clock())
        new = AccountBook.from_snapshot(snap, clock=fake_clock())
        assert old.snapshot() == new.snapshot() == book.snapshot()
        assert old.account == book.account
        assert repr(new.account) == repr(book.account)
        assert [repr(v) for v in new.symbol_limits.values()] == [repr(v) for v in book.symbol_limits.values()]
        go_on_alike(old, new, i)


# ---------------------------------------------------------------- shared amounts


def test_shared_amounts_keep_their_digits_and_exponent() -> None:
    from operators.accounting import shared

    one, one_0, one_00 = D("1"), D("1.0"), D("1.00")
    assert shared(D("1.0")) is shared(one_0) is shared(D("1.0"))
    assert str(shared(one_00)) == "1.00"
    assert str(shared(one)) == "1"
    assert shared(D("-0")) is not shared(D("0"))
    assert str(shared(D("-0"))) == "-0"
    assert str(shared(D("1E+3"))) == "1E+3"
    assert str(shared(D("1000"))) == "1000"


@pytest.mark.parametrize("seed", range(4))
def test_shared_amounts_change_no_output(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import operators.accounting as accounting
    import operators.orders as orders
    import operators.portfolio as portfolio

    outputs = []
    for share in (True, False):
        if not share:
            for module in (accounting, orders, portfolio):
                monkeypatch.setattr(module, "shared", lambda v: v)
            monkeypatch.setattr(orders, "shared_or_none", lambda v: v)
            monkeypatch.setattr(accounting, "shared_or_none", lambda v: v)
        rng = random.Random(300 + seed)  # noqa: S311 - the same inputs both times
        book = new_book(rng)
        outs = [random_step(book, rng, i) for i in range(300)]
        outputs.append(([repr(o) for o in outs], book.snapshot()))
    assert outputs[0] == outputs[1]


# ---------------------------------------------------------------- SignedSum


wide = st.decimals(min_value=D("-1e45"), max_value=D("1e45"), allow_nan=False, allow_infinity=False,
                   places=None)


@settings(max_examples=300, deadline=None)
@given(st.lists(wide, min_size=1, max_size=8), st.lists(st.tuples(st.integers(0, 7), wide), max_size=12))
def test_signed_sum_equals_the_scan_in_its_order(start: list[Decimal],
                                                 moves: list[tuple[int, Decimal]]) -> None:
    from operators.accounting import SignedSum

    terms = list(start)
    agg = SignedSum()
    for t in reversed(terms):  # counted in another order than the scan's
        agg.add(t)
    for i, new in moves:
        i %= len(terms)
        agg.move(terms[i], new)
        terms[i] = new
        assert str(agg.total(lambda: list(terms))) == str(scan_sum(terms))


def test_signed_sum_scans_when_a_partial_sum_of_the_scan_rounds() -> None:
    from operators.accounting import SignedSum

    terms = [D("1E+40"), D("1E-10"), D("-1E+40")]
    agg = SignedSum()
    for t in (terms[0], terms[2], terms[1]):  # exact in this order: 1E-10
        agg.add(t)
    assert str(agg.total(lambda: terms)) == str(scan_sum(terms))
    assert scan_sum(terms) != D("1E-10")  # the scan rounded, and the sum says so too
