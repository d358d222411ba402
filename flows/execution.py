"""Job D: validated_orders -> a venue -> venue_fills and execution_metrics.

Run it: ``python -m bytewax.run "flows.execution:build_flow()"`` (``TRADEFLOW_EXECUTION__VENUE``
picks ``paper``, the default, or ``fix``; one flow per venue).

One Job D per venue (``execution.venue_name``, default the adapter's name): it takes
the orders routed to it, reading only the validated_orders partition they are keyed
to, and with ``execution.default_venue`` (one Job D of a deployment) also the orders
no route names, from every partition (its shard's, when sharded). At start it writes
its venues row UP, which Job C's NO_ROUTE rule looks for.

Wiring only: every input of the venue goes through one key to one ``ExecutionLogic``,
the Bytewax shim around ``operators.execution.ExecutionEngine`` (the order manager:
de-duplication, halts, refusals, cancel on disconnect, reconciliation, figures). The
shim polls the engine every ``poll_ms`` and, at the end of a bounded run, lets it wait
up to ``drain_timeout_s`` for the venue's answers before it closes the venue.

Recovery: the engine's snapshot (its de-duplication set, the control states and the
adapter's own snapshot) comes back through ``restore`` before the venue connects. For
the FIX venue that is the offset of its report outbox, so reports received after the
last snapshot are handed over again with their original ExecIDs; the venue_fills sink
drops the ones it already has.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.metrics import ORDER_LATENCY
from connectors.progress import progress_sink
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import SHARDED_INPUTS
from connectors.venues import venue_from_settings
from flows.common import (
    Decoded,
    decoded,
    demux,
    job_process,
    output,
    records,
    refuse_future,
    shard_guard,
    startup_ends,
)
from operators.eventtime import Reached, ticks_reached
from operators.execution import ExecutionEngine, ExecutionPolicy
from schemas import (
    Account,
    Control,
    DeadLetter,
    ExecutionMetrics,
    MarketData,
    Record,
    RiskEvent,
    ValidatedOrder,
    Venue,
    VenueFill,
    VenueState,
)

JOB = "execution"
_STREAM_OF: dict[type, str] = {
    VenueFill: "venue_fills",
    Reached: "venue_fills",  # event-time mode: the promise behind the reports it covers
    ExecutionMetrics: "execution_metrics",
    RiskEvent: "risk_events",
    Control: "control",
    DeadLetter: "dead_letters",
}


def cancel_on_disconnect(conn: Connectors) -> set[str]:
    """Return the accounts asking for cancel on disconnect, as the accounts table says now."""
    return {a.account for a in conn.table("accounts", Account).values() if a.cancel_on_disconnect}


class ExecutionLogic(op.StatefulBatchLogic[Decoded[Any], Record | Reached, dict[str, Any]]):
    """Bytewax shim around the ``ExecutionEngine`` of one venue."""

    def __init__(
        self, settings: Settings, control_ends: dict[int, int], resume: dict[str, Any] | None
    ) -> None:
        self.cfg = cfg = settings.execution
        conn = Connectors(settings)
        venue = venue_from_settings(settings)
        self.engine = ExecutionEngine(
            venue, control_ends=control_ends, resume=resume,
            cancel_on_disconnect=lambda: cancel_on_disconnect(conn),
            policy=ExecutionPolicy(metrics_interval_s=cfg.metrics_interval_s, reconcile_s=cfg.reconcile_s),
            observe=lambda kind, s: ORDER_LATENCY.labels(venue.name, kind).observe(s),
        )
        self.adapter = venue
        self.event_time = settings.event_time
        self.engine.start()
        conn.writer("venues").write([Venue(venue=venue.name, state=VenueState.UP, adapter=cfg.venue,
                                           ts=datetime.now(UTC))])

    @override
    def on_batch(self, values: list[Decoded[Any]]) -> tuple[list[Record | Reached], bool]:
        out: list[Record | Reached] = []
        for d in values:
            out += self.engine.take(d.record, d.stream, d.partition, d.offset)
        out += self.engine.poll()
        if self.event_time:  # behind the reports: ticks matched on and orders taken so far
            out.append(Reached(ticks_reached(values), dict(self.engine.handled)))
        return out, False

    @override
    def notify_at(self) -> datetime | None:
        if self.engine.closed:
            return None
        return datetime.now(UTC) + timedelta(milliseconds=self.cfg.poll_ms)

    @override
    def on_notify(self) -> tuple[list[Record], bool]:
        return ([] if self.engine.closed else self.engine.on_timer()), False

    @override
    def on_eof(self) -> tuple[list[Record], bool]:
        wait_s = 0.0 if self.cfg.venue == "paper" else self.cfg.drain_timeout_s  # paper answers at once
        return self.engine.finish(wait_s=wait_s, poll_s=self.cfg.poll_ms / 1000, sleep=time.sleep), False

    @override
    def snapshot(self) -> dict[str, Any]:
        return self.engine.snapshot()


def build_flow(settings: Settings | None = None) -> Dataflow:
    """Build Job D with the given settings (default: from the environment)."""
    settings = settings or load_settings()
    ex = settings.execution
    if settings.event_time and ex.venue != "paper":
        raise ValueError(f"event-time mode takes only paper venues, not {ex.venue!r}: a {ex.venue} venue "
                         "fills in wall-clock time and matches no ticks to promise (docs/risk-audit.md)")
    conn = Connectors(settings)
    job_process(settings)
    venue, served = ex.served_venue, {ex.served_venue, *([None] if ex.default_venue else [])}
    flow = Dataflow(JOB)
    letters: list[Stream[Any]] = []
    src = conn.source("validated_orders", for_keys=None if ex.default_venue else [venue],
                      sharded="validated_orders" in SHARDED_INPUTS[JOB])  # routed orders: keyed by venue
    orders = decoded("validated_orders", op.input("validated_orders", flow, src), ValidatedOrder,
                     job=JOB, letters=letters)
    unreadable: list[Stream[Decoded[Any]]] = []  # control rows that did not decode, for the gate
    inputs: list[Stream[Decoded[Any]]] = [
        op.filter("my_venue", orders, lambda d: d.record.venue in served),
        records(flow, conn, "control", Control, job=JOB, letters=letters, unreadable=unreadable),
    ]
    inputs += unreadable
    if ex.venue == "paper":
        ticks = records(flow, conn, "market_data", MarketData, job=JOB, letters=letters)
        inputs.append(refuse_future("market_data", ticks, ex.max_future_skew_s, job=JOB, what="tick",
                                    letters=letters))
    keyed = op.key_on("by_venue", op.merge("inputs", *inputs), lambda _: venue)
    ends = startup_ends(conn, "control")
    logic = op.stateful_batch("venue", keyed, lambda r: ExecutionLogic(settings, ends, r))
    tagged = op.map("tag", op.key_rm("unkey", logic), lambda r: (_STREAM_OF[type(r)], r))
    routed = demux("publish", tagged, list(dict.fromkeys(_STREAM_OF.values())))
    for stream in dict.fromkeys(_STREAM_OF.values()):
        if stream == "dead_letters":
            letters.append(routed[stream])  # inputs the engine failed on: with the others
        else:
            sink = progress_sink(conn, stream, f"{JOB}:{venue}") if stream == "venue_fills" else None
            output(f"out_{stream}", routed[stream], conn, stream, job=JOB, sink=sink)
    letters.append(shard_guard(flow, conn, JOB))
    output("dead_letters", op.merge("all_letters", *letters), conn, "dead_letters", job=JOB)
    return flow
