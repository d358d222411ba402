"""Event-time mode (operators/eventtime.py): Job C applies an account's inputs in event-time
order up to what every producer has promised, whatever order they arrive in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from operators.account_inputs import AccountInputs
from operators.eventtime import FEED, MARKET, MS, BookQueue, EventClock, Reached, merged
from operators.sequencing import END, Clock, Decoded, InputRouter, Priced, Tick, TickHistory
from schemas import Account, JournalKind, Progress, RiskDecision, TradeSignal, VenueFill

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
D = Decimal


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def history(*seconds: float) -> TickHistory:
    h = TickHistory()
    for i, s in enumerate(seconds):
        h.add(Tick("X", D(100), at(s), 0, i), at(s))
    return h


def progress(
    producer: str, symbols: dict[str, float], ends: dict[int, int], stream: str = "trade_signals",
    orders: dict[str, int] | None = None, run: str | None = None,
) -> Progress:
    times = {k: at(v) for k, v in symbols.items()}
    return Progress(producer=producer, stream=stream, ends=ends, symbols=times, orders=orders or {}, run=run,
                    ts=NOW)


def test_a_promise_counts_only_once_its_data_was_read_to_its_ends() -> None:
    clock = EventClock(("feed", "strategy:a"))
    assert not clock.on_progress(progress("strategy:a", {"X": 5}, {0: 3}))
    assert clock.frontier({"X": history(1, 5, 9)}, None) is None
    clock.on_read("trade_signals", 0, 1)
    assert clock.reached == {}
    assert clock.on_read("trade_signals", 0, 2)  # offsets 0..2 read: the promise counts
    assert clock.reached["strategy:a"] == {"X": at(5)}
    assert clock.frontier({"X": history(1, 5, 9)}, None) is None  # the feed has not promised yet
    assert clock.on_progress(progress(FEED, {MARKET: 20}, {}, stream="market_data"))
    # Job B evaluated X through 5 s: it may still write at X's next tick (9 s), not before.
    assert clock.frontier({"X": history(1, 5, 9)}, None) == at(9) - MS
    assert clock.frontier({"X": history(1, 5, 9)}, at(7)) == at(7) - MS  # a signal still held
    assert clock.frontier({"X": history(1, 5)}, None) == at(20)  # no tick after 5 s up to the market's 20 s
    assert not clock.on_progress(progress("strategy:other", {"X": 30}, {}))  # not awaited: ignored


def test_a_producer_that_evaluated_nothing_of_a_symbol_holds_it_before_its_first_tick() -> None:
    clock = EventClock(("feed", "execution:paper"))
    clock.on_progress(progress(FEED, {MARKET: 50}, {}, stream="market_data"))
    clock.on_progress(progress("execution:paper", {"Y": 40}, {}, stream="venue_fills", orders={"A": 2}))
    hist = {"X": history(3, 4), "Y": history(1, 40)}
    assert clock.frontier(hist, None) == at(3) - MS
    assert clock.orders_taken("A") == 2
    assert clock.orders_taken("B") == 0


def test_promises_merge_to_the_latest_time_and_the_most_orders() -> None:
    got = merged([Reached({"X": at(1), "Y": at(5)}, {"A": 1}), Reached({"X": at(3)}, {"A": 4, "B": 1})])
    assert got == Reached({"X": at(3), "Y": at(5)}, {"A": 4, "B": 1})
    assert merged([]) is None


def test_the_queue_releases_in_event_time_order_and_an_unconfirmed_order_holds_what_follows() -> None:
    q = BookQueue()
    q.hold(at(5), "FILL", "O1", ("venue_fills", 0, 0), "fill@5")
    q.hold(at(5), "SIGNAL", "s2", ("trade_signals", 0, 1), "signal@5")
    q.hold(at(2), "SIGNAL", "s1", ("trade_signals", 0, 0), "signal@2")
    q.hold(at(2), "SIGNAL", "s1", ("trade_signals", 0, 0), "signal@2")  # a replay while held
    q.hold(at(2), "MARK", "X", ("market_data", 0, 7), "mark@2")
    assert q.release() == []  # no frontier yet
    q.on_clock(at(10), 0)
    assert q.pop() == "mark@2"
    assert q.pop() == "signal@2"
    q.on_sent(at(2))  # the signal made an order: nothing after 2 s until a venue took it
    assert not q.ready()
    q.on_clock(at(10), 1)
    assert q.release() == ["signal@5", "fill@5"]


def test_a_producer_restarted_from_its_snapshot_is_not_held_to_what_it_promised_before() -> None:
    """Job D matched X through 30 s, was killed, and came back from an older snapshot.

    Its new run takes an order of 10 s (the first row says so) before it has matched X
    again from there: the order can still fill at 12 s, so a signal at 20 s waits. The
    Kafka chaos trial found this: the signal was decided before the fill of the order.
    """
    clock = EventClock(("feed", "execution:paper"))
    x = {"X": history(*range(0, 50, 2))}  # a tick every 2 s
    clock.on_progress(progress(FEED, {MARKET: 50}, {}, stream="market_data"))
    clock.on_progress(progress("execution:paper", {"X": 30}, {}, stream="venue_fills", run="first"))
    clock.on_progress(progress("execution:paper", {"X": 31}, {}, stream="venue_fills", run="first"))
    assert clock.frontier(x, None) == at(32) - MS
    clock.on_progress(progress("execution:paper", {}, {}, stream="venue_fills", orders={"A": 1}, run="again"))
    assert clock.orders_taken("A") == 1
    assert clock.frontier(x, None) == at(0) - MS  # nothing of X matched by this run yet
    clock.on_progress(progress("execution:paper", {"X": 14}, {}, stream="venue_fills", run="again"))
    assert clock.frontier(x, None) == at(16) - MS
    # A second worker of the same run adds to it; a producer without runs never starts over.
    clock.on_progress(progress("execution:paper", {"Y": 3}, {}, stream="venue_fills", run="again"))
    assert clock.reached["execution:paper"] == {"X": at(14), "Y": at(3)}
    clock.on_progress(progress(FEED, {MARKET: 60}, {}, stream="market_data"))
    assert clock.reached[FEED] == {MARKET: at(60)}
    assert clock.copy() == clock

    # The account's queue follows the frontier back: the signal waits for the fill.
    q = BookQueue()
    q.hold(at(20), "SIGNAL", "s", ("trade_signals", 0, 5), "signal@20")
    q.on_sent(at(10))  # the order of 10 s, not taken yet
    q.on_clock(at(32) - MS, 0)
    assert not q.ready()
    q.on_clock(at(0) - MS, 1)  # the new run took it, and has matched nothing yet
    assert not q.ready()
    q.hold(at(12), "FILL", "O-1", ("venue_fills", 0, 2), "fill@12")
    q.on_clock(at(16) - MS, 1)
    assert q.release() == ["fill@12"]
    q.on_clock(at(32) - MS, 1)
    assert q.release() == ["signal@20"]


def test_a_clock_snapshot_from_before_runs_were_kept_loads_with_none_seen() -> None:
    import pickle

    old = EventClock(("feed",))
    del old.__dict__["runs"]  # as pickled before the field existed
    loaded = pickle.loads(pickle.dumps(old))  # noqa: S301 - our own bytes
    assert loaded.runs == {}
    assert loaded.on_progress(progress("feed", {MARKET: 5}, {}, stream="market_data", run="r"))


def signal(i: int, s: float) -> Priced[Decoded[TradeSignal]]:
    sig = TradeSignal(signal_id=f"s{i}", strategy_id="st", symbol="X", account="A", side="BUY", qty=D(5),
                      ts=at(s))
    return Priced(Decoded(sig, "trade_signals", 0, i), Tick("X", D(100), at(s), 0, 100 + i))


def fill(i: int, s: float, order_id: str) -> Decoded[VenueFill]:
    rep = VenueFill(order_id=order_id, venue="paper", exec_id=f"{order_id}-{i}", status="FILLED", account="A",
                    symbol="X", side="BUY", last_qty=D(5), last_px=D(100), cum_qty=D(5), leaves_qty=D(0),
                    avg_px=D(100), ts=at(s))
    return Decoded(rep, "venue_fills", 0, i)


def run(events: list[Any]) -> tuple[list[JournalKind], list[dict[str, Any]]]:
    inputs = AccountInputs("A", event_time=True)
    kinds: list[JournalKind] = []
    decided: list[dict[str, Any]] = []
    row = Decoded(Account(account="A", cash=D(1_000_000), ts=T0), "accounts", 0, 0)
    for event in [row, *events, Clock(END, 10**6)]:
        entries, out = inputs.step(event, "portfolio_risk", NOW)
        kinds += [e.kind for e in entries]
        decided += [r.model_dump(exclude={"latency_us", "input_offsets"}) for _, r in out
                    if isinstance(r, RiskDecision)]
    return kinds, decided


def test_any_arrival_order_of_one_accounts_inputs_gives_the_same_journal_and_decisions() -> None:
    first = AccountInputs("A", event_time=True)
    first.step(Decoded(Account(account="A", cash=D(1_000_000), ts=T0), "accounts", 0, 0), "j", NOW)
    _, out = first.step(signal(1, 1), "j", NOW)
    assert out == []  # held: no frontier yet
    _, out = first.step(Clock(END, 0), "j", NOW)
    (order,) = [r for s, r in out if s == "validated_orders"]  # the order s1 makes, to fill below

    events: list[Any] = [signal(1, 1), signal(2, 3), signal(3, 6), fill(0, 2, order.order_id),
                         Tick("X", D(101), at(4), 0, 50), Tick("X", D(99), at(5), 0, 51)]
    want = run(events)
    assert len(want[1]) == 3
    rng = random.Random(7)  # noqa: S311 - arrival orders, not secrets
    for _ in range(20):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert run(shuffled) == want


def test_a_sharded_job_c_refuses_event_time_mode(tmp_path: Path) -> None:
    from connectors.settings import load_settings
    from flows.portfolio_risk import build_flow

    with pytest.raises(ValueError, match="unsharded Job C"):
        build_flow(load_settings(data_dir=tmp_path, event_time=True, shard="0/2"))


# ---------------------------------------------------------------- the router in event-time mode
# Regression tests for what the chaos trials found (operators/sequencing.py with a clock).


def event_router(awaited: tuple[str, ...] = ("feed",)) -> InputRouter[Decoded[TradeSignal]]:
    r: InputRouter[Decoded[TradeSignal]] = InputRouter.at(
        {"accounts": {0: 1}, "symbol_limits": {}, "control": {}}, throttle=timedelta(0),
        unknown_wait_s=2.0, mark_wait_s=1.0,
    )
    r.clock = EventClock(awaited)
    return r


def a_tick(s: float, off: int, sym: str = "X") -> Tick:
    return Tick(sym, D(100) + off, at(s), 0, off)


def test_ticks_before_the_accounts_row_reach_the_account_once_the_tables_are_read() -> None:
    r = event_router()
    assert r.on_tick(a_tick(1, 0), at(1), 0.0) == []  # tables not read yet: no account known
    out = r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    marks = [t for acct, t in out if acct == "A" and isinstance(t, Tick)]
    assert marks == [a_tick(1, 0)]  # the early tick, not lost


def test_every_held_signal_bounds_the_frontier_not_only_the_first_in_arrival_order() -> None:
    r = event_router()
    r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    r.on_progress(progress(FEED, {MARKET: 100}, {}, stream="market_data"), 0.0)
    r.on_tick(a_tick(1, 0, "X"), at(1), 0.0)
    r.on_tick(a_tick(1, 1, "Y"), at(1), 0.0)
    late = Decoded(TradeSignal(signal_id="s9", strategy_id="st", symbol="X", account="A", side="BUY",
                               qty=D(1), ts=at(9)), "trade_signals", 0, 0)
    early = Decoded(TradeSignal(signal_id="s5", strategy_id="st", symbol="Y", account="A", side="BUY",
                                qty=D(1), ts=at(5)), "trade_signals", 0, 1)
    r.on_signal(late, "A", "X", at(9), 0.0)  # X's market is at 1 s: held
    out = r.on_signal(early, "A", "Y", at(5), 0.0)  # held behind it in arrival order
    clocks = [c for _, c in out if isinstance(c, Clock)]
    assert all(c.frontier is None or c.frontier < at(5) for c in clocks)
    assert r.clocked["A"].frontier is not None
    assert r.clocked["A"].frontier < at(5)


def test_the_router_keeps_a_symbols_ticks_back_to_the_frontier_not_a_fixed_number() -> None:
    r = event_router()
    r.on_table_row("accounts", 0, 0, "row", account="A", now=0.0)
    for i in range(600):  # more than TICKS_KEPT, all before any promise
        r.on_tick(a_tick(i / 10, i), at(i / 10), 0.0)
    history = r.histories["X"]
    assert len(history.ticks) == 600  # nothing forgotten while no frontier says so
    mark = history.mark_at(at(0.05))
    assert mark is not None
    assert mark.offset == 0
    r.on_progress(progress(FEED, {MARKET: 30}, {}, stream="market_data"), 0.0)
    assert history.ticks[0].ts == at(30)  # trimmed to the last tick at or before the frontier


def test_a_job_d_of_a_wall_clock_venue_refuses_event_time_mode(tmp_path: Path) -> None:
    from connectors.settings import load_settings
    from flows.execution import build_flow

    with pytest.raises(ValueError, match="only paper venues"):
        build_flow(load_settings(data_dir=tmp_path, event_time=True, execution={"venue": "fix"}))


def test_event_time_settings_await_the_feed_every_strategy_and_every_venue(tmp_path: Path) -> None:
    from connectors.settings import load_settings
    from tradeflow.pipeline import demo_strategies, event_time_settings

    paper = event_time_settings(load_settings(data_dir=tmp_path), demo_strategies())
    assert paper.portfolio.await_progress == (
        "feed", "strategy:sma_cross", "strategy:rsi_reversion", "execution:paper")
