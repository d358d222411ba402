"""Per-hop latency of a run from the records' stamps and write times (operators/latency.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from operators.latency import HOPS, breakdown, hop_figures, render
from schemas import SmaWide, TradeSignal, ValidatedOrder, VenueFill
from schemas.trading import ExecStatus, OrderAction

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def row(seq: int, entered: float | None, written: float | None,
        symbol: str = "X") -> tuple[SmaWide, datetime | None]:
    rec = SmaWide(symbol=symbol, ts=T0, price=1.0, volume=1.0, seq=seq,
                  entered_at=None if entered is None else at(entered))
    return rec, None if written is None else at(written)


def signal(seq: int, entered: float, written: float, symbol: str = "X") -> tuple[TradeSignal, datetime]:
    rec = TradeSignal(signal_id=f"st:{symbol}:{seq}", strategy_id="st", symbol=symbol, account="A",
                      side="BUY", qty=Decimal(1), ts=T0, entered_at=at(entered))
    return rec, at(written)


def order(oid: str, sig: str, entered: float, written: float,
          action: OrderAction = OrderAction.NEW) -> tuple[ValidatedOrder, datetime]:
    rec = ValidatedOrder(order_id=oid, action=action, account="A", symbol="X", side="BUY", qty=Decimal(1),
                         signal_id=sig, ts=T0, entered_at=at(entered))
    return rec, at(written)


def fill(oid: str, n: int, entered: float, written: float) -> tuple[VenueFill, datetime]:
    rec = VenueFill(order_id=oid, venue="paper", exec_id=f"{oid}-{n}", status=ExecStatus.ACK, account="A",
                    symbol="X", side="BUY", ts=T0, entered_at=at(entered))
    return rec, at(written)


def test_hop_figures_use_the_project_percentile_in_milliseconds() -> None:
    figs = hop_figures("h", [(at(0), at(ms)) for ms in (1, 2, 3, 4, 10)])
    assert (figs.count, figs.p50_ms, figs.max_ms) == (5, 3.0, 10.0)
    assert figs.p90_ms is not None
    assert 4.0 < figs.p90_ms < 10.0


def test_hop_figures_of_nothing_are_a_zero_count_and_no_values() -> None:
    figs = hop_figures("h", [])
    assert (figs.count, figs.p50_ms, figs.p99_ms, figs.max_ms) == (0, None, None, None)


def test_one_chain_from_tick_to_ack_gives_each_hop_its_own_time() -> None:
    figs = {f.hop: f for f in breakdown(
        [row(7, 0, 2)], [signal(7, 0, 5)], [order("O1", "st:X:7", 0, 9)],
        [fill("O1", 2, 0, 30), fill("O1", 1, 0, 20)],
    )}
    assert list(figs) == list(HOPS)
    assert {h: f.p50_ms for h, f in figs.items()} == {
        "feed->A": 2.0, "A->B": 3.0, "B->C": 4.0, "C->D->ack": 11.0, "feed->ack": 20.0}
    assert all(f.count == 1 for f in figs.values())


def test_unstamped_records_replays_cancels_and_orphans_are_not_counted() -> None:
    figs = {f.hop: f for f in breakdown(
        [row(1, None, None), row(2, 0, 1), row(2, 0, 50)],  # an old row; a replayed one
        [signal(2, 0, 4), signal(2, 0, 90), signal(3, 0, 4)],  # replay; no row for seq 3
        [order("O1", "st:X:2", 0, 6), order("O1", "st:X:2", 0, 7, OrderAction.CANCEL)],
        [fill("O9", 1, 0, 8)],  # a report of an order this run did not write
    )}
    # the replayed row's second write is not a hop
    assert (figs["feed->A"].count, figs["feed->A"].max_ms) == (1, 1.0)
    assert (figs["A->B"].count, figs["A->B"].max_ms) == (1, 3.0)
    assert (figs["B->C"].count, figs["B->C"].max_ms) == (1, 2.0)
    assert figs["C->D->ack"].count == figs["feed->ack"].count == 0


def test_render_prints_one_aligned_line_per_hop() -> None:
    text = render([hop_figures("feed->A", [(at(0), at(1.5))]), hop_figures("A->B", [])])
    lines = text.splitlines()
    assert lines[0].split() == ["hop", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
    assert lines[1].split() == ["feed->A", "1", "1.5", "1.5", "1.5", "1.5"]
    assert lines[2].split() == ["A->B", "0", "-", "-", "-", "-"]
    assert len({len(line) for line in lines[:2]}) == 1
