"""Job C: portfolio and risk, keyed by account.

Run it: ``python -m bytewax.run "flows.portfolio_risk:build_flow()"``.

Inputs: trade_signals, venue_fills, accounts, symbol_limits, control, instruments,
routes, venues, market_data.
Outputs: validated_orders, risk_events, risk_decisions, orders, positions_state,
portfolio_state, dead_letters, and the input journal ``risk_journal``.

Wiring only. Every input goes through one key (``RouterLogic`` around the
``InputRouter`` of ``operators.sequencing``: fail-closed table gate, signals held and
priced in event time, ticks fanned to holders), then by account (``BookLogic`` around
``operators.account_inputs.AccountInputs``: each input once, journaled before it is
applied to the account's ``AccountBook``). A book resumes from its snapshot and then
from the journal, so its outputs are a fold of its journal whatever the timing,
batching or restarts.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.journal import InputJournal
from connectors.metrics import RISK_CHECKS
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import SHARDED_INPUTS, KeyOwnership
from flows.common import (
    Decoded,
    dead_letter_of,
    demux,
    job_process,
    output,
    records,
    refuse_future,
    shard_guard,
    startup_ends,
)
from operators.account_inputs import AccountInputs, BookEvent, Tagged, route_input
from operators.eventtime import EventClock
from operators.limits import load_limits
from operators.sequencing import InputRouter
from schemas import (
    Account,
    Control,
    Instrument,
    MarketData,
    Progress,
    RiskDecision,
    Route,
    SymbolLimit,
    TradeSignal,
    Venue,
    VenueFill,
)

JOB = "portfolio_risk"
OUTPUTS = ["risk_decisions", "validated_orders", "risk_events", "orders", "positions_state",
           "portfolio_state", "dead_letters"]
UNCLOSED = ("instruments", "routes", "venues")
"""Tables a bounded run reads as far as they go at start (nobody needs to close them)."""
TABLES = ("accounts", "symbol_limits", "control", *UNCLOSED)
"""The tables Job C reads to their start-up ends before deciding any signal."""


class RouterLogic(op.StatefulLogic[Decoded[Any], tuple[str, BookEvent], InputRouter[Decoded[TradeSignal]]]):
    """Bytewax shim around the one ``InputRouter`` of the job (key ``all``)."""

    def __init__(
        self, fresh: InputRouter[Decoded[TradeSignal]], ends: dict[str, dict[int, int]],
        resume: InputRouter[Any] | None, owner: KeyOwnership | None,
    ) -> None:
        if resume is not None:  # fail closed on a restart too: read what was written meanwhile
            resume.rearm(ends)
        self.router = resume if resume is not None else fresh
        self.owns = owner.owns if owner is not None else None

    @override
    def on_item(self, value: Decoded[Any]) -> tuple[list[tuple[str, BookEvent]], bool]:
        return route_input(self.router, value, time.monotonic(), self.owns), False

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


class BookLogic(op.StatefulBatchLogic[tuple[str, BookEvent], Tagged, dict[str, Any]]):
    """Bytewax shim around one account's ``AccountInputs``, with the input journal.

    Values arrive as ``(account, event)`` because Bytewax builds the logic without
    telling it its key. Before its first input a book applies the journal entries of
    its account past its snapshot (all of them without one): inputs a crashed run had
    applied, in the order it applied them.
    """

    def __init__(self, journal: InputJournal | None, resume: dict[str, Any] | None, event_time: bool) -> None:
        self.journal = journal
        self.event_time = event_time
        self.inputs = AccountInputs(resume["book"]["account_id"], resume) if resume else None
        self.caught_up = journal is None

    @override
    def on_batch(self, values: list[tuple[str, BookEvent]]) -> tuple[list[Tagged], bool]:
        if self.inputs is None:
            self.inputs = AccountInputs(values[0][0], event_time=self.event_time)
        out = self._catch_up()
        now = datetime.now(UTC)
        if self.inputs.queue is not None:  # event-time mode: taken and applied in the queue's order
            entries = []
            for _, event in values:
                taken, records = self.inputs.step(event, JOB, now)
                entries += taken
                out += records
            if self.journal is not None:
                self.journal.append(entries)  # written ahead of every output they caused
            _count_checks(out)
            return out, False
        entries, refused = self.inputs.take_all((event for _, event in values), JOB, now)
        out += refused
        if self.journal is not None:
            self.journal.append(entries)  # written ahead of every output they cause
        out += self.inputs.apply_all(entries)
        _count_checks(out)
        return out, False

    @override
    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) if not self.caught_up and self.inputs is not None else None

    @override
    def on_notify(self) -> tuple[list[Tagged], bool]:
        return self._catch_up(), False

    @override
    def on_eof(self) -> tuple[list[Tagged], bool]:
        return self._catch_up(), False

    def _catch_up(self) -> list[Tagged]:
        if self.caught_up or self.inputs is None or self.journal is None:
            return []
        self.caught_up = True
        return self.inputs.catch_up(self.journal.after(self.inputs.account, self.inputs.seq))

    @override
    def snapshot(self) -> dict[str, Any]:
        if self.inputs is None:
            raise RuntimeError("an account book without any event cannot exist")
        return self.inputs.snapshot()


def _count_checks(out: list[Tagged]) -> None:
    """Add a batch's rule results to ``tradeflow_risk_checks``, one ``inc`` per rule and result.

    ``labels()`` checks and joins the label values and takes a lock: once per rule of
    every decision it cost Job C a twentieth of its time.
    """
    counts: Counter[tuple[str, bool]] = Counter()
    for _, rec in out:
        if isinstance(rec, RiskDecision):
            counts.update([(rule.rule, rule.passed) for rule in rec.rules])
    for key, n in counts.items():
        child = _CHECK_COUNTERS.get(key)
        if child is None:
            child = _CHECK_COUNTERS[key] = RISK_CHECKS.labels(key[0], "pass" if key[1] else "fail")
        child.inc(n)


_CHECK_COUNTERS: dict[tuple[str, bool], Any] = {}
"""The ``tradeflow_risk_checks`` child of each (rule, passed), made on first use."""


def _owned_only(
    step_id: str, up: Stream[Decoded[Any]], owner: KeyOwnership, letters: list[Stream[Any]]
) -> Stream[Decoded[Any]]:
    """Keep the records of the accounts this shard owns; others are dead letters.

    One in an owned partition but of another shard's account (written raw with another
    key) cannot be decided here: that account's book lives in the other shard.
    """
    split = op.branch(f"{step_id}_owned", up, lambda d: owner.owns(d.record.account))

    def refuse(d: Decoded[Any]) -> Any:
        home = owner.partition_of(d.record.account)
        return dead_letter_of(d, f"account {d.record.account} belongs in partition {home} (shard "
                                 f"{home % owner.shard.count}), not in {d.partition}: not decided by "
                                 f"shard {owner.shard}", JOB, key=d.record.account)

    letters.append(op.map(f"{step_id}_misplaced", split.falses, refuse))
    return split.trues


def build_flow(settings: Settings | None = None, shadow_limits: str | None = None) -> Dataflow:
    """Build Job C with the given settings (default: from the environment).

    With ``shadow_limits`` (a limits file, docs/risk-audit.md) build a shadow instance:
    the same inputs with the candidate limits in the accounts and symbol_limits rows,
    decisions written to ``shadow_decisions`` and nothing else (no order is sent).
    Orders only the shadow passed never fill, so they stay open and keep their
    reservation; fills of orders only the live Job C passed are reported unknown.
    """
    settings = settings or load_settings()
    if settings.event_time and settings.shard:
        raise ValueError(f"event-time mode needs an unsharded Job C (TRADEFLOW_SHARD={settings.shard}): "
                         "a shard reads only its partitions, so it cannot read a promise up to its ends")
    conn = Connectors(settings)
    job_process(settings)
    cfg = settings.portfolio
    candidate = load_limits(Path(shadow_limits)) if shadow_limits else None
    journal = InputJournal(conn) if candidate is None and cfg.journal else None
    flow = Dataflow(JOB if candidate is None else f"{JOB}_shadow")
    letters: list[Stream[Any]] = []
    unreadable: list[Stream[Decoded[Any]]] = []  # table rows that did not decode, for the gate

    def read(stream: str, model: type[Any]) -> Stream[Decoded[Any]]:
        up = records(flow, conn, stream, model, job=JOB, letters=letters,
                     sharded=stream in SHARDED_INPUTS[JOB], until_now=stream in UNCLOSED,
                     unreadable=unreadable if stream in TABLES else None)
        if candidate is None or model not in (Account, SymbolLimit):
            return up
        return op.map(f"shadow_{stream}", up, lambda d: replace(d, record=candidate.row(d.record)))

    signals, fills = read("trade_signals", TradeSignal), read("venue_fills", VenueFill)
    signals = refuse_future("trade_signals", signals, cfg.max_future_skew_s, job=JOB, what="signal",
                            letters=letters)
    accounts, limits = read("accounts", Account), read("symbol_limits", SymbolLimit)
    control, ticks = read("control", Control), read("market_data", MarketData)
    ticks = refuse_future("market_data", ticks, cfg.max_future_skew_s, job=JOB, what="tick", letters=letters)
    instruments = read("instruments", Instrument)
    routes, venues = read("routes", Route), read("venues", Venue)
    owner = None if not settings.shard else conn.key_ownership("trade_signals", placed_like="venue_fills")
    if owner is not None:
        signals = _owned_only("trade_signals", signals, owner, letters)
        fills = _owned_only("venue_fills", fills, owner, letters)
    letters.append(shard_guard(flow, conn, flow.flow_id))

    ends = {name: startup_ends(conn, name) for name in TABLES}
    fresh: InputRouter[Decoded[TradeSignal]] = InputRouter.at(
        ends, throttle=timedelta(milliseconds=cfg.mark_throttle_ms),
        unknown_wait_s=cfg.unknown_account_wait_s, mark_wait_s=cfg.mark_wait_s,
    )
    inputs = [ticks, signals, fills, accounts, limits, control, instruments, routes, venues, *unreadable]
    if settings.event_time:  # the producers' promises; fills go through the router, in order
        fresh.clock = EventClock(cfg.await_progress)
        inputs.append(read("progress", Progress))
    routed = op.stateful(
        "router",
        op.key_on("one_key", op.merge("router_inputs", *inputs), lambda _: "all"),
        lambda r: RouterLogic(fresh.copy(), ends, r, owner),
    )
    events = op.key_rm("unkey_routed", routed)
    if not settings.event_time:
        events = op.merge("book_events", events, op.map("direct", fills, lambda d: (d.record.account, d)))
    by_account = op.key_on("by_account", events, lambda kv: kv[0])
    results = op.stateful_batch("books", by_account, lambda r: BookLogic(journal, r, settings.event_time))
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
