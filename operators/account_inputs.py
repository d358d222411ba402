"""Job C's two keyed steps as pure engines: the one router, and each account's inputs.

``flows/portfolio_risk.py`` wires them into Bytewax; the sequencing rules themselves
(table gate, tick history, signal holding, once-only positions, the journal fold) are
in ``operators.sequencing``.

- ``route_input`` (the one key): hands a decoded input to the ``InputRouter`` by its
  type. A sharded Job C passes ``owns``: table rows of accounts another shard owns only
  move the fail-closed gate.
- ``AccountInputs`` (per account): takes each input once (by position, and signals by
  id), turns it into a journal entry, and applies journal entries to the account's
  ``AccountBook``. The caller writes the entries to the journal before it publishes
  what applying them gave, so an account's outputs are a fold of its journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from operators.eventtime import BookQueue
from operators.portfolio import AccountBook, InputPos, Outcome, event_id_for
from operators.sequencing import (
    Clock,
    Decoded,
    InputPositions,
    InputRouter,
    Priced,
    Routed,
    SignalCheck,
    SignalIds,
    Tick,
    apply_entry,
    digest,
    entry_for,
    record_of,
)
from schemas import (
    WILDCARD,
    Account,
    Control,
    DeadLetter,
    Instrument,
    JournalEntry,
    JournalKind,
    MarketData,
    Progress,
    Record,
    RiskEvent,
    Route,
    ScopeKind,
    Severity,
    SymbolLimit,
    TradeSignal,
    Venue,
    VenueFill,
    encode,
)

BookEvent = Tick | Priced[Decoded[TradeSignal]] | Decoded[Any] | Clock
"""What reaches a book: a tick to mark at, a priced signal, a fill or table row, or (event-time
mode) the router's ``Clock``."""

Tagged = tuple[str, Record]
"""A record with the name of the stream it goes to."""

PAYLOAD_CHARS = 4000
"""Dead letters keep at most this much of the refused record."""


def route_input(
    router: InputRouter[Decoded[TradeSignal]], value: Decoded[Any], now: float,
    owns: Callable[[str], bool] | None = None,
) -> list[Routed]:
    """Hand one decoded input of Job C to the router; return what it releases."""
    rec = value.record
    if isinstance(rec, DeadLetter):  # a table row that did not decode: read all the same
        return router.on_unreadable(value.stream, value.partition, value.offset, now)
    if router.clock is not None and isinstance(rec, MarketData | TradeSignal | VenueFill):
        router.clock.on_read(value.stream, value.partition, value.offset)
    if isinstance(rec, Progress):
        return router.on_progress(rec, now)
    if isinstance(rec, MarketData):
        return router.on_tick(Tick(rec.symbol, rec.price, rec.ts, value.partition, value.offset), rec.wm, now)
    if isinstance(rec, TradeSignal):
        return router.on_signal(value, rec.account, rec.symbol, rec.ts, now)
    if isinstance(rec, VenueFill):
        return router.on_fill(rec.account, rec.symbol, value, now)
    if isinstance(rec, Account | SymbolLimit | Control | Instrument | Route | Venue):
        account, broadcast = _audience(rec)
        if owns is not None and account is not None and not owns(account):
            gate = router.tables.get(value.stream)
            if gate is not None:  # read to its start-up end still counts, for the fail-closed gate
                gate.seen(value.partition, value.offset)
            return router.release(now)
        return router.on_table_row(value.stream, value.partition, value.offset, value,
                                   account=account, broadcast=broadcast, now=now)
    raise TypeError(f"Job C's router got {type(rec).__name__}")


def _audience(
    rec: Account | SymbolLimit | Control | Instrument | Route | Venue,
) -> tuple[str | None, str | None]:
    """Return who a table row is for: ``(account, None)`` or ``(None, broadcast key)``.

    Every book gets every instruments row (so a symbol without one is unknown to a book
    exactly when the table has rows, from its journal alone), every venues row, and the
    routes of any account (``*``).
    """
    if isinstance(rec, Account | SymbolLimit):
        return rec.account, None
    if isinstance(rec, Control):
        target = rec.target
        return (target.name, None) if target.kind is ScopeKind.ACCOUNT else (None, rec.scope)
    if isinstance(rec, Route):
        return (None, f"routes:{rec.key()}") if rec.account == WILDCARD else (rec.account, None)
    if isinstance(rec, Instrument):
        return None, f"instruments:{rec.symbol}"
    return None, f"venues:{rec.venue}"


class AccountInputs:
    """One account: each input taken once, as a journal entry, applied to its book."""

    def __init__(
        self, account: str, resume: dict[str, Any] | None = None, *, event_time: bool = False
    ) -> None:
        """Start an account, or resume it from a ``snapshot()``.

        ``event_time``: signals, fills and marks wait in a ``BookQueue`` and are taken in
        event-time order (``step``); a replay is then recognised by its id (signal id,
        fill exec id), as inputs are no longer taken in stream order.
        """
        self.book = AccountBook.from_snapshot(resume["book"]) if resume else AccountBook(account)
        self.seq: int = resume["seq"] if resume else 0
        """The journal sequence number of the last entry taken."""
        self.positions = InputPositions(dict(resume["positions"]) if resume else {})
        self.ids = SignalIds(dict(resume["ids"]) if resume else {})
        queue = resume.get("queue") if resume else None
        self.queue: BookQueue | None = queue if queue is not None else (BookQueue() if event_time else None)
        self._taken: dict[int, Record] = {}
        """The input record of each entry taken and not applied yet, by seq: ``apply`` uses it
        instead of validating the entry's copy of its fields again (what ``record_of``
        does for an entry read back from the journal, which gives an equal record)."""

    @property
    def account(self) -> str:
        """Return the account id."""
        return self.book.account_id

    def take(self, event: BookEvent, job: str, now: datetime) -> tuple[JournalEntry | None, list[Tagged]]:
        """Return the journal entry of an input (None for a replay), and any refusal records.

        A signal id seen before with other contents is not decided again: a dead letter
        and a CRITICAL ``SIGNAL_ID_CONFLICT`` event instead.
        """
        mark = newest = None
        rec: Record | Tick
        if isinstance(event, Clock):
            raise TypeError("a Clock is not an input to take")
        if isinstance(event, Tick):
            pos, sub, rec = InputPos("market_data", event.partition, event.offset), event.symbol, event
        elif isinstance(event, Priced):
            d = event.item
            pos, sub, rec, mark, newest = _pos(d), d.record.symbol, d.record, event.mark, event.newest
        else:
            pos, sub, rec = _pos(event), "", event.record
        if self.queue is not None and not isinstance(rec, Tick):
            sub = _id_of(rec) or sub
        if not self.positions.take(pos.stream, pos.partition, pos.offset, sub):
            return None, []
        if isinstance(rec, TradeSignal):
            check = self.ids.check(rec)
            if check is SignalCheck.REPLAY:
                return None, []
            if check is SignalCheck.CONFLICT:
                return None, conflict(self.account, rec, pos, job, now)
        self.seq += 1
        if not isinstance(rec, Tick):
            self._taken[self.seq] = rec
        return entry_for(self.account, self.seq, pos, rec, mark=mark, market_ts=newest), []

    def take_all(
        self, events: Iterable[BookEvent], job: str, now: datetime
    ) -> tuple[list[JournalEntry], list[Tagged]]:
        """``take`` each event; return the journal entries and the refusal records."""
        entries: list[JournalEntry] = []
        refused: list[Tagged] = []
        for event in events:
            entry, out = self.take(event, job, now)
            refused += out
            if entry is not None:
                entries.append(entry)
        return entries, refused

    def step(self, event: BookEvent, job: str, now: datetime) -> tuple[list[JournalEntry], list[Tagged]]:
        """Event-time mode: take one event; return the entries taken and all their records.

        Table rows are taken at once (in arrival order); signals, fills and marks wait
        in the queue, which releases them one at a time (an order the book sends holds
        back what comes after it until a venue took it), each taken and applied.
        """
        if self.queue is None:
            raise RuntimeError("step() is for event-time mode; use take_all()")
        entries: list[JournalEntry] = []
        out: list[Tagged] = []
        if isinstance(event, Clock):
            self.queue.on_clock(event.frontier, event.taken)
        elif isinstance(event, Tick | Priced) or isinstance(event.record, VenueFill):
            ts, kind, ident, pos = _queued(event)
            self.queue.hold(ts, kind, ident, pos, event)
        else:
            self._take_and_apply(event, job, now, entries, out)
        while self.queue.ready():
            self._take_and_apply(self.queue.pop(), job, now, entries, out)
        return entries, out

    def _take_and_apply(
        self, event: BookEvent, job: str, now: datetime, entries: list[JournalEntry], out: list[Tagged]
    ) -> None:
        entry, refused = self.take(event, job, now)
        out += refused
        if entry is not None:
            entries.append(entry)
            out += self.apply(entry, job)

    def apply_all(self, entries: Iterable[JournalEntry], job: str = "portfolio_risk") -> list[Tagged]:
        """Apply a batch of entries in order; a run of marks writes each row it changes once.

        The marks of a run (entries with no other kind between them) leave their position
        and portfolio rows to the end of the run, each key's row as of its last mark
        (``AccountBook.on_mark`` with ``defer``): the rows the marks applied one by one
        would have left last, so the tables hold the same, and a tick no longer costs a
        row per account holding its symbol (issue 20). The kill switch still sees every
        mark.
        """
        out: list[Tagged] = []
        last_mark: JournalEntry | None = None
        for entry in entries:
            if entry.kind is JournalKind.MARK:
                last_mark = entry
                out += self.apply(entry, job, defer_marks=True)
                continue
            if last_mark is not None:
                out += self._deferred_rows(last_mark, job)
                last_mark = None
            out += self.apply(entry, job)
        if last_mark is not None:
            out += self._deferred_rows(last_mark, job)
        return out

    def _deferred_rows(self, last_mark: JournalEntry, job: str) -> list[Tagged]:
        try:
            return records_of(self.book.deferred_rows())
        except Exception as exc:  # noqa: BLE001 - as in apply: the run's last mark is refused
            return poisoned(self.book, last_mark, exc, job)

    def apply(
        self, entry: JournalEntry, job: str = "portfolio_risk", *, defer_marks: bool = False
    ) -> list[Tagged]:
        """Apply one journal entry to the book; return its records by stream.

        A poison pill (an input the book raises on, that no check refused before) does
        not stop Job C: the input goes to dead_letters with the error, a CRITICAL
        ``POISON_INPUT`` event is raised and the account is halted (the book may be
        half-changed) until operations look. The journal replays the same entry after
        a restart and meets the same guard: never the same crash twice.
        """
        taken = self._taken.pop(entry.seq, None) if self._taken else None
        try:
            out = records_of(apply_entry(self.book, entry, defer_marks=defer_marks, record=taken))
        except Exception as exc:  # noqa: BLE001 - one record must not stop the job
            out = poisoned(self.book, entry, exc, job)
        if self.queue is not None:
            for stream, rec in out:
                if stream == "validated_orders":
                    self.queue.on_sent(rec.ts)  # type: ignore[attr-defined]
        return out

    def catch_up(self, entries: Iterable[JournalEntry]) -> list[Tagged]:
        """Apply the journal entries a crashed run had taken past this state's snapshot."""
        out: list[Tagged] = []
        for entry in entries:
            sub = _sub_of(entry, by_id=self.queue is not None)
            self.positions.take(entry.stream, entry.partition, entry.offset, sub)
            if entry.kind is JournalKind.SIGNAL:
                self.ids.check(record_of(entry))  # type: ignore[arg-type]
            self.seq = entry.seq
            out += self.apply(entry)
        return out

    def snapshot(self) -> dict[str, Any]:
        """Return the recovery state (a copy)."""
        return {
            "book": self.book.snapshot(),
            "seq": self.seq,
            "positions": dict(self.positions.last),
            "ids": dict(self.ids.seen),
            "queue": self.queue.copy() if self.queue is not None else None,
        }


def _pos(d: Decoded[Any]) -> InputPos:
    return InputPos(d.stream, d.partition, d.offset)


def _sub_of(entry: JournalEntry, by_id: bool = False) -> str:
    if entry.kind is JournalKind.MARK and entry.mark is not None:
        return entry.mark.symbol
    if by_id and entry.kind in (JournalKind.SIGNAL, JournalKind.FILL) and entry.record is not None:
        return str(entry.record["signal_id"] if entry.kind is JournalKind.SIGNAL else entry.record["exec_id"])
    if entry.kind is JournalKind.SIGNAL and entry.record is not None:
        return str(entry.record["symbol"])
    return ""


def _id_of(rec: Record) -> str | None:
    """Event-time mode: the id a signal or fill is taken once by (they leave stream order)."""
    if isinstance(rec, TradeSignal):
        return rec.signal_id
    if isinstance(rec, VenueFill):
        return rec.exec_id
    return None


def _queued(event: BookEvent) -> tuple[datetime, str, str, tuple[str, int, int]]:
    """Return where an event sorts in a ``BookQueue``: time, kind, id, and its position."""
    if isinstance(event, Tick):
        return event.ts, "MARK", event.symbol, ("market_data", event.partition, event.offset)
    if isinstance(event, Priced):
        d = event.item
        return d.record.ts, "SIGNAL", d.record.signal_id, (d.stream, d.partition, d.offset)
    if isinstance(event, Clock):
        raise TypeError("a Clock is not queued")
    fill: VenueFill = event.record
    return fill.ts, "FILL", fill.order_id, (event.stream, event.partition, event.offset)


def conflict(account: str, signal: TradeSignal, pos: InputPos, job: str, now: datetime) -> list[Tagged]:
    """Refuse a signal id seen before with other contents: a dead letter, a CRITICAL event."""
    why = f"signal id {signal.signal_id} was seen before with other contents; not decided again"
    letter = DeadLetter(
        source_stream=pos.stream, partition=pos.partition, offset=pos.offset, source_key=account,
        reason=why, payload=encode(signal).decode()[:PAYLOAD_CHARS], job=job, ts=now,
    )
    event = RiskEvent(
        event_id=event_id_for("CONFLICT", account, signal.signal_id, digest(signal)),
        account=account, rule="SIGNAL_ID_CONFLICT", severity=Severity.CRITICAL, message=why,
        symbol=signal.symbol, signal_id=signal.signal_id,
        values={"partition": str(pos.partition), "offset": str(pos.offset)}, ts=signal.ts,
    )
    return [("dead_letters", letter), ("risk_events", event)]


def poisoned(book: AccountBook, entry: JournalEntry, exc: Exception, job: str) -> list[Tagged]:
    """Refuse a journal entry the book raised on: a dead letter, a CRITICAL event, a halt."""
    error = f"{type(exc).__name__}: {exc}"[:400]
    why = f"Job C failed on this input ({error}); not applied, account {book.account_id} halted"
    now = entry.ts
    letter = DeadLetter(
        source_stream=entry.stream, partition=entry.partition, offset=entry.offset,
        source_key=book.account_id, reason=why, payload=encode(entry).decode()[:PAYLOAD_CHARS],
        job=job, ts=now,
    )
    event = RiskEvent(
        event_id=event_id_for("POISON", book.account_id, str(entry.seq)),
        account=book.account_id, rule="POISON_INPUT", severity=Severity.CRITICAL, message=why,
        values={"stream": entry.stream, "partition": str(entry.partition), "offset": str(entry.offset),
                "seq": str(entry.seq)}, ts=now,
    )
    return [("dead_letters", letter), ("risk_events", event),
            *records_of(book.halt_on_poison(f"input {entry.stream}:{entry.offset} failed", now))]


def records_of(outcome: Outcome) -> list[Tagged]:
    """Return an outcome's records tagged with the stream each goes to."""
    out: list[Tagged] = []
    if outcome.decision is not None:
        out.append(("risk_decisions", outcome.decision))
    out += [("validated_orders", o) for o in outcome.orders]
    out += [("risk_events", e) for e in outcome.events]
    out += [("orders", s) for s in outcome.order_states]
    out += [("positions_state", p) for p in outcome.positions]
    if outcome.portfolio is not None:
        out.append(("portfolio_state", outcome.portfolio))
    return out
