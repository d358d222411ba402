"""Replay, shadow limits and the candidate limits file, on hand-built logs (no Bytewax).

``Sim`` drives ``AccountBook``s the way Job C's flow wires them (last tick attached to a
signal, throttled fan-out of ticks to holders, a holder's first mark when its first
venue report passes the router), in an arrival order the test chooses, journaling each
input before applying it, and records the decisions. The replay only sees the journal,
the signals and those decisions, and must reproduce them whatever the arrival order was.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.settings import Settings
from operators.limits import RiskToolError, load_limits
from operators.portfolio import AccountBook, Outcome, order_id_for
from operators.replay import (
    LimitOverrides,
    LimitsError,
    Logged,
    RecordedLog,
    Replayed,
    compare,
    replay_log,
    shadow_results,
)
from operators.sequencing import Tick, apply_entry, entry_for
from schemas import (
    Account,
    Control,
    Decision,
    JournalEntry,
    MarketData,
    Record,
    RiskDecision,
    SymbolLimit,
    TradeSignal,
    VenueFill,
)
from tests import builders
from tests.builders import D
from tradeflow.risk_tools import replay, shadow

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


class Log:
    """Input records with log positions: one partition per stream unless told."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = defaultdict(int)
        self.items: list[Logged[Any]] = []

    def put(self, stream: str, record: Record, partition: int = 0) -> Logged[Any]:
        off = self.next[(stream, partition)]
        self.next[(stream, partition)] += 1
        x = Logged(record, stream, partition, off)
        self.items.append(x)
        return x


class Sim:
    """Job C's routing and books over an explicit arrival order, journaling what it applies."""

    def __init__(self, throttle: timedelta = SECOND) -> None:
        self.throttle = throttle
        self.books: dict[str, AccountBook] = {}
        self.last: dict[str, Logged[MarketData]] = {}
        self.fanned: dict[str, datetime] = {}
        self.holders: dict[str, list[str]] = defaultdict(list)
        self.decisions: list[Logged[RiskDecision]] = []
        self.journal: list[Logged[JournalEntry]] = []
        self.seqs: dict[str, int] = defaultdict(int)

    def book(self, account: str) -> AccountBook:
        return self.books.setdefault(account, AccountBook(account))

    def apply(self, account: str, x: Logged[Any], mark: Logged[MarketData] | None = None) -> Outcome:
        """Journal one input of an account, then apply it (as Job C's books do)."""
        self.seqs[account] += 1
        rec = _tick(x) if isinstance(x.record, MarketData) else x.record
        entry = entry_for(account, self.seqs[account], x.pos, rec, mark=_tick(mark) if mark else None)
        self.journal.append(Logged(entry, "risk_journal", 0, len(self.journal)))
        return apply_entry(self.book(account), entry)

    def feed(self, items: Iterable[Logged[Any]]) -> None:
        for x in items:
            self._one(x)

    def _one(self, x: Logged[Any]) -> None:
        rec = x.record
        if isinstance(rec, MarketData):
            self._tick(x)
        elif isinstance(rec, TradeSignal):
            decision = self.apply(rec.account, x, self.last.get(rec.symbol)).decision
            assert decision is not None
            self.decisions.append(Logged(decision, "risk_decisions", 0, len(self.decisions)))
        elif isinstance(rec, VenueFill):
            if rec.account not in self.holders[rec.symbol]:
                self.holders[rec.symbol].append(rec.account)
                if rec.symbol in self.last:
                    self.apply(rec.account, self.last[rec.symbol])
            self.apply(rec.account, x)
        elif isinstance(rec, Account | SymbolLimit):
            self.apply(rec.account, x)
        elif isinstance(rec, Control):
            self._control(x)

    def _tick(self, x: Logged[MarketData]) -> None:
        rec = x.record
        self.last[rec.symbol] = x
        prev = self.fanned.get(rec.symbol)
        if prev is None or rec.ts - prev >= self.throttle:
            self.fanned[rec.symbol] = rec.ts
            for account in self.holders[rec.symbol]:
                self.apply(account, x)

    def _control(self, x: Logged[Control]) -> None:
        scope = x.record.scope
        if scope.startswith("account:"):
            self.apply(scope.removeprefix("account:"), x)
            return
        for account in list(self.books):  # broadcast to the accounts known (no replay to new ones here)
            self.apply(account, x)


def _tick(x: Logged[MarketData]) -> Tick:
    t = x.record
    return Tick(t.symbol, t.price, t.ts, x.partition, x.offset)


def recorded(log: Log, sim: Sim) -> RecordedLog:
    out = RecordedLog(decisions=list(sim.decisions), journal=list(sim.journal))
    out.signals = [x for x in sorted(log.items, key=lambda x: (x.partition, x.offset))
                   if x.stream == "trade_signals"]
    return out


def replayed(rec: RecordedLog) -> list[Replayed]:
    return list(replay_log(rec))


def differences(rec: RecordedLog) -> list[str]:
    out = []
    for r in replayed(rec):
        assert r.recorded is not None, f"{r.decision.signal_id} has no recorded decision"
        out += [f"{d.signal_id} {d.field}: {d.recorded} != {d.replayed}" for d in compare(r.recorded.record,
                                                                                        r.decision)]
    return out


def account(version: int = 1, ts: datetime = T0, **kw: Any) -> Account:
    fields: dict[str, Any] = {"account": "A", "cash": D(100_000), "max_order_notional": D(1000),
                              "limits_version": version}
    return builders.account(ts, **{**fields, **kw})


def tick(sym: str, s: float, px: str) -> MarketData:
    return MarketData(symbol=sym, ts=at(s), price=D(px), volume=D(1))


def signal(i: int, s: float, qty: str = "5", sym: str = "X", strategy: str = "st", side: str = "BUY",
           account_id: str = "A") -> TradeSignal:
    return TradeSignal(signal_id=f"s{i}", strategy_id=strategy, symbol=sym, account=account_id, side=side,
                       qty=D(qty), ts=at(s))


def fill(sig: TradeSignal, s: float, qty: str, px: str, status: str = "FILLED", n: int = 1) -> VenueFill:
    oid = order_id_for(sig.account, sig.signal_id)
    return VenueFill(order_id=oid, venue="paper", exec_id=f"{oid}-{n}", status=status, account=sig.account,
                     symbol=sig.symbol, side=sig.side, last_qty=D(qty), last_px=D(px), cum_qty=D(qty),
                     leaves_qty=D(0), avg_px=D(px), ts=at(s))


# --------------------------------------------------------------------- ordering


def test_a_limits_row_stamped_before_a_signal_but_applied_after_it_is_replayed_after_it() -> None:
    log, sim = Log(), Sim()
    v1 = log.put("accounts", account(1))
    mark = log.put("market_data", tick("X", 1, "100"))
    s1 = log.put("trade_signals", signal(1, 10, qty="20"))           # 2000 > 1000: FAIL under v1
    v2 = log.put("accounts", account(2, ts=at(5), max_order_notional=D(5000)))  # ts before s1
    s2 = log.put("trade_signals", signal(2, 20, qty="20"))
    sim.feed([v1, mark, s1, v2, s2])  # v2 reached the book after s1, whatever its event time
    rec = recorded(log, sim)
    assert [(d.record.decision, d.record.limits_version) for d in rec.decisions] == [
        (Decision.FAIL, 1), (Decision.PASS, 2)]
    assert differences(rec) == []
    rows = [r.account_row.offset if r.account_row else None for r in replayed(rec)]
    assert rows == [0, 1]  # each decision replayed on the row it recorded


def test_a_fill_stamped_early_but_applied_after_a_later_signal_stays_after_it() -> None:
    log, sim = Log(), Sim()
    items = [log.put("accounts", account(max_order_notional=None, max_open_orders=1)),
             log.put("market_data", tick("X", 1, "100"))]
    s1 = signal(1, 2)
    items.append(log.put("trade_signals", s1))
    s2 = log.put("trade_signals", signal(2, 30))
    late_fill = log.put("venue_fills", fill(s1, 3, "5", "100"))  # event time 3, arrives after s2
    s3 = log.put("trade_signals", signal(3, 40))
    sim.feed([*items, s2, late_fill, s3])
    rec = recorded(log, sim)
    assert [d.record.decision for d in rec.decisions] == [Decision.PASS, Decision.FAIL, Decision.PASS]
    assert differences(rec) == []


def test_a_tampered_record_is_reported_field_by_field() -> None:
    log, sim = Log(), Sim()
    sim.feed([log.put("accounts", account()), log.put("market_data", tick("X", 1, "100")),
              log.put("trade_signals", signal(1, 2, qty="20"))])
    rec = recorded(log, sim)
    original = rec.decisions[0].record
    rules = [r if r.rule != "MAX_ORDER_NOTIONAL" else replace_rule(r, passed=True, limit="5000")
             for r in original.rules]
    forged = original.model_copy(update={"decision": Decision.PASS, "limits_version": 7, "rules": rules})
    rec.decisions[0] = Logged(forged, "risk_decisions", 0, 0)
    fields = {d.split(" ")[1].rstrip(":") for d in differences(rec)}
    assert fields == {"decision", "limits_version", "MAX_ORDER_NOTIONAL.passed", "MAX_ORDER_NOTIONAL.limit"}


def replace_rule(rule: Any, **kw: Any) -> Any:
    return rule.model_copy(update=kw)


def test_a_signal_without_a_recorded_decision_is_flagged(tmp_path: Path) -> None:
    log, sim = Log(), Sim()
    sim.feed([log.put("accounts", account()), log.put("market_data", tick("X", 1, "100")),
              log.put("trade_signals", signal(1, 2)), log.put("trade_signals", signal(3, 4))])
    log.put("trade_signals", signal(2, 3))  # never reached Job C: not journaled, not decided
    rec = recorded(log, sim)
    rec.decisions.pop()  # s3 was journaled and decided, but its record was lost
    out = replayed(rec)
    assert [(r.decision.signal_id, r.recorded is not None) for r in out] == [("s1", True), ("s3", False)]
    report = replay(Settings(data_dir=tmp_path), log=rec)
    assert sorted(report.unrecorded) == ["s2", "s3"]
    assert not report.ok


def test_global_control_rows_before_the_account_appears_arrive_as_the_latest_per_scope() -> None:
    log, sim = Log(), Sim()
    log.put("control", Control(scope="global", state="HALTED", ts=T0))
    resume = log.put("control", Control(scope="global", state="ACTIVE", ts=at(1)))
    row = log.put("accounts", account())
    px = log.put("market_data", tick("X", 1, "100"))
    s1 = log.put("trade_signals", signal(1, 5))
    halt = log.put("control", Control(scope="global", state="HALTED", ts=at(6)))
    s2 = log.put("trade_signals", signal(2, 7))
    # the flow's control router replays only the latest global row to an account it meets
    sim.apply("A", resume)
    sim.feed([row, px, s1, halt, s2])
    rec = recorded(log, sim)
    assert [d.record.decision for d in rec.decisions] == [Decision.PASS, Decision.FAIL]
    assert rec.decisions[1].record.input_offsets["control:0"] == 2
    assert differences(rec) == []


# --------------------------------------------------------------------- marks


def test_marks_fanned_out_to_holders_are_replayed_from_the_recorded_offsets() -> None:
    log, sim = Log(), Sim()
    arrival: list[Logged[Any]] = [log.put("accounts", account(max_order_notional=None))]
    arrival.append(log.put("market_data", tick("X", 1, "100")))
    s1 = signal(1, 1.5, qty="10")
    arrival.append(log.put("trade_signals", s1))
    arrival.append(log.put("venue_fills", fill(s1, 2, "10", "100")))  # A now holds X
    for i in range(1, 13):  # X and Y move; X fanned out at most once a second
        arrival.append(log.put("market_data", tick("X", 2 + i * 0.4, str(100 + i))))
        arrival.append(log.put("market_data", tick("Y", 2.1 + i * 0.4, str(50 + i))))
        if i % 3 == 0:
            arrival.append(log.put("trade_signals", signal(10 + i, 2.2 + i * 0.4, sym="Y")))
    sim.feed(arrival)
    rec = recorded(log, sim)
    gross = [next(r.value for r in d.record.rules if r.rule == "MAX_GROSS_EXPOSURE") for d in rec.decisions]
    assert len(set(gross[1:])) == len(gross) - 1  # the held position was revalued between decisions
    assert differences(rec) == []


def test_held_position_marks_are_replayed_exactly_whatever_the_recorded_offsets_say() -> None:
    # The replay folds the journal: the ticks an account was marked at are in it, so
    # an input_offsets entry that names another tick changes nothing.
    log, sim = Log(), Sim()
    arrival: list[Logged[Any]] = [log.put("accounts", account(max_order_notional=None)),
                                  log.put("market_data", tick("X", 1, "100"))]
    s1 = signal(1, 1.5, qty="10")
    arrival += [log.put("trade_signals", s1), log.put("venue_fills", fill(s1, 2, "10", "100"))]
    late = [log.put("market_data", tick("X", 3 + i, str(101 + i))) for i in range(3)]
    arrival += [late[0], late[1]]
    s2 = log.put("trade_signals", signal(2, 2.5, sym="Y"))  # event time before the X ticks it saw
    arrival += [log.put("market_data", tick("Y", 2.4, "50")), s2, late[2]]
    sim.feed(arrival)
    rec = recorded(log, sim)
    last = rec.decisions[-1]
    offsets = {**last.record.input_offsets, "market_data:0@X": late[1].offset}
    rec.decisions[-1] = Logged(last.record.model_copy(update={"input_offsets": offsets}), "risk_decisions", 0,
                               last.offset)
    assert differences(rec) == []


# --------------------------------------------------------------------- shadow limits


def test_stricter_order_notional_refuses_exactly_the_larger_orders() -> None:
    log, sim = Log(), Sim()
    arrival: list[Logged[Any]] = [log.put("accounts", account(max_order_notional=D(10_000))),
                                  log.put("market_data", tick("X", 1, "100"))]
    sizes = ["5", "30", "12", "80", "7", "45", "200"]  # notional 500 ... 20000 (the last fails live)
    arrival += [log.put("trade_signals", signal(i, 2 + i, qty=q)) for i, q in enumerate(sizes)]
    sim.feed(arrival)
    rec = recorded(log, sim)
    limits = LimitOverrides.from_mapping({"accounts": {"A": {"max_order_notional": "4000"}}})
    refused = set()
    for r in replayed(rec):
        results = shadow_results(r, limits)
        if r.decision.decision is Decision.PASS and not all(x.passed for x in results):
            refused.add(r.decision.signal_id)
            assert [x.rule for x in results if not x.passed] == ["MAX_ORDER_NOTIONAL"]
    assert refused == {"s3", "s5"}  # 8000 and 4500; 3000 at most passes, 20000 failed already


def test_symbol_overrides_fall_back_to_wildcards_field_by_field() -> None:
    limits = LimitOverrides.from_mapping({"accounts": {
        "*": {"max_open_orders": 3, "symbols": {"*": {"max_position_qty": "100"}}},
        "A": {"max_order_qty": "50", "symbols": {"X": {"max_position_notional": "9000"}}},
    }})
    assert limits.account_fields("A") == {"max_open_orders": 3, "max_order_qty": D(50)}
    assert limits.account_fields("B") == {"max_open_orders": 3}
    assert limits.symbol_fields("A", "X") == {"max_position_qty": D(100), "max_position_notional": D(9000)}
    made = limits.symbol_row(None, "A", "Y", T0)
    assert made is not None
    assert made.max_position_qty == D(100)
    assert made.max_position_notional is None
    row = limits.account_row(account())
    assert row is not None
    assert row.max_open_orders == 3
    assert row.max_order_notional == D(1000)


@pytest.mark.parametrize(("body", "message"), [
    ({"accounts": {"A": {"daily_loss_limit": 5}}}, "cannot override"),
    ({"accounts": {"A": {"max_order_qty": -1}}}, ">= 0"),
    ({"accounts": {"A": {"max_order_qty": "lots"}}}, "not a number"),
    ({"accounts": {"A": {"symbols": {"X": {"max_order_qty": 1}}}}}, "cannot override"),
    ({"limits": {}}, '"accounts"'),
])
def test_bad_limits_are_refused_with_the_reason(body: Any, message: str) -> None:
    with pytest.raises(LimitsError, match=message):
        LimitOverrides.from_mapping(body)


def test_limits_file_reads_json_and_yaml(tmp_path: Path) -> None:
    body = {"label": "tight", "accounts": {"A": {"max_order_notional": 4000}}}
    (tmp_path / "l.json").write_text(json.dumps(body))
    (tmp_path / "l.yaml").write_text("label: tight\naccounts:\n  A:\n    max_order_notional: 4000\n")
    for name in ("l.json", "l.yaml"):
        limits = load_limits(tmp_path / name)
        assert limits.label == "tight"
        assert limits.account_fields("A") == {"max_order_notional": D(4000)}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RiskToolError, match="bad JSON"):
        load_limits(tmp_path / "bad.json")


# --------------------------------------------------------------------- through the store


def write_streams(settings: Settings, log: Log, sim: Sim) -> None:
    from connectors.registry import Connectors

    conn = Connectors(settings)
    by_stream: dict[str, list[Record]] = defaultdict(list)
    for x in sorted(log.items, key=lambda x: (x.stream, x.offset)):
        by_stream[x.stream].append(x.record)
    by_stream["risk_decisions"] = [d.record for d in sim.decisions]
    by_stream["risk_journal"] = [x.record for x in sim.journal]
    for stream in ("trade_signals", "venue_fills", "accounts", "symbol_limits", "control", "market_data",
                   "risk_decisions", "validated_orders", "risk_journal"):
        w = conn.writer(stream)
        w.write(by_stream.get(stream, []))
        w.close()


def test_replay_and_shadow_read_the_logs_through_the_connectors(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, partitions=1)
    log, sim = Log(), Sim()
    arrival = [log.put("accounts", account(max_order_notional=D(10_000))),
               log.put("market_data", tick("X", 1, "100"))]
    arrival += [log.put("trade_signals", signal(i, 2 + i, qty=q)) for i, q in enumerate(["5", "60", "150"])]
    sim.feed(arrival)
    write_streams(settings, log, sim)
    report = replay(settings)
    assert report.ok
    assert report.checked == 3
    assert report.replayed == 3
    assert [c.limits_version for c in report.limit_changes] == [1]
    late = replay(settings, from_offset=1, to_ts=at(4))
    assert late.checked == 1  # s1 only: s0 is before offset 1, s2 at or after 4 s
    tight = shadow(settings, LimitOverrides.from_mapping({"accounts": {"*": {"max_order_notional": 1000}}}))
    assert [(c.signal_id, c.live, c.shadow, c.rules) for c in tight.changes] == [
        ("s1", "PASS", "FAIL", ("MAX_ORDER_NOTIONAL",))]
    assert dict(tight.by_rule()) == {"MAX_ORDER_NOTIONAL": 1}


def test_explain_unknown_id_is_a_clear_error(tmp_path: Path) -> None:
    from tradeflow.risk_tools import explain

    settings = Settings(data_dir=tmp_path)
    with pytest.raises(RiskToolError, match="no risk decision"):
        explain(settings, "nope")


def test_window_keeps_decisions_by_event_time_and_offset() -> None:
    from tradeflow.risk_tools import Window

    log, sim = Log(), Sim()
    sim.feed([log.put("accounts", account()), log.put("market_data", tick("X", 1, "100"))]
             + [log.put("trade_signals", signal(i, 2 + i)) for i in range(4)])
    out = replayed(recorded(log, sim))
    w = Window(from_ts=at(3), to_ts=at(5))
    assert [r.decision.signal_id for r in out if r in w] == ["s1", "s2"]
    w = Window(from_offset=3)
    assert [r.decision.signal_id for r in out if r in w] == ["s3"]
    assert replace(w, to_offset=3).from_offset == 3


def test_risk_subcommands_parse_and_exit_by_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from tradeflow.risk_tools import add_arguments

    settings = Settings(data_dir=tmp_path, partitions=1)
    log, sim = Log(), Sim()
    sim.feed([log.put("accounts", account()), log.put("market_data", tick("X", 1, "100")),
              log.put("trade_signals", signal(1, 2, qty="20")), log.put("trade_signals", signal(2, 3))])
    write_streams(settings, log, sim)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir")

    parser = argparse.ArgumentParser()
    add_arguments(parser, common)
    args = parser.parse_args(["replay", "--json", "--from-ts", "2026-01-05T14:30:00Z"])
    assert args.risk_func(args, settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["ok"], out["checked"], out["reproduced"]) == (True, 2, 2)
    (tmp_path / "l.json").write_text(json.dumps({"accounts": {"A": {"max_order_notional": 100}}}))
    args = parser.parse_args(["shadow", "--limits", str(tmp_path / "l.json")])
    assert args.risk_func(args, settings) == 0
    assert "1 orders the live limits passed would be refused" in capsys.readouterr().out
    args = parser.parse_args(["explain", "s1"])
    assert args.risk_func(args, settings) == 0
    assert capsys.readouterr().out.startswith("risk decision for signal s1: FAIL")
    # a decision for a signal that is not in the log makes replay exit 1
    from connectors.registry import Connectors

    w = Connectors(settings).writer("risk_decisions")
    w.write([sim.decisions[1].record.model_copy(update={"signal_id": "s9"})])
    w.close()
    args = parser.parse_args(["replay"])
    assert args.risk_func(args, settings) == 1
    assert "have no signal in trade_signals" in capsys.readouterr().out
