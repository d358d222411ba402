"""Job C: portfolio and risk, keyed by account.

Inputs: trade_signals, venue_fills, accounts, symbol_limits, control, market_data.
Outputs: validated_orders, risk_events, risk_decisions, orders, positions_state,
portfolio_state, dead_letters, and the input journal ``risk_journal``.

Run it: ``python -m bytewax.run "flows.portfolio_risk:build_flow()"``.

Wiring (the decisions live in ``operators.portfolio.AccountBook``, the sequencing
rules in ``operators.sequencing``):

- **By symbol** (``SymbolRouter``): market_data ticks go into the symbol's
  ``TickHistory``; a signal waits until its symbol's market data reached the
  signal's event time and is priced at the last tick at or before it; fills register
  their account as a holder of the symbol, and marks are fanned out to the holders at
  most once per ``portfolio.mark_throttle_ms`` of event time.
- **One key** (``GateRouter``): the accounts, symbol_limits and control changelogs
  and every signal. Signals wait until the three tables were read up to where they
  ended at start-up (fail closed), and for their account's row (at most
  ``portfolio.unknown_account_wait_s``); ``global`` and ``strategy:<id>`` control rows
  go to every known account, ``account:<id>`` rows to theirs.
- **By account** (``BookLogic``): drops replays (by input position and by signal id),
  appends what it takes to the journal, then applies the journal entries to the
  ``AccountBook``. A book resumes from its snapshot and then from the journal, so its
  outputs are a fold of its journal whatever the timing, batching or restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.journal import InputJournal
from connectors.registry import Connectors
from flows.common import Decoded, decode_messages, demux, output, startup_ends
from operators.portfolio import AccountBook, InputPos, Outcome, event_id_for
from operators.replay import LimitOverrides
from operators.sequencing import (
    InputPositions,
    SignalCheck,
    SignalGate,
    SignalIds,
    TableGate,
    Tick,
    TickHistory,
    apply_entry,
    digest,
    entry_for,
    record_of,
)
from schemas import (
    Account,
    Control,
    DeadLetter,
    JournalEntry,
    JournalKind,
    MarketData,
    Record,
    RiskEvent,
    Severity,
    SymbolLimit,
    TradeSignal,
    VenueFill,
    encode,
)
from tradeflow.metrics import RISK_CHECKS, serve
from tradeflow.risk_tools import load_limits
from tradeflow.settings import PortfolioSettings, Settings, load_settings

JOB = "portfolio_risk"
OUTPUTS = [
    "risk_decisions",
    "validated_orders",
    "risk_events",
    "orders",
    "positions_state",
    "portfolio_state",
    "dead_letters",
]
TABLES = ("accounts", "symbol_limits", "control")
"""The tables Job C reads to their start-up ends before deciding any signal."""


def _pos(d: Decoded[Any]) -> InputPos:
    return InputPos(d.stream, d.partition, d.offset)


@dataclass(frozen=True)
class MarkEvent:
    """A throttled mark of one symbol for one account."""

    tick: Tick


@dataclass(frozen=True)
class SignalEvent:
    """A signal with the last tick of its symbol at or before its event time."""

    signal: Decoded[TradeSignal]
    mark: Tick | None


BookEvent = SignalEvent | MarkEvent | Decoded[Any]


# --------------------------------------------------------------------- by symbol


@dataclass
class _SymbolState:
    history: TickHistory = field(default_factory=TickHistory)
    fanned_out: datetime | None = None
    holders: list[str] = field(default_factory=list)
    waiting: list[tuple[Decoded[TradeSignal], float]] = field(default_factory=list)


class SymbolRouter(op.StatefulLogic[Decoded[Any], tuple[str, BookEvent], _SymbolState]):
    """Price signals at event time; fan marks out to the symbol's holders."""

    def __init__(self, cfg: PortfolioSettings, resume: _SymbolState | None) -> None:
        self.throttle = timedelta(milliseconds=cfg.mark_throttle_ms)
        self.wait_s = cfg.mark_wait_s
        self.state = resume if resume is not None else _SymbolState()

    @override
    def on_item(self, value: Decoded[Any]) -> tuple[list[tuple[str, BookEvent]], bool]:
        rec = value.record
        st = self.state
        if isinstance(rec, MarketData):
            tick = Tick(rec.symbol, rec.price, rec.ts, value.partition, value.offset)
            st.history.add(tick, rec.wm)
            out = self._release(time.monotonic())
            if st.fanned_out is not None and rec.ts - st.fanned_out < self.throttle:
                return out, False
            st.fanned_out = rec.ts
            return out + [(acct, MarkEvent(tick)) for acct in st.holders], False
        if isinstance(rec, TradeSignal):
            st.waiting.append((value, time.monotonic()))
            return self._release(time.monotonic()), False
        if isinstance(rec, VenueFill) and rec.account not in st.holders:
            st.holders.append(rec.account)
            last = st.history.ticks[-1] if st.history.ticks else None
            if last is not None:  # mark the new holder right away
                return [(rec.account, MarkEvent(last))], False
        return [], False

    def _release(self, now: float, *, everything: bool = False) -> list[tuple[str, BookEvent]]:
        st = self.state
        out: list[tuple[str, BookEvent]] = []
        keep: list[tuple[Decoded[TradeSignal], float]] = []
        for d, since in st.waiting:
            if everything or st.history.settled(d.record.ts) or now - since >= self.wait_s:
                out.append((d.record.account, SignalEvent(d, st.history.mark_at(d.record.ts))))
            else:
                keep.append((d, since))
        st.waiting = keep
        return out

    @override
    def notify_at(self) -> datetime | None:
        if not self.state.waiting:
            return None
        due = min(since for _, since in self.state.waiting) + self.wait_s
        return datetime.now(UTC) + timedelta(seconds=max(0.0, due - time.monotonic()))

    @override
    def on_notify(self) -> tuple[list[tuple[str, BookEvent]], bool]:
        return self._release(time.monotonic()), False

    @override
    def on_eof(self) -> tuple[list[tuple[str, BookEvent]], bool]:
        return self._release(time.monotonic(), everything=True), False

    @override
    def snapshot(self) -> _SymbolState:
        st = self.state
        return _SymbolState(st.history.copy(), st.fanned_out, list(st.holders), list(st.waiting))


# --------------------------------------------------------------------- one key


@dataclass
class _GateState:
    gate: SignalGate[SignalEvent]
    accounts: list[str] = field(default_factory=list)
    broadcasts: dict[str, Decoded[Control]] = field(default_factory=dict)


class GateRouter(op.StatefulLogic[Any, tuple[str, BookEvent], _GateState]):
    """Route table rows to their accounts; let signals pass once Job C may decide them."""

    def __init__(self, ends: dict[str, dict[int, int]], wait_s: float, resume: _GateState | None) -> None:
        if resume is None:
            gates = {name: TableGate.at(e) for name, e in ends.items()}
            resume = _GateState(SignalGate(gates, wait_s))
        self.state = resume

    @override
    def on_item(self, value: Any) -> tuple[list[tuple[str, BookEvent]], bool]:
        st = self.state
        now = time.monotonic()
        if isinstance(value, SignalEvent):
            sig = value.signal.record
            return _signals(st.gate.on_signal(value, sig.account, now)), False
        rec = value.record
        out: list[tuple[str, BookEvent]] = []
        if isinstance(rec, Account):
            if rec.account not in st.accounts:
                st.accounts.append(rec.account)
                stored = sorted(st.broadcasts.values(), key=lambda d: (d.partition, d.offset))
                out += [(rec.account, c) for c in stored]
            out.append((rec.account, value))
            account: str | None = rec.account
        elif isinstance(rec, SymbolLimit):
            out.append((rec.account, value))
            account = None
        elif isinstance(rec, Control):
            if rec.scope.startswith("account:"):
                out.append((rec.scope.removeprefix("account:"), value))
            else:
                st.broadcasts[rec.scope] = value
                out += [(acct, value) for acct in st.accounts]
            account = None
        else:
            raise TypeError(f"the gate router got {type(rec).__name__}")
        released = st.gate.on_row(value.stream, value.partition, value.offset, account, now)
        return out + _signals(released), False

    @override
    def notify_at(self) -> datetime | None:
        due = self.state.gate.next_due()
        if due is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=max(0.0, due - time.monotonic()))

    @override
    def on_notify(self) -> tuple[list[tuple[str, BookEvent]], bool]:
        return _signals(self.state.gate.release(time.monotonic())), False

    @override
    def on_eof(self) -> tuple[list[tuple[str, BookEvent]], bool]:
        return _signals(self.state.gate.release(time.monotonic(), everything=True)), False

    @override
    def snapshot(self) -> _GateState:
        st = self.state
        return _GateState(st.gate.copy(), list(st.accounts), dict(st.broadcasts))


def _signals(events: list[SignalEvent]) -> list[tuple[str, BookEvent]]:
    return [(e.signal.record.account, e) for e in events]


# --------------------------------------------------------------------- by account


class BookLogic(op.StatefulBatchLogic[tuple[str, BookEvent], tuple[str, Record], dict[str, Any]]):
    """One account: take each input once, journal it, then apply it to the book.

    Values arrive as ``(account, event)`` because Bytewax builds the logic without
    telling it its key: the first event names the account of a new book. Before its
    first input a book applies the journal entries of its account past its snapshot
    (all of them for a book without one): inputs that a crashed run had applied, in
    the order it applied them.
    """

    def __init__(self, journal: InputJournal | None, resume: dict[str, Any] | None) -> None:
        self.journal = journal
        self.book = AccountBook.from_snapshot(resume["book"]) if resume else None
        self.seq: int = resume["seq"] if resume else 0
        self.positions = InputPositions(dict(resume["positions"]) if resume else {})
        self.ids = SignalIds(dict(resume["ids"]) if resume else {})
        self.caught_up = journal is None

    @override
    def on_batch(
        self, values: list[tuple[str, BookEvent]]
    ) -> tuple[list[tuple[str, Record]], bool]:
        if self.book is None:
            self.book = AccountBook(values[0][0])
        out = self._catch_up()
        entries: list[JournalEntry] = []
        for _, event in values:
            entry = self._take(event, out)
            if entry is not None:
                entries.append(entry)
        if self.journal is not None:
            self.journal.append(entries)  # written ahead of every output they cause
        for entry in entries:
            out += records_of(apply_entry(self.book, entry))
        return out, False

    @override
    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) if not self.caught_up and self.book is not None else None

    @override
    def on_notify(self) -> tuple[list[tuple[str, Record]], bool]:
        return self._catch_up(), False

    @override
    def on_eof(self) -> tuple[list[tuple[str, Record]], bool]:
        return self._catch_up(), False

    def _catch_up(self) -> list[tuple[str, Record]]:
        if self.caught_up or self.book is None or self.journal is None:
            return []
        self.caught_up = True
        out: list[tuple[str, Record]] = []
        for entry in self.journal.after(self.book.account_id, self.seq):
            self.positions.take(entry.stream, entry.partition, entry.offset, _sub_of(entry))
            if entry.kind is JournalKind.SIGNAL:
                self.ids.check(record_of(entry))  # type: ignore[arg-type]
            self.seq = entry.seq
            out += records_of(apply_entry(self.book, entry))
        return out

    def _take(self, event: BookEvent, out: list[tuple[str, Record]]) -> JournalEntry | None:
        """Return the journal entry of an input, or None for a replay or a conflict."""
        book = self.book
        assert book is not None  # noqa: S101 - set by on_batch
        mark = None
        rec: Record | Tick
        if isinstance(event, MarkEvent):
            t = event.tick
            pos, sub, rec = InputPos("market_data", t.partition, t.offset), t.symbol, t
        elif isinstance(event, SignalEvent):
            d = event.signal
            pos, sub, rec, mark = _pos(d), d.record.symbol, d.record, event.mark
        else:
            pos, sub, rec = _pos(event), "", event.record
        if not self.positions.take(pos.stream, pos.partition, pos.offset, sub):
            return None
        if isinstance(rec, TradeSignal):
            check = self.ids.check(rec)
            if check is SignalCheck.REPLAY:
                return None
            if check is SignalCheck.CONFLICT:
                out.extend(_conflict(book.account_id, rec, pos))
                return None
        self.seq += 1
        return entry_for(book.account_id, self.seq, pos, rec, mark=mark)

    @override
    def snapshot(self) -> dict[str, Any]:
        if self.book is None:
            raise RuntimeError("an account book without any event cannot exist")
        return {
            "book": self.book.snapshot(),
            "seq": self.seq,
            "positions": dict(self.positions.last),
            "ids": dict(self.ids.seen),
        }


def _sub_of(entry: JournalEntry) -> str:
    if entry.kind is JournalKind.MARK and entry.mark is not None:
        return entry.mark.symbol
    if entry.kind is JournalKind.SIGNAL and entry.record is not None:
        return str(entry.record["symbol"])
    return ""


def _conflict(account: str, signal: TradeSignal, pos: InputPos) -> list[tuple[str, Record]]:
    """Refuse a signal id seen before with other contents: a dead letter, a CRITICAL event."""
    why = f"signal id {signal.signal_id} was seen before with other contents; not decided again"
    letter = DeadLetter(
        source_stream=pos.stream, partition=pos.partition, offset=pos.offset, source_key=account,
        reason=why, payload=encode(signal).decode()[:4000], job=JOB, ts=datetime.now(UTC),
    )
    event = RiskEvent(
        event_id=event_id_for("CONFLICT", account, signal.signal_id, digest(signal)),
        account=account, rule="SIGNAL_ID_CONFLICT", severity=Severity.CRITICAL, message=why,
        symbol=signal.symbol, signal_id=signal.signal_id,
        values={"partition": str(pos.partition), "offset": str(pos.offset)}, ts=signal.ts,
    )
    return [("dead_letters", letter), ("risk_events", event)]


def records_of(outcome: Outcome) -> list[tuple[str, Record]]:
    """Return an outcome's records tagged with the stream each goes to."""
    out: list[tuple[str, Record]] = []
    if outcome.decision is not None:
        out.append(("risk_decisions", outcome.decision))
        for rule in outcome.decision.rules:
            RISK_CHECKS.labels(rule.rule, "pass" if rule.passed else "fail").inc()
    out += [("validated_orders", o) for o in outcome.orders]
    out += [("risk_events", e) for e in outcome.events]
    out += [("orders", s) for s in outcome.order_states]
    out += [("positions_state", p) for p in outcome.positions]
    if outcome.portfolio is not None:
        out.append(("portfolio_state", outcome.portfolio))
    return out


# --------------------------------------------------------------------- wiring


def _decoded(
    flow: Dataflow, conn: Connectors, stream: str, model: type[Record], letters: list[Stream[Any]]
) -> Stream[Decoded[Any]]:
    raw = op.input(stream, flow, conn.source(stream))
    dec = decode_messages(stream, raw, model, job=JOB)
    letters.append(dec.errs)
    return dec.oks


def _shadowed(step_id: str, up: Stream[Decoded[Any]], limits: LimitOverrides) -> Stream[Decoded[Any]]:
    def swap(d: Decoded[Any]) -> Decoded[Any]:
        rec = d.record
        row = (
            limits.account_row(rec)
            if isinstance(rec, Account)
            else limits.symbol_row(rec, rec.account, rec.symbol, rec.ts)
        )
        return Decoded(row, d.stream, d.partition, d.offset)

    return op.map(step_id, up, swap)


def build_flow(settings: Settings | None = None, shadow_limits: str | None = None) -> Dataflow:
    """Build Job C with the given settings (default: from the environment).

    With ``shadow_limits`` (a limits file, docs/risk-audit.md) build a shadow instance:
    the same inputs with the candidate limits in the accounts and symbol_limits rows,
    decisions written to ``shadow_decisions`` and nothing else (no order is sent).
    Orders only the shadow passed never fill, so they stay open and keep their
    reservation; fills of orders only the live Job C passed are reported unknown.
    """
    settings = settings or load_settings()
    conn = Connectors(settings)
    serve(settings.metrics_port)
    cfg = settings.portfolio
    candidate = load_limits(Path(shadow_limits)) if shadow_limits else None
    journal = InputJournal(conn) if candidate is None and cfg.journal else None
    flow = Dataflow(JOB if candidate is None else f"{JOB}_shadow")
    letters: list[Stream[Any]] = []

    signals = _decoded(flow, conn, "trade_signals", TradeSignal, letters)
    fills = _decoded(flow, conn, "venue_fills", VenueFill, letters)
    accounts = _decoded(flow, conn, "accounts", Account, letters)
    limits = _decoded(flow, conn, "symbol_limits", SymbolLimit, letters)
    if candidate is not None:
        accounts = _shadowed("shadow_accounts", accounts, candidate)
        limits = _shadowed("shadow_symbol_limits", limits, candidate)
    control = _decoded(flow, conn, "control", Control, letters)
    ticks = _decoded(flow, conn, "market_data", MarketData, letters)

    by_symbol = op.key_on(
        "by_symbol", op.merge("symbol_inputs", ticks, signals, fills), lambda d: d.record.symbol
    )
    routed = op.key_rm(
        "unkey_routed", op.stateful("symbol_router", by_symbol, lambda r: SymbolRouter(cfg, r))
    )
    split = op.branch("priced_signals", routed, lambda kv: isinstance(kv[1], SignalEvent))

    ends = {name: startup_ends(conn, name) for name in TABLES}
    priced = op.map("signal_only", split.trues, lambda kv: kv[1])
    gate_inputs = op.merge("gate_inputs", accounts, limits, control, priced)
    gated = op.stateful(
        "gate_router",
        op.key_on("one_key", gate_inputs, lambda _: "all"),
        lambda r: GateRouter(ends, cfg.unknown_account_wait_s, r),
    )
    direct = op.map("direct", fills, lambda d: (d.record.account, d))
    events = op.merge("book_events", split.falses, op.key_rm("unkey_gated", gated), direct)
    by_account = op.key_on("by_account", events, lambda kv: kv[0])
    results = op.stateful_batch("books", by_account, lambda r: BookLogic(journal, r))
    outputs = demux("publish", op.key_rm("unkey_books", results), OUTPUTS)
    all_letters = op.merge("all_letters", outputs["dead_letters"], *letters)
    if candidate is not None:
        output("risk_decisions", outputs["risk_decisions"], conn, "shadow_decisions", job=JOB)
        op.output("dead_letters", all_letters, conn.sink("dead_letters"))
        return flow
    for name in OUTPUTS[:-1]:
        output(name, outputs[name], conn, name, job=JOB)
    output("dead_letters", all_letters, conn, "dead_letters", job=JOB)
    return flow


flow = build_flow()
