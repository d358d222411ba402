"""Job C's keyed steps (operators/account_inputs.py) without Bytewax: each input once,
conflicts refused, a resumed account catching up from its journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from operators.account_inputs import AccountInputs, route_input
from operators.sequencing import Decoded, InputRouter, Priced, Tick
from schemas import Account, Control, DeadLetter, RiskDecision, RiskEvent, Severity, TradeSignal, TradingState

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def signal(i: int, qty: str = "5") -> TradeSignal:
    return TradeSignal(signal_id=f"s{i}", strategy_id="st", symbol="X", account="A", side="BUY",
                       qty=Decimal(qty), ts=T0 + timedelta(seconds=i))


def priced(i: int, offset: int, qty: str = "5") -> Priced[Decoded[TradeSignal]]:
    return Priced(Decoded(signal(i, qty), "trade_signals", 0, offset), Tick("X", Decimal(100), T0, 0, 0))


def account_row(offset: int) -> Decoded[Account]:
    return Decoded(Account(account="A", cash=Decimal(1_000_000), ts=T0), "accounts", 0, offset)


def feed(inputs: AccountInputs, events: list[Any]) -> tuple[list[Any], list[Any]]:
    entries, out = [], []
    for event in events:
        entry, refused = inputs.take(event, "portfolio_risk", NOW)
        out += refused
        if entry is not None:
            entries.append(entry)
            out += inputs.apply(entry)
    return entries, out


def decisions(out: list[Any]) -> list[dict[str, Any]]:
    """The decisions in ``out``, without the one wall-clock figure (how long the check took)."""
    return [r.model_dump(exclude={"latency_us"}) for _, r in out if isinstance(r, RiskDecision)]


def test_each_input_is_taken_once_and_a_signal_id_with_other_contents_is_refused() -> None:
    inputs = AccountInputs("A")
    events = [account_row(0), priced(1, 0), priced(1, 0), priced(1, 1), priced(1, 2, qty="999")]
    entries, out = feed(inputs, events)
    assert [e.seq for e in entries] == [1, 2]  # the row and the first signal; the rest are not decided
    assert len([r for s, r in out if s == "risk_decisions"]) == 1
    (letter,) = [r for s, r in out if s == "dead_letters"]
    assert isinstance(letter, DeadLetter)
    assert (letter.source_stream, letter.offset, letter.job) == ("trade_signals", 2, "portfolio_risk")
    (event,) = [r for s, r in out if s == "risk_events" and r.rule == "SIGNAL_ID_CONFLICT"]
    assert isinstance(event, RiskEvent)
    assert event.severity is Severity.CRITICAL


def test_an_account_resumed_from_a_snapshot_catches_up_from_its_journal_to_the_same_state() -> None:
    live = AccountInputs("A")
    first, _ = feed(live, [account_row(0), priced(1, 0)])
    snap = live.snapshot()
    later, out = feed(live, [priced(2, 1), priced(3, 2)])
    resumed = AccountInputs("A", snap)
    caught = resumed.catch_up(later)
    assert decisions(caught) == decisions(out)
    assert resumed.snapshot() == live.snapshot()
    assert not live._taken  # the live records, applied instead of validating their entries again, are let go
    assert feed(resumed, [priced(3, 2)]) == ([], [])  # a replay after the catch-up is dropped
    assert first[0].seq == 1


def test_a_sharded_router_lets_rows_of_other_shards_accounts_only_move_the_gate() -> None:
    router: InputRouter[Decoded[TradeSignal]] = InputRouter.at(
        {"accounts": {0: 1}, "symbol_limits": {}, "control": {0: 1}}, throttle=timedelta(0),
        unknown_wait_s=5, mark_wait_s=5,
    )
    theirs = Decoded(Account(account="B", cash=Decimal(1), ts=T0), "accounts", 0, 0)
    assert route_input(router, theirs, 0.0, owns=lambda a: a == "A") == []
    halt = Decoded(Control(scope="account:B", state=TradingState.HALTED, ts=T0), "control", 0, 0)
    assert route_input(router, halt, 0.0, owns=lambda a: a == "A") == []
    assert router.open  # both tables read to their start-up ends, though nothing was routed
    mine = Decoded(Control(scope="global", state=TradingState.ACTIVE, ts=T0), "control", 0, 1)
    assert route_input(router, mine, 0.0, owns=lambda a: a == "A") == []  # no account known yet


def test_an_input_the_book_raises_on_is_a_dead_letter_and_halts_the_account_even_on_replay(
    monkeypatch: Any,
) -> None:
    """A poison pill no check refused: Job C goes on, the account halts, a replay does not crash."""
    from operators.portfolio import AccountBook

    real = AccountBook.on_signal

    def on_signal(self: AccountBook, signal: TradeSignal, **kw: Any) -> Any:
        if signal.signal_id == "s2":
            raise ArithmeticError("a case no check foresaw")
        return real(self, signal, **kw)

    monkeypatch.setattr(AccountBook, "on_signal", on_signal)
    live = AccountInputs("A")
    entries, out = feed(live, [account_row(0), priced(1, 0)])
    snap_before = live.snapshot()
    poison, out = feed(live, [priced(2, 1)])
    (letter,) = [r for s, r in out if s == "dead_letters"]
    assert isinstance(letter, DeadLetter)
    assert (letter.source_stream, letter.offset) == ("trade_signals", 1)
    assert "ArithmeticError: a case no check foresaw" in letter.reason
    rules = sorted(r.rule for s, r in out if s == "risk_events")
    assert rules == ["KILL_SWITCH", "POISON_INPUT"]
    assert all(r.severity is Severity.CRITICAL for s, r in out if s == "risk_events")
    assert live.book.trading_state is TradingState.HALTED
    _, after = feed(live, [priced(3, 2)])  # the job goes on; the halted account refuses
    (decision,) = [r for s, r in after if s == "risk_decisions"]
    assert "TRADING_HALTED" in [r.rule for r in decision.rules if not r.passed]
    resumed = AccountInputs("A", snap_before)  # a restart replays the poison from the journal
    caught = resumed.catch_up(poison)
    assert [s for s, _ in caught if s == "dead_letters"] == ["dead_letters"]
    assert resumed.book.trading_state is TradingState.HALTED
    assert entries


def _batch_run(coalesce: bool, seed: int) -> tuple[list[Any], dict[Any, Any], dict[str, Any], int]:
    """Feed one account random batches of marks, signals and fills; return its records."""
    import random

    from operators.sequencing import Decoded as Dec
    from schemas import PortfolioState, PositionState, ValidatedOrder, VenueFill

    rng = random.Random(seed)  # noqa: S311 - reproducible
    inputs = AccountInputs("A")
    out: list[Any] = []
    offsets = {"trade_signals": 0, "venue_fills": 0, "market_data": 0}
    symbols = ["X", "Y", "Z"]
    sent: list[ValidatedOrder] = []

    def next_offset(stream: str) -> int:
        offsets[stream] += 1
        return offsets[stream]

    def event(i: int) -> Any:
        r = rng.random()
        sym = rng.choice(symbols)
        ts = T0 + timedelta(seconds=i)
        if r < 0.6:
            return Tick(sym, Decimal(100 + rng.randrange(-5, 6)), ts, 0, next_offset("market_data"))
        if r < 0.8 or not sent:
            sig = TradeSignal(signal_id=f"s{i}", strategy_id="st", symbol=sym, account="A",
                              side=rng.choice(["BUY", "SELL"]), qty=Decimal(rng.choice([1, 5, 10])), ts=ts)
            return Priced(Dec(sig, "trade_signals", 0, next_offset("trade_signals")),
                          Tick(sym, Decimal(100), ts, 0, next_offset("market_data")))
        order = sent.pop(0)
        rep = VenueFill(order_id=order.order_id, venue="paper", exec_id=f"{order.order_id}-f",
                        status="FILLED", account="A", symbol=order.symbol, side=order.side,
                        last_qty=order.qty, last_px=Decimal(100), cum_qty=order.qty, leaves_qty=Decimal(0),
                        avg_px=Decimal(100), ts=ts)
        return Dec(rep, "venue_fills", 0, next_offset("venue_fills"))

    first, refused = inputs.take_all([account_row(0)], "portfolio_risk", NOW)
    out += refused + inputs.apply_all(first)
    for b in range(40):
        batch = [event(b * 10 + j) for j in range(rng.randrange(1, 10))]
        entries, refused = inputs.take_all(batch, "portfolio_risk", NOW)
        applied = inputs.apply_all(entries) if coalesce else [r for e in entries for r in inputs.apply(e)]
        got = refused + applied
        sent += [r for s, r in got if s == "validated_orders"]
        out += got
    latest = {}
    for stream, rec in out:
        if isinstance(rec, PositionState):
            latest[(stream, rec.symbol)] = rec
        elif isinstance(rec, PortfolioState):
            latest[stream] = rec
    others = [(s, r.model_dump(exclude={"latency_us"})) for s, r in out
              if not isinstance(r, PositionState | PortfolioState)]
    return others, latest, inputs.snapshot(), len(out) - len(others)


def test_a_run_of_marks_writes_each_row_once_and_leaves_the_same_latest_rows() -> None:
    from schemas import PortfolioState, PositionState

    fewer = 0
    for seed in range(6):
        one_by_one, latest, snap, rows = _batch_run(False, seed)
        coalesced, latest_c, snap_c, rows_c = _batch_run(True, seed)
        assert coalesced == one_by_one, seed  # decisions, orders, events: the same, in the same order
        assert latest_c == latest, seed  # every position and portfolio row ends the same
        assert snap_c == snap, seed
        assert any(isinstance(r, PositionState | PortfolioState) for r in latest.values())
        assert rows_c <= rows
        fewer += rows - rows_c
    assert fewer > 50  # the runs of marks did write fewer rows
