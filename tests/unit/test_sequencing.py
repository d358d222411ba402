"""Job C's input sequencing (operators/sequencing.py): marks at event time, fail-closed
gates, per-account order, once-only inputs and the journal fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from operators.portfolio import AccountBook, InputPos
from operators.sequencing import (
    InputPositions,
    InputRouter,
    Priced,
    SignalCheck,
    SignalIds,
    Tick,
    TickHistory,
    apply_entry,
    digest,
    entry_for,
    fold,
    record_of,
)
from schemas import Account, Control, JournalEntry, TradeSignal, decode, encode

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
D = Decimal


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def tick(sym: str, s: float, px: str, off: int = 0) -> Tick:
    return Tick(sym, D(px), at(s), 0, off)


def signal(i: int, s: float, sym: str = "X", account: str = "A", qty: str = "5") -> TradeSignal:
    return TradeSignal(signal_id=f"s{i}", strategy_id="st", symbol=sym, account=account, side="BUY",
                       qty=D(qty), ts=at(s))


def router(**ends: dict[int, int]) -> InputRouter[TradeSignal]:
    tables = {"accounts": {}, "symbol_limits": {}, "control": {}, **ends}
    return InputRouter.at(tables, throttle=timedelta(seconds=1), unknown_wait_s=2.0, mark_wait_s=1.0)


def released(out: list[tuple[str, object]]) -> list[str]:
    return [p.item.signal_id for _, p in out if isinstance(p, Priced)]


def test_a_signal_is_priced_at_the_last_tick_at_or_before_its_time_not_the_newest() -> None:
    h = TickHistory()
    for i, (s, px) in enumerate([(1, "100"), (3, "103"), (2, "102"), (5, "105")]):
        h.add(tick("X", s, px, i), None)
    mark = h.mark_at(at(4))
    assert mark is not None
    assert mark.price == D("103")
    assert h.mark_at(at(0.5)) is None
    assert h.settled(at(5))
    assert not h.settled(at(5.001))


def test_a_watermark_settles_event_time_even_without_a_tick_there() -> None:
    h = TickHistory()
    h.add(tick("X", 1, "100"), None)
    assert not h.settled(at(3))
    h.add(tick("X", 2, "101", 1), at(4))  # the feed promises nothing older than t=4 will come
    assert h.settled(at(3))


def test_no_signal_passes_before_every_table_reached_its_start_up_end() -> None:
    r = router(accounts={0: 1}, symbol_limits={0: 2}, control={1: 1})
    r.on_tick(tick("X", 9, "100"), None, 0.0)
    assert r.on_signal(signal(1, 9), "A", "X", at(9), 0.0) == []
    row = Account(account="A", cash=D(1000), ts=T0)
    assert released(r.on_table_row("accounts", 0, 0, row, account="A", now=0.1)) == []
    assert released(r.on_table_row("symbol_limits", 0, 0, "lim0", account="A", now=0.1)) == []
    assert released(r.on_table_row("control", 1, 0, "ctl", broadcast="global", now=0.1)) == []
    assert r.next_due() is None  # still closed: no time-out can release it
    out = r.on_table_row("symbol_limits", 0, 1, "lim1", account="A", now=0.2)
    assert released(out) == ["s1"]
    assert out[0] == ("A", "lim1")  # the last limits row reaches the book before the signal


def test_a_table_row_that_did_not_decode_still_counts_as_read_for_the_gate() -> None:
    """A bad last control row must not hold Job C closed for ever (hostile corpus)."""
    r = router(accounts={0: 1}, control={0: 2})
    r.on_tick(tick("X", 9, "100"), None, 0.0)
    r.on_table_row("accounts", 0, 0, Account(account="A", cash=D(1000), ts=T0), account="A", now=0.0)
    r.on_table_row("control", 0, 0, "ctl", broadcast="global", now=0.0)
    assert r.on_signal(signal(1, 9), "A", "X", at(9), 0.0) == []
    assert r.next_due() is None  # closed: offset 1 of control, the last one, is not read yet
    assert released(r.on_unreadable("control", 0, 1, 0.1)) == ["s1"]


def test_an_unknown_account_waits_a_bounded_time_then_is_decided() -> None:
    r = router()
    r.on_tick(tick("X", 9, "100"), None, 0.0)
    assert r.on_signal(signal(1, 9, account="GHOST"), "GHOST", "X", at(9), 10.0) == []
    due = r.next_due()
    assert due is not None
    assert due <= 12.0
    assert r.release(11.9) == []
    assert released(r.release(12.0)) == ["s1"]


def test_an_account_row_arriving_in_time_releases_its_signals_after_it() -> None:
    r = router()
    r.on_tick(tick("X", 9, "100"), None, 0.0)
    r.on_signal(signal(1, 9), "A", "X", at(9), 0.0)
    out = r.on_table_row("accounts", 0, 0, "row", account="A", now=0.5)
    assert out[0] == ("A", "row")
    assert released(out) == ["s1"]


def test_each_account_signals_pass_in_arrival_order_even_when_a_later_one_is_priced_first() -> None:
    r = router()
    r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    r.on_tick(tick("Y", 10.5, "50"), at(12), 0.0)
    assert r.on_signal(signal(1, 10, sym="X"), "A", "X", at(10), 0.0) == []  # no X data yet
    assert r.on_signal(signal(2, 11, sym="Y"), "A", "Y", at(11), 0.0) == []  # priced, but behind s1
    assert r.on_signal(signal(3, 11, sym="Y", account="B"), "B", "Y", at(11), 0.5) == []  # no row
    out = r.on_tick(tick("X", 10, "101", 1), None, 0.1)
    assert released(out) == ["s1", "s2"]
    marks = [p.mark.price for _, p in out if isinstance(p, Priced) and p.mark is not None]
    assert marks == [D("101"), D("50")]


def test_a_signal_whose_market_data_never_comes_is_released_unpriced_after_the_wait() -> None:
    r = router()
    r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    assert r.on_signal(signal(1, 10), "A", "X", at(10), 5.0) == []
    out = r.release(6.0)
    assert released(out) == ["s1"]
    assert out[0][1].mark is None


def test_broadcast_control_rows_reach_a_new_account_in_changelog_order() -> None:
    r = router()
    r.on_table_row("control", 0, 5, "global@5", broadcast="global", now=0.0)
    r.on_table_row("control", 0, 3, "strategy@3", broadcast="strategy:st", now=0.0)
    r.on_table_row("control", 0, 6, "account-B@6", account="B", now=0.0)
    out = r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    assert out == [("A", "strategy@3"), ("A", "global@5"), ("A", "row")]


def test_marks_fan_out_to_holders_throttled_by_event_time() -> None:
    r = router()
    r.on_tick(tick("X", 1, "100"), None, 0.0)
    assert r.on_fill("A", "X") == [("A", tick("X", 1, "100"))]
    assert r.on_fill("A", "X") == []
    got = []
    for i, s in enumerate([1.5, 2.1, 2.5, 3.2]):
        got += [t.ts for _, t in r.on_tick(tick("X", s, "100", i + 1), None, 0.0)]
    assert got == [at(2.1), at(3.2)]


def test_input_positions_drop_replays_per_key() -> None:
    p = InputPositions()
    assert p.take("market_data", 0, 5, "X")
    assert p.take("market_data", 0, 3, "Y")  # another symbol of the partition: its own key
    assert not p.take("market_data", 0, 4, "X")
    assert not p.take("market_data", 0, 5, "X")
    assert p.take("market_data", 0, 6, "X")


def test_signal_ids_tell_a_replay_from_a_conflict() -> None:
    ids = SignalIds()
    assert ids.check(signal(1, 1)) is SignalCheck.NEW
    assert ids.check(signal(1, 1)) is SignalCheck.REPLAY
    assert ids.check(signal(1, 1, qty="999")) is SignalCheck.CONFLICT


def test_latency_stamps_change_neither_the_digest_nor_the_replay_check() -> None:
    plain = signal(1, 1)
    stamped = plain.model_copy(update={"entered_at": at(0)})
    again = plain.model_copy(update={"entered_at": at(3)})  # fed again
    assert digest(stamped) == digest(again) == digest(plain)
    assert digest(plain) == digest(decode(TradeSignal, encode(plain)))  # no stamp: the old bytes
    ids = SignalIds()
    assert ids.check(stamped) is SignalCheck.NEW
    assert ids.check(again) is SignalCheck.REPLAY
    assert ids.check(plain.model_copy(update={"qty": D(7), "entered_at": at(0)})) is SignalCheck.CONFLICT


def test_signal_ids_stay_bounded_and_forget_the_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import operators.sequencing as sequencing

    monkeypatch.setattr(sequencing, "SIGNAL_IDS_KEPT", 3)
    ids = SignalIds()
    for i in range(7):
        assert ids.check(signal(i, i)) is SignalCheck.NEW
        assert len(ids.seen) <= 3
    assert list(ids.seen) == ["s4", "s5", "s6"]
    assert ids.check(signal(5, 5)) is SignalCheck.REPLAY
    assert ids.check(signal(1, 1)) is SignalCheck.NEW  # forgotten: new again
    assert list(ids.seen) == ["s5", "s6", "s1"]


def test_journal_entries_round_trip_and_the_fold_equals_applying_the_inputs() -> None:
    row = Account(account="A", cash=D(100_000), max_order_notional=D(1000), ts=T0)
    inputs = [
        (InputPos("accounts", 0, 0), row, None),
        (InputPos("trade_signals", 1, 0), signal(1, 5, qty="5"), tick("X", 4, "100")),
        (InputPos("control", 0, 0), Control(scope="global", state="HALTED", ts=at(6)), None),
        (InputPos("trade_signals", 1, 1), signal(2, 7, qty="5"), tick("X", 6, "101", 1)),
    ]
    entries = [entry_for("A", i + 1, pos, rec, mark=m) for i, (pos, rec, m) in enumerate(inputs)]
    wire = [decode(JournalEntry, encode(e)) for e in entries]
    assert wire == entries
    assert record_of(wire[1]) == inputs[1][1]
    direct = AccountBook("A", clock=lambda: 0)
    outs = [apply_entry(direct, e) for e in entries]
    shuffled = [wire[2], wire[0], wire[3], wire[1], wire[1]]  # any order, duplicates: seq decides
    folded = fold(shuffled, AccountBook("A", clock=lambda: 0))
    assert folded == outs
    decisions = [o.decision.decision.value for o in outs if o.decision is not None]
    assert decisions == ["PASS", "FAIL"]


def test_a_restarted_router_fails_closed_until_rows_written_while_down_are_read() -> None:
    r = router(accounts={0: 1})
    r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    r.on_tick(tick("X", 9, "100"), None, 0.0)
    assert r.open
    r.rearm({"accounts": {0: 1}, "symbol_limits": {}, "control": {}})  # nothing new: still open
    assert r.open
    r.rearm({"accounts": {0: 1}, "symbol_limits": {0: 2}, "control": {}})  # limits written while down
    assert r.on_signal(signal(1, 9), "A", "X", at(9), 0.0) == []
    assert r.on_table_row("symbol_limits", 0, 0, "lim", account="A", now=0.0)[-1] == ("A", "lim")
    assert released(r.on_table_row("symbol_limits", 0, 1, "lim2", account="A", now=0.0)) == ["s1"]


def test_instrument_rows_hold_signals_until_read_and_reach_every_account_book() -> None:
    r = router(instruments={0: 2})
    assert r.on_table_row("accounts", 0, 0, "accA", account="A", now=0.0) == [("A", "accA")]
    assert r.on_tick(tick("X", 10, "100"), None, 0.0) == []
    assert r.on_signal(signal(0, 5), "A", "X", at(5), 0.0) == []  # instruments not read yet
    got = r.on_table_row("instruments", 0, 0, "instX", broadcast="instruments:X", now=0.0)
    assert got == [("A", "instX")]
    out = r.on_table_row("instruments", 0, 1, "instY", broadcast="instruments:Y", now=0.0)
    assert out[0] == ("A", "instY")
    assert released(out) == ["s0"]  # read to the start-up end: the gate opens
    out = r.on_table_row("accounts", 0, 1, "accB", account="B", now=0.0)
    assert out == [("B", "instX"), ("B", "instY"), ("B", "accB")]  # a later account gets every row
    r.on_table_row("instruments", 0, 2, "instX2", broadcast="instruments:X", now=0.0)
    assert r.copy().broadcasts["instruments:X"] == (0, 2, "instX2")  # only the latest per symbol
