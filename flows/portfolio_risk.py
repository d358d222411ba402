"""Job C: portfolio and risk, keyed by account.

Inputs: trade_signals, venue_fills, accounts, symbol_limits, control, market_data.
Outputs: validated_orders, risk_events, risk_decisions, orders, positions_state,
portfolio_state, dead_letters, and the input journal ``risk_journal``.

Run it: ``python -m bytewax.run "flows.portfolio_risk:build_flow()"``.

Wiring (the decisions live in ``operators.portfolio.AccountBook``, the sequencing
rules in ``operators.sequencing``):

- **One key** (``RouterLogic`` around ``InputRouter``): ticks, signals, the
  accounts, symbol_limits and control changelogs, and (to learn who holds what) fills.
  Signals wait, per account in stream order, until the three tables were read to
  where they ended at start-up (fail closed), for their account's row (at most
  ``portfolio.unknown_account_wait_s``) and for their symbol's market data to reach
  the signal's event time; each is priced at the last tick at or before that time.
  Table rows go to their accounts (broadcast control rows to every account); ticks go
  to the accounts holding the symbol, at most once per ``portfolio.mark_throttle_ms``.
- **By account** (``BookLogic``): drops replays (by input position and by signal id),
  appends what it takes to the journal, then applies the journal entries to the
  ``AccountBook``. A book resumes from its snapshot and then from the journal, so its
  outputs are a fold of its journal whatever the timing, batching or restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.journal import InputJournal
from connectors.metrics import RISK_CHECKS, serve
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import SHARDED_INPUTS, KeyOwnership, ShardError
from flows.common import Decoded, decode_messages, demux, output, shard_guard, startup_ends
from operators.limits import load_limits
from operators.portfolio import AccountBook, InputPos, Outcome, event_id_for
from operators.replay import LimitOverrides
from operators.sequencing import (
    InputPositions,
    InputRouter,
    Priced,
    SignalCheck,
    SignalIds,
    Tick,
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


BookEvent = Tick | Priced[Decoded[TradeSignal]] | Decoded[Any]
"""What reaches a book: a tick to mark at, a priced signal, or a fill or table row."""


# --------------------------------------------------------------------- one key


class RouterLogic(op.StatefulLogic[Decoded[Any], tuple[str, BookEvent], InputRouter[Decoded[TradeSignal]]]):
    """Bytewax shim around the one ``InputRouter`` of the job (key ``all``)."""

    def __init__(
        self, fresh: InputRouter[Decoded[TradeSignal]], ends: dict[str, dict[int, int]],
        resume: InputRouter[Any] | None, owns: Callable[[str], bool] | None = None,
    ) -> None:
        if resume is not None:  # fail closed on a restart too: read what was written meanwhile
            resume.rearm(ends)
        self.router = resume if resume is not None else fresh
        self.owns = owns
        """A shard's account filter: table rows of other accounts only move the gate."""

    def _not_mine(self, value: Decoded[Any], account: str, now: float) -> list[tuple[str, BookEvent]] | None:
        if self.owns is None or self.owns(account):
            return None
        gate = self.router.tables.get(value.stream)
        if gate is not None:  # read to its start-up end still counts, for the fail-closed gate
            gate.seen(value.partition, value.offset)
        return self.router.release(now)

    @override
    def on_item(self, value: Decoded[Any]) -> tuple[list[tuple[str, BookEvent]], bool]:
        rec, now, r = value.record, time.monotonic(), self.router
        if isinstance(rec, MarketData):
            tick = Tick(rec.symbol, rec.price, rec.ts, value.partition, value.offset)
            return r.on_tick(tick, rec.wm, now), False
        if isinstance(rec, TradeSignal):
            return r.on_signal(value, rec.account, rec.symbol, rec.ts, now), False
        if isinstance(rec, VenueFill):
            return r.on_fill(rec.account, rec.symbol), False
        if isinstance(rec, Account | SymbolLimit):
            if (skip := self._not_mine(value, rec.account, now)) is not None:
                return skip, False
            return r.on_table_row(value.stream, value.partition, value.offset, value,
                                  account=rec.account, now=now), False
        if isinstance(rec, Control):
            if rec.scope.startswith("account:") and (
                skip := self._not_mine(value, rec.scope.removeprefix("account:"), now)
            ) is not None:
                return skip, False
            return r.on_table_row(value.stream, value.partition, value.offset, value,
                                  scope=rec.scope, now=now), False
        raise TypeError(f"Job C's router got {type(rec).__name__}")

    @override
    def notify_at(self) -> datetime | None:
        due = self.router.next_due()
        if due is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=max(0.0, due - time.monotonic()))

    @override
    def on_notify(self) -> tuple[list[tuple[str, BookEvent]], bool]:
        return self.router.release(time.monotonic()), False

    @override
    def on_eof(self) -> tuple[list[tuple[str, BookEvent]], bool]:
        return self.router.release(time.monotonic(), everything=True), False

    @override
    def snapshot(self) -> InputRouter[Decoded[TradeSignal]]:
        return self.router.copy()


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
        if isinstance(event, Tick):
            pos, sub, rec = InputPos("market_data", event.partition, event.offset), event.symbol, event
        elif isinstance(event, Priced):
            d = event.item
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
    raw = op.input(stream, flow, conn.source(stream, sharded=stream in SHARDED_INPUTS[JOB]))
    dec = decode_messages(stream, raw, model, job=JOB)
    letters.append(dec.errs)
    return dec.oks


def account_ownership(conn: Connectors) -> KeyOwnership | None:
    """Return which accounts this shard owns (None: unsharded, every account).

    An account belongs to the shard owning its trade_signals partition; venue_fills must
    place accounts the same way (same profile, same partition count), or an account's
    fills would reach another shard than its signals.
    """
    settings = conn.settings
    if settings.shard is None:
        return None
    if settings.profile_for("trade_signals") != settings.profile_for("venue_fills"):
        raise ShardError("a sharded Job C needs trade_signals and venue_fills on one profile")

    def partitions() -> int:
        signals, fills = conn.partitions("trade_signals"), conn.partitions("venue_fills")
        if signals != fills:
            raise ShardError(
                f"a sharded Job C needs as many partitions of venue_fills ({fills}) as of "
                f"trade_signals ({signals}): both are placed by account"
            )
        return signals

    return KeyOwnership(settings.shard_of_job, conn.backend("trade_signals").partition_of, partitions,
                        "trade_signals")


def _owned_only(
    step_id: str, up: Stream[Decoded[Any]], owner: KeyOwnership, letters: list[Stream[Any]]
) -> Stream[Decoded[Any]]:
    """Keep the records of the accounts this shard owns.

    One in an owned partition but of another shard's account (written raw with another
    key) is a dead letter: that account's book lives in the other shard.
    """
    split = op.branch(f"{step_id}_owned", up, lambda d: owner.owns(d.record.account))

    def refuse(d: Decoded[Any]) -> DeadLetter:
        home = owner.partition_of(d.record.account)
        return DeadLetter(
            source_stream=d.stream, partition=d.partition, offset=d.offset, source_key=d.record.account,
            reason=f"account {d.record.account} belongs in partition {home} (shard "
                   f"{home % owner.shard.count}), not in {d.partition}: not decided by shard {owner.shard}",
            payload=encode(d.record).decode()[:4000], job=JOB, ts=datetime.now(UTC),
        )

    letters.append(op.map(f"{step_id}_misplaced", split.falses, refuse))
    return split.trues


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
    serve(settings.metrics_port, settings.metrics_host)
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
    owner = account_ownership(conn)
    if owner is not None:
        signals = _owned_only("trade_signals", signals, owner, letters)
        fills = _owned_only("venue_fills", fills, owner, letters)
    letters.append(shard_guard(flow, conn, flow.flow_id))

    ends = {name: startup_ends(conn, name) for name in TABLES}
    fresh: InputRouter[Decoded[TradeSignal]] = InputRouter.at(
        ends, throttle=timedelta(milliseconds=cfg.mark_throttle_ms),
        unknown_wait_s=cfg.unknown_account_wait_s, mark_wait_s=cfg.mark_wait_s,
    )
    routed = op.stateful(
        "router",
        op.key_on("one_key", op.merge("router_inputs", ticks, signals, fills, accounts, limits, control),
                  lambda _: "all"),
        lambda r: RouterLogic(fresh.copy(), ends, r, owner.owns if owner is not None else None),
    )
    direct = op.map("direct", fills, lambda d: (d.record.account, d))
    events = op.merge("book_events", op.key_rm("unkey_routed", routed), direct)
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
