"""Job C: portfolio and risk, keyed by account.

Inputs: trade_signals, venue_fills, accounts, symbol_limits, control, market_data.
Outputs: validated_orders, risk_events, risk_decisions, orders, positions_state,
portfolio_state (and dead_letters).

Run it: ``python -m bytewax.run "flows.portfolio_risk:build_flow()"``.

Wiring (all domain logic is in ``operators.portfolio.AccountBook``):

- **By symbol** (``SymbolRouter``): market_data ticks keep the symbol's last mark;
  signals pick up that mark on their way to their account (so PRICE_COLLAR and market
  order notional see the latest price); fills register their account as a holder of
  the symbol, and marks are fanned out to the holders at most once per
  ``portfolio.mark_throttle_ms`` of event time (for unrealised PnL and the kill
  switch).
- **Broadcast** (``ControlRouter``, one key): the accounts changelog tells which
  accounts exist; ``global`` and ``strategy:<id>`` control rows go to every known
  account (and to accounts that appear later); ``account:<id>`` rows go to that
  account.
- **By account** (``BookLogic``): one ``AccountBook`` per account takes every event
  in arrival order and returns the records to publish. Its snapshot is the book's
  plain-data snapshot, so recovery resumes it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.metrics import RISK_CHECKS, serve
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from flows.common import Decoded, TableGate, decode_messages, demux, output, startup_ends
from operators.limits import load_limits
from operators.portfolio import AccountBook, InputPos, Outcome
from operators.replay import LimitOverrides
from schemas import (
    Account,
    Control,
    MarketData,
    Record,
    SymbolLimit,
    TradeSignal,
    VenueFill,
)

JOB = "portfolio_risk"
MAX_HELD = 1000
"""Signals held per account while waiting for its first accounts row."""
OUTPUTS = [
    "risk_decisions",
    "validated_orders",
    "risk_events",
    "orders",
    "positions_state",
    "portfolio_state",
]


def _pos(d: Decoded[Any]) -> InputPos:
    return InputPos(d.stream, d.partition, d.offset)


@dataclass(frozen=True)
class MarkEvent:
    """A throttled mark of one symbol for one account."""

    symbol: str
    price: Decimal
    ts: datetime
    pos: InputPos


@dataclass(frozen=True)
class SignalEvent:
    """A signal with the last mark of its symbol when it was routed."""

    signal: Decoded[TradeSignal]
    mark: MarkEvent | None


@dataclass(frozen=True)
class ControlReady:
    """The control table was read up to its start-up end: signals may be decided."""


BookEvent = SignalEvent | MarkEvent | ControlReady | Decoded[Any]


# --------------------------------------------------------------------- by symbol


@dataclass
class _SymbolState:
    last: MarkEvent | None = None
    fanned_out: datetime | None = None
    holders: list[str] = field(default_factory=list)


class SymbolRouter(op.StatefulLogic[Decoded[Any], tuple[str, BookEvent], _SymbolState]):
    """Keep a symbol's last mark; attach it to signals; fan marks out to holders."""

    def __init__(self, throttle: timedelta, resume: _SymbolState | None) -> None:
        self.throttle = throttle
        self.state = resume if resume is not None else _SymbolState()

    @override
    def on_item(self, value: Decoded[Any]) -> tuple[list[tuple[str, BookEvent]], bool]:
        rec = value.record
        st = self.state
        if isinstance(rec, MarketData):
            st.last = MarkEvent(rec.symbol, rec.price, rec.ts, _pos(value))
            if st.fanned_out is not None and rec.ts - st.fanned_out < self.throttle:
                return [], False
            st.fanned_out = rec.ts
            return [(acct, st.last) for acct in st.holders], False
        if isinstance(rec, TradeSignal):
            return [(rec.account, SignalEvent(value, st.last))], False
        if isinstance(rec, VenueFill) and rec.account not in st.holders:
            st.holders.append(rec.account)
            if st.last is not None:  # mark the new holder right away
                return [(rec.account, st.last)], False
        return [], False

    @override
    def snapshot(self) -> _SymbolState:
        st = self.state
        return _SymbolState(st.last, st.fanned_out, list(st.holders))


# --------------------------------------------------------------------- broadcast


@dataclass
class _ControlState:
    gate: TableGate
    accounts: list[str] = field(default_factory=list)
    broadcasts: dict[str, Decoded[Control]] = field(default_factory=dict)


class ControlRouter(op.StatefulLogic[Decoded[Any], tuple[str, BookEvent], _ControlState]):
    """Route account rows to their account and control rows to their scope.

    Once the control table has been read up to where it ended at start-up, every
    account gets a ``ControlReady`` (books decide no signal before it), so a HALTED
    row written before the job started always wins over a signal that overtakes it.
    """

    def __init__(self, control_ends: dict[int, int], resume: _ControlState | None) -> None:
        self.state = resume if resume is not None else _ControlState(TableGate.at(control_ends))

    @override
    def on_item(self, value: Decoded[Any]) -> tuple[list[tuple[str, BookEvent]], bool]:
        rec = value.record
        st = self.state
        out: list[tuple[str, BookEvent]] = []
        if isinstance(rec, Account):
            if rec.account not in st.accounts:
                st.accounts.append(rec.account)
                out += [(rec.account, c) for c in st.broadcasts.values()]
                if st.gate.open:
                    out.append((rec.account, ControlReady()))
            return [*out, (rec.account, value)], False
        if not isinstance(rec, Control):
            raise TypeError(f"the control router got {type(rec).__name__}")
        was_open = st.gate.open
        st.gate.seen(value.partition, value.offset)
        if rec.scope.startswith("account:"):
            out.append((rec.scope.removeprefix("account:"), value))
        else:
            st.broadcasts[rec.scope] = value
            out += [(acct, value) for acct in st.accounts]
        if st.gate.open and not was_open:
            out += [(acct, ControlReady()) for acct in st.accounts]
        return out, False

    @override
    def snapshot(self) -> _ControlState:
        st = self.state
        return _ControlState(TableGate(dict(st.gate.pending)), list(st.accounts), dict(st.broadcasts))


# --------------------------------------------------------------------- by account


class BookLogic(op.StatefulBatchLogic[tuple[str, BookEvent], tuple[str, Record], dict[str, Any]]):
    """One ``AccountBook``; every event in, the records to publish out.

    Values arrive as ``(account, event)`` because Bytewax builds the logic without
    telling it its key: the first event names the account of a new book.

    Signals that arrive before the account's first ``accounts`` row, or before the
    control table was read to its start-up end (``ControlReady``), are held: the inputs
    are separate streams, so at start-up a signal can overtake the rows that set the
    account up or halt it. They are decided once both arrived. Held signals are decided
    anyway, as for an unknown account, at the end of input or once more than
    ``MAX_HELD`` wait.
    """

    def __init__(self, resume: dict[str, Any] | None) -> None:
        self.book = AccountBook.from_snapshot(resume["book"]) if resume else None
        self.held: list[SignalEvent] = list(resume["held"]) if resume else []
        self.ready: bool = bool(resume["ready"]) if resume else False

    @override
    def on_batch(
        self, values: list[tuple[str, BookEvent]]
    ) -> tuple[list[tuple[str, Record]], bool]:
        out: list[tuple[str, Record]] = []
        for account, event in in_source_order(values):
            if self.book is None:
                self.book = AccountBook(account)
            book = self.book
            if isinstance(event, ControlReady):
                self.ready = True
            elif isinstance(event, SignalEvent) and not (self.ready and book.account is not None):
                self.held.append(event)
                if len(self.held) > MAX_HELD:
                    out.extend(records_of(self._apply(book, self.held.pop(0))))
                continue
            else:
                out.extend(records_of(self._apply(book, event)))
            if self.held and self.ready and book.account is not None:
                out.extend(self._release())
        return out, False

    @override
    def on_eof(self) -> tuple[list[tuple[str, Record]], bool]:
        return self._release(), False

    def _release(self) -> list[tuple[str, Record]]:
        out: list[tuple[str, Record]] = []
        if self.book is not None:
            for event in self.held:
                out.extend(records_of(self._apply(self.book, event)))
        self.held = []
        return out

    @staticmethod
    def _apply(book: AccountBook, event: BookEvent) -> Outcome:
        if isinstance(event, MarkEvent):
            return book.on_mark(event.symbol, event.price, event.ts, pos=event.pos)
        if isinstance(event, SignalEvent):
            outcome = Outcome()
            if event.mark is not None:
                m = event.mark
                outcome = book.on_mark(m.symbol, m.price, m.ts, pos=m.pos)
            return outcome + book.on_signal(event.signal.record, pos=_pos(event.signal))
        if isinstance(event, ControlReady):
            return Outcome()
        rec = event.record
        if isinstance(rec, VenueFill):
            return book.on_fill(rec, pos=_pos(event))
        if isinstance(rec, Account):
            return book.on_account(rec, pos=_pos(event))
        if isinstance(rec, SymbolLimit):
            return book.on_symbol_limit(rec, pos=_pos(event))
        if isinstance(rec, Control):
            return book.on_control(rec, pos=_pos(event))
        raise TypeError(f"Job C cannot apply {type(rec).__name__}")

    @override
    def snapshot(self) -> dict[str, Any]:
        if self.book is None:
            raise RuntimeError("an account book without any event cannot exist")
        return {"book": self.book.snapshot(), "held": list(self.held), "ready": self.ready}


def in_source_order(values: list[tuple[str, BookEvent]]) -> list[tuple[str, BookEvent]]:
    """Put a batch's signals back in the order of their stream; leave other events in place.

    Signals reach a book through the symbol router, which Bytewax runs key by key
    (symbol by symbol) over each batch, so one account's signals for different symbols
    arrive grouped by symbol, and how depends on how the input was batched (timing, a
    restart from a snapshot). The signals keep the slots they arrived in, refilled in
    (partition, offset) order. One worker hands a book all the router's output of a
    batch at once, so this restores stream order there; with several workers the
    router's output can split across batches (see docs/risk-audit.md).
    """
    slots = [i for i, (_, event) in enumerate(values) if isinstance(event, SignalEvent)]
    if len(slots) < 2:
        return values
    ordered = sorted((values[i] for i in slots), key=_signal_position)
    out = list(values)
    for i, value in zip(slots, ordered, strict=True):
        out[i] = value
    return out


def _signal_position(value: tuple[str, BookEvent]) -> tuple[int, int]:
    event = value[1]
    if not isinstance(event, SignalEvent):
        raise TypeError(f"not a signal: {type(event).__name__}")
    return (event.signal.partition, event.signal.offset)


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
    throttle = timedelta(milliseconds=settings.portfolio.mark_throttle_ms)
    candidate = load_limits(Path(shadow_limits)) if shadow_limits else None
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
    routed = op.stateful("symbol_router", by_symbol, lambda r: SymbolRouter(throttle, r))

    broadcast = op.key_on("one_key", op.merge("ops_inputs", accounts, control), lambda _: "all")
    ends = startup_ends(conn, "control")
    controlled = op.stateful("control_router", broadcast, lambda r: ControlRouter(ends, r))

    direct = op.map(
        "direct", op.merge("account_inputs", fills, limits), lambda d: (d.record.account, d)
    )
    events = op.merge(
        "book_events", op.key_rm("unkey_routed", routed), op.key_rm("unkey_controlled", controlled), direct
    )
    by_account = op.key_on("by_account", events, lambda kv: kv[0])
    results = op.stateful_batch("books", by_account, BookLogic)
    outputs = demux("publish", op.key_rm("unkey_books", results), OUTPUTS)
    if candidate is not None:
        output("risk_decisions", outputs["risk_decisions"], conn, "shadow_decisions", job=JOB)
        op.output("dead_letters", op.merge("all_letters", *letters), conn.sink("dead_letters"))
        return flow
    for name in OUTPUTS:
        output(name, outputs[name], conn, name, job=JOB)
    output("dead_letters", op.merge("all_letters", *letters), conn, "dead_letters", job=JOB)
    return flow
