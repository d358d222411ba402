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

from operators.portfolio import AccountBook, InputPos, Outcome, event_id_for
from operators.sequencing import (
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

BookEvent = Tick | Priced[Decoded[TradeSignal]] | Decoded[Any]
"""What reaches a book: a tick to mark at, a priced signal, or a fill or table row."""

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
    if isinstance(rec, MarketData):
        return router.on_tick(Tick(rec.symbol, rec.price, rec.ts, value.partition, value.offset), rec.wm, now)
    if isinstance(rec, TradeSignal):
        return router.on_signal(value, rec.account, rec.symbol, rec.ts, now)
    if isinstance(rec, VenueFill):
        return router.on_fill(rec.account, rec.symbol)
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

    def __init__(self, account: str, resume: dict[str, Any] | None = None) -> None:
        """Start an account, or resume it from a ``snapshot()``."""
        self.book = AccountBook.from_snapshot(resume["book"]) if resume else AccountBook(account)
        self.seq: int = resume["seq"] if resume else 0
        """The journal sequence number of the last entry taken."""
        self.positions = InputPositions(dict(resume["positions"]) if resume else {})
        self.ids = SignalIds(dict(resume["ids"]) if resume else {})

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
        if isinstance(event, Tick):
            pos, sub, rec = InputPos("market_data", event.partition, event.offset), event.symbol, event
        elif isinstance(event, Priced):
            d = event.item
            pos, sub, rec, mark, newest = _pos(d), d.record.symbol, d.record, event.mark, event.newest
        else:
            pos, sub, rec = _pos(event), "", event.record
        if not self.positions.take(pos.stream, pos.partition, pos.offset, sub):
            return None, []
        if isinstance(rec, TradeSignal):
            check = self.ids.check(rec)
            if check is SignalCheck.REPLAY:
                return None, []
            if check is SignalCheck.CONFLICT:
                return None, conflict(self.account, rec, pos, job, now)
        self.seq += 1
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

    def apply(self, entry: JournalEntry, job: str = "portfolio_risk") -> list[Tagged]:
        """Apply one journal entry to the book; return its records by stream.

        A poison pill (an input the book raises on, that no check refused before) does
        not stop Job C: the input goes to dead_letters with the error, a CRITICAL
        ``POISON_INPUT`` event is raised and the account is halted (the book may be
        half-changed) until operations look. The journal replays the same entry after
        a restart and meets the same guard: never the same crash twice.
        """
        try:
            return records_of(apply_entry(self.book, entry))
        except Exception as exc:  # noqa: BLE001 - one record must not stop the job
            return poisoned(self.book, entry, exc, job)

    def catch_up(self, entries: Iterable[JournalEntry]) -> list[Tagged]:
        """Apply the journal entries a crashed run had taken past this state's snapshot."""
        out: list[Tagged] = []
        for entry in entries:
            self.positions.take(entry.stream, entry.partition, entry.offset, _sub_of(entry))
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
        }


def _pos(d: Decoded[Any]) -> InputPos:
    return InputPos(d.stream, d.partition, d.offset)


def _sub_of(entry: JournalEntry) -> str:
    if entry.kind is JournalKind.MARK and entry.mark is not None:
        return entry.mark.symbol
    if entry.kind is JournalKind.SIGNAL and entry.record is not None:
        return str(entry.record["symbol"])
    return ""


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
