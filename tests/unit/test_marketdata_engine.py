"""The market data engine: snapshots and incrementals into ticks, once each (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from operators.marketdata import MarketDataEngine, MdEntry, SymbolStatus, parse_state

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def e(symbol: str, seq: int, *, price: str = "100", at: float | None = None) -> MdEntry:
    ts = T0 + timedelta(seconds=seq if at is None else at)
    return MdEntry(symbol, seq, Decimal(price), Decimal("100"), ts)


def seqs(ticks: list) -> list[tuple[str, int]]:
    return [(t.symbol, t.seq) for t in ticks]


def synced(symbols: tuple[str, ...] = ("AAA",), **kw: object) -> MarketDataEngine:
    eng = MarketDataEngine(symbols, **kw)  # type: ignore[arg-type]
    eng.on_logon(T0)
    for s in symbols:
        eng.on_snapshot(s, [], T0)
    return eng


def test_logon_asks_every_symbol_and_first_snapshot_is_taken_whole() -> None:
    eng = MarketDataEngine(["AAA", "BBB"])
    assert eng.on_logon(T0) == ["AAA", "BBB"]
    out = eng.on_snapshot("AAA", [e("AAA", 5), e("AAA", 6)], T0)
    assert seqs(out.ticks) == [("AAA", 5), ("AAA", 6)]
    assert not out.rejects  # a fresh start mid-stream is not a loss
    assert eng.status("AAA") is SymbolStatus.SYNCED
    assert eng.status("BBB") is SymbolStatus.RECOVERING


def test_incrementals_in_sequence_are_emitted_with_decimal_prices() -> None:
    eng = synced()
    out = eng.on_incremental([e("AAA", 1, price="101.25"), e("AAA", 2)], T0)
    assert seqs(out.ticks) == [("AAA", 1), ("AAA", 2)]
    assert out.ticks[0].price == Decimal("101.25")
    assert out.ticks[0].ts.tzinfo is not None


def test_duplicate_incremental_is_dropped() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", 1)], T0)
    out = eng.on_incremental([e("AAA", 1)], T0)
    assert out.ticks == []
    assert out.duplicates == 1


def test_gap_requests_a_snapshot_and_the_snapshot_repairs_it_in_order() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", 1)], T0)
    out = eng.on_incremental([e("AAA", 3)], T0)
    assert out.ticks == []
    assert out.snapshot_requests == ["AAA"]
    assert eng.status("AAA") is SymbolStatus.RECOVERING
    held = eng.on_incremental([e("AAA", 4)], T0)  # held while recovering
    assert held.ticks == []
    assert held.snapshot_requests == []
    out = eng.on_snapshot("AAA", [e("AAA", 1), e("AAA", 2), e("AAA", 3)], T0)
    assert seqs(out.ticks) == [("AAA", 2), ("AAA", 3), ("AAA", 4)]
    assert out.duplicates == 2  # seq 1 again, and the held 3 the snapshot carried
    assert eng.status("AAA") is SymbolStatus.SYNCED
    assert eng.gaps == 1


def test_snapshot_overlapping_incrementals_emits_nothing_twice() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", s) for s in (1, 2, 3)], T0)
    out = eng.on_snapshot("AAA", [e("AAA", s) for s in (1, 2, 3)], T0)
    assert out.ticks == []
    out = eng.on_incremental([e("AAA", 3), e("AAA", 4)], T0)
    assert seqs(out.ticks) == [("AAA", 4)]


def test_duplicate_snapshots_emit_once() -> None:
    eng = MarketDataEngine(["AAA"])
    eng.on_logon(T0)
    first = eng.on_snapshot("AAA", [e("AAA", 1), e("AAA", 2)], T0)
    second = eng.on_snapshot("AAA", [e("AAA", 1), e("AAA", 2)], T0)
    assert seqs(first.ticks) == [("AAA", 1), ("AAA", 2)]
    assert second.ticks == []
    assert second.duplicates == 2


def test_snapshot_too_shallow_for_the_gap_reports_the_lost_ticks() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", 1)], T0)
    eng.on_incremental([e("AAA", 9)], T0)
    out = eng.on_snapshot("AAA", [e("AAA", 7), e("AAA", 8), e("AAA", 9)], T0)
    assert seqs(out.ticks) == [("AAA", 7), ("AAA", 8), ("AAA", 9)]
    assert len(out.rejects) == 1
    assert "seq 2..6" in out.rejects[0].reason
    assert json.loads(out.rejects[0].payload)["count"] == 5
    assert eng.lost == 5


def test_reconnect_resumes_after_the_last_emitted_seq() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", 1), e("AAA", 2)], T0)
    eng.on_disconnected()
    assert eng.status("AAA") is SymbolStatus.RECOVERING
    # incrementals of the old connection arriving late are held, not emitted
    assert eng.on_incremental([e("AAA", 3)], T0).ticks == []
    eng.on_logon(T0)
    out = eng.on_snapshot("AAA", [e("AAA", s) for s in range(1, 6)], T0)
    assert seqs(out.ticks) == [("AAA", 3), ("AAA", 4), ("AAA", 5)]
    assert seqs(eng.on_incremental([e("AAA", 5), e("AAA", 6)], T0).ticks) == [("AAA", 6)]


def test_restart_from_state_emits_nothing_twice() -> None:
    eng = synced(("AAA", "BBB"))
    eng.on_incremental([e("AAA", 1), e("AAA", 2), e("BBB", 1)], T0)
    state = json.loads(json.dumps(eng.state()))
    again = MarketDataEngine(["AAA", "BBB"])
    again.restore(state)
    again.on_logon(T0)
    out = again.on_snapshot("AAA", [e("AAA", s) for s in (1, 2, 3)], T0)
    assert seqs(out.ticks) == [("AAA", 3)]
    out = again.on_snapshot("BBB", [e("BBB", 1)], T0)
    assert out.ticks == []
    assert again.watermark == eng.watermark


def test_watermark_holds_at_the_last_tick_of_a_recovering_symbol() -> None:
    eng = synced(("AAA", "BBB"))
    eng.on_incremental([e("AAA", 1, at=1), e("BBB", 1, at=2)], T0)
    eng.on_incremental([e("AAA", 3, at=5)], T0)  # gap in AAA: seq 2 (at 3 s) is missing
    out = eng.on_incremental([e("BBB", 2, at=6)], T0)
    assert out.ticks[0].wm == T0 + timedelta(seconds=2)  # held: not past AAA's last tick, never back
    repaired = eng.on_snapshot("AAA", [e("AAA", 2, at=3), e("AAA", 3, at=5)], T0)
    assert [t.ts >= t.wm for t in repaired.ticks] == [True, True]  # not late
    nxt = eng.on_incremental([e("BBB", 3, at=7)], T0)
    assert nxt.ticks[0].wm == T0 + timedelta(seconds=7)


def test_watermark_never_moves_back_and_respects_lateness() -> None:
    eng = synced(lateness=timedelta(seconds=2))
    out = eng.on_incremental([e("AAA", 1, at=10), e("AAA", 2, at=10)], T0)
    assert [t.wm for t in out.ticks] == [T0 + timedelta(seconds=8)] * 2


def test_bad_tick_goes_to_rejects_and_does_not_block_the_sequence() -> None:
    eng = synced()
    out = eng.on_incremental([e("AAA", 1, price="-5"), e("AAA", 2)], T0)
    assert seqs(out.ticks) == [("AAA", 2)]
    assert len(out.rejects) == 1
    assert "price" in out.rejects[0].reason


def test_tick_older_than_the_symbols_last_is_rejected() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", 1, at=10)], T0)
    out = eng.on_incremental([e("AAA", 2, at=5)], T0)
    assert out.ticks == []
    assert "before" in out.rejects[0].reason


def test_unsubscribed_symbol_is_rejected() -> None:
    eng = synced()
    out = eng.on_incremental([e("ZZZ", 1)], T0)
    assert out.ticks == []
    assert "not subscribed" in out.rejects[0].reason


def test_unanswered_snapshot_is_requested_again_after_the_timeout() -> None:
    eng = MarketDataEngine(["AAA"], snapshot_timeout=timedelta(seconds=5))
    eng.on_logon(T0)
    assert eng.tick(T0 + timedelta(seconds=4)).snapshot_requests == []
    assert eng.tick(T0 + timedelta(seconds=5)).snapshot_requests == ["AAA"]
    assert eng.tick(T0 + timedelta(seconds=6)).snapshot_requests == []


def test_hole_left_after_the_snapshot_asks_again() -> None:
    eng = synced()
    eng.on_incremental([e("AAA", 1)], T0)
    eng.on_incremental([e("AAA", 5)], T0)
    out = eng.on_snapshot("AAA", [e("AAA", 1), e("AAA", 2)], T0)  # an old snapshot
    assert seqs(out.ticks) == [("AAA", 2)]
    assert out.snapshot_requests == ["AAA"]
    out = eng.on_snapshot("AAA", [e("AAA", s) for s in (2, 3, 4, 5)], T0)
    assert seqs(out.ticks) == [("AAA", 3), ("AAA", 4), ("AAA", 5)]


def test_malformed_state_is_refused() -> None:
    with pytest.raises(ValueError, match="bad market data state"):
        parse_state({"symbols": {"AAA": {"ts": None}}})
