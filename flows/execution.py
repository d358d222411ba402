"""Job D: validated_orders -> a venue -> venue_fills and execution_metrics.

Run it: ``python -m bytewax.run "flows.execution:build_flow()"`` (``TRADEFLOW_EXECUTION__VENUE``
picks ``paper``, the default, or ``fix``; one flow per venue).

Everything for one venue goes through one key, so one ``ExecutionLogic`` owns the
adapter (``connectors.venues``): it de-duplicates orders by ``(order_id, action)``
(a replayed validated_orders record is never sent again), fails closed (a cancel
for an order this flow never sent is not sent; a NEW order in a scope the control
table HALTs is refused with a REJECTED report), feeds market data to the paper venue,
polls the adapter for execution reports every ``poll_ms``, and publishes windowed
execution metrics. Ack and fill latencies are measured here, on the wall clock, from
handing the order to the adapter to its first ack and its final fill.

On a bounded run the logic waits at the end of input (up to ``drain_timeout_s``) for
the venue to answer every order and cancel it sent, then closes the adapter (a FIX
session logs out); reports that come later are handed over by the next run.

Recovery: the adapter's own ``snapshot()`` goes into this logic's snapshot and comes
back through ``restore()`` before it connects. For the FIX venue that is the offset of
its report outbox, so reports received after the last snapshot (written downstream
or not when the process died) are handed over again with their original ExecIDs; the
venue_fills sink drops the ones it already has. Replayed validated_orders are never
sent again: the de-dup set comes back with the snapshot, and the FIX layer's own
journal turns a NEW it already sent into a status request.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.fix.application import SYNTHETIC_TAG
from connectors.metrics import ORDER_LATENCY, serve
from connectors.registry import Connectors
from connectors.settings import ExecutionSettings, Settings, load_settings
from connectors.sharding import SHARDED_INPUTS
from connectors.venues import VenueAdapter, make_venue
from flows.common import Decoded, TableGate, decode_messages, demux, output, shard_guard, startup_ends
from operators.stats import percentile
from schemas import (
    Account,
    Control,
    ExecStatus,
    ExecutionMetrics,
    MarketData,
    OrderAction,
    Record,
    RiskEvent,
    Severity,
    TradingState,
    ValidatedOrder,
    VenueFill,
    decode,
)

log = logging.getLogger(__name__)

JOB = "execution"
_ACKS = frozenset({ExecStatus.NEW, ExecStatus.ACK})
_FINAL = frozenset({ExecStatus.FILLED, ExecStatus.CANCELED, ExecStatus.REJECTED, ExecStatus.EXPIRED})


def build_adapter(settings: Settings) -> VenueAdapter:
    """Build the configured venue adapter (not yet connected)."""
    ex = settings.execution
    if ex.venue == "paper":
        return make_venue(
            "paper", latency_ms=ex.paper_latency_ms, fill_fraction=ex.paper_fill_fraction,
            fee_bps=ex.paper_fee_bps,
        )
    fix = settings.fix
    if fix.store_dir == Path("data/fix"):  # the default: keep the FIX store with the data
        fix = fix.model_copy(update={"store_dir": settings.data_dir / "fix"})
    return make_venue(ex.venue, settings=fix)


class ExecutionLogic(op.StatefulBatchLogic[Decoded[Any], Record, dict[str, Any]]):
    """The venue session of one flow: send, de-duplicate, poll, measure."""

    def __init__(
        self, settings: Settings, control_ends: dict[int, int], resume: dict[str, Any] | None
    ) -> None:
        self.cfg: ExecutionSettings = settings.execution
        self.adapter = build_adapter(settings)
        state = resume or {}
        self.sent: dict[str, str] = dict(state.get("sent", {}))
        """``order_id`` -> account of every NEW order handed to the venue."""
        self.done: set[str] = set(state.get("done", ()))
        """``order_id:action`` already handled (sent or refused)."""
        self.controls: dict[str, str] = dict(state.get("controls", {}))
        self._settings = settings
        self._logons = 0
        self._next_session_check = 0.0
        self.gate = TableGate(dict(state["gate"])) if "gate" in state else TableGate.at(control_ends)
        self.held: list[ValidatedOrder] = list(state.get("held", ()))
        """Orders that arrived before the control table was read to its start-up end."""
        if "venue" in state and hasattr(self.adapter, "restore"):
            self.adapter.restore(state["venue"])
        self.adapter.connect()
        self._sent_at: dict[str, float] = {}
        self._cancels: set[str] = set()
        """Orders whose cancel went to the venue in this run and is not answered yet."""
        self._acked: set[str] = set()
        self._ack_ms: deque[float] = deque(maxlen=10_000)
        self._fill_ms: deque[float] = deque(maxlen=10_000)
        self._window = {"orders_sent": 0, "acks": 0, "fills": 0, "rejects": 0}
        self._next_metrics = time.monotonic() + self.cfg.metrics_interval_s
        self._next_reconcile = time.monotonic() + self.cfg.reconcile_s
        self._closed = False

    # -- inputs ---------------------------------------------------------------------------

    @override
    def on_batch(self, values: list[Decoded[Any]]) -> tuple[list[Record], bool]:
        out: list[Record] = []
        for d in values:
            rec = d.record
            if isinstance(rec, ValidatedOrder):
                if self.gate.open:
                    out.extend(self._order(rec))
                else:
                    self.held.append(rec)
            elif isinstance(rec, MarketData):
                on_market = getattr(self.adapter, "on_market", None)
                if on_market is not None:
                    on_market(rec)
            elif isinstance(rec, Control):
                self.controls[rec.scope] = rec.state.value
                self.gate.seen(d.partition, d.offset)
                if self.gate.open and self.held:
                    held, self.held = self.held, []
                    for order in held:
                        out.extend(self._order(order))
        return out + self._poll(), False

    def _order(self, order: ValidatedOrder) -> list[Record]:
        ident = f"{order.order_id}:{order.action.value}"
        if ident in self.done:
            return []  # a replayed record: never sent twice
        self.done.add(ident)
        if order.action is OrderAction.CANCEL:
            if order.order_id not in self.sent:
                return [self._refusal(order, "cancel of an order this venue session never sent")]
            self._cancels.add(order.order_id)
            self.adapter.cancel(order)
            return []
        halted = self._halted_by(order)
        if halted:
            return [self._refusal(order, f"refused: control {halted} is HALTED")]
        self.sent[order.order_id] = order.account
        self._sent_at[order.order_id] = time.monotonic()
        self._window["orders_sent"] += 1
        self.adapter.submit(order)
        return []

    def _halted_by(self, order: ValidatedOrder) -> str | None:
        scopes = ["global", f"account:{order.account}"]
        if order.strategy_id:
            scopes.append(f"strategy:{order.strategy_id}")
        for scope in scopes:
            if self.controls.get(scope) == TradingState.HALTED.value:
                return scope
        return None

    def _refusal(self, order: ValidatedOrder, reason: str) -> VenueFill:
        """Report an order this flow will not send.

        A NEW is REJECTED (Job C releases its reservation); a CANCEL is only reported
        (STATUS, "cancel rejected: ...").
        """
        new = order.action is OrderAction.NEW
        if new:
            self._window["rejects"] += 1
        return VenueFill(
            order_id=order.order_id,
            venue=self.adapter.name,
            exec_id=f"{order.order_id}-refused-{order.action.value}",
            status=ExecStatus.REJECTED if new else ExecStatus.STATUS,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            reason=reason if new else f"cancel rejected: {reason}",
            ts=order.ts,
        )

    # -- reports --------------------------------------------------------------------------

    def _cancel_on_disconnect_accounts(self) -> set[str]:
        """Look up, in the accounts table as it is now, who asks for cancel on disconnect."""
        reader = Connectors(self._settings).reader("accounts")
        try:
            rows = [decode(Account, raw) for _, raw in reader.scan_latest()]
        finally:
            reader.close()
        return {a.account for a in rows if a.cancel_on_disconnect}

    def _after_reconnect(self) -> None:
        """Cancel the working orders of cancel-on-disconnect accounts once a lost session is back.

        The first logon of this process is not a reconnect. The accounts table is read
        at that moment (a lookup, not a changelog), so the flag in force then applies.
        """
        now = time.monotonic()
        if now < self._next_session_check:
            return
        self._next_session_check = now + 0.25
        logons = int(self.adapter.health().get("logons", 0) or 0)
        reconnected = self._logons > 0 and logons > self._logons
        self._logons = max(self._logons, logons)
        if not reconnected:
            return
        accounts = self._cancel_on_disconnect_accounts()
        if not accounts:
            return
        try:
            working = self.adapter.open_orders()
        except NotImplementedError:
            return
        for o in working:
            if o.account in accounts and o.order_id in self.sent:
                log.warning("venue session came back: cancelling %s (cancel on disconnect)", o.order_id)
                self._cancels.add(o.order_id)
                self.adapter.cancel(
                    ValidatedOrder(
                        order_id=o.order_id, action=OrderAction.CANCEL, account=o.account,
                        symbol=o.symbol, side=o.side, qty=o.qty,
                        reason="cancel on disconnect", ts=datetime.now(UTC),
                    )
                )

    def _poll(self) -> list[Record]:
        reports: list[Record] = []
        now = time.monotonic()
        self._after_reconnect()
        for rep in self.adapter.poll_reports():
            reports.append(rep)
            if SYNTHETIC_TAG in rep.exec_id:
                reports.extend(reconciliation_finding(rep))
            sent = self._sent_at.get(rep.order_id)
            if sent is not None and rep.status in _ACKS | _FINAL and rep.order_id not in self._acked:
                self._acked.add(rep.order_id)
                self._ack_ms.append((now - sent) * 1000)
                ORDER_LATENCY.labels(self.adapter.name, "ack").observe(now - sent)
                self._window["acks"] += 1
            if rep.last_qty > 0:
                self._window["fills"] += 1
            if rep.status is ExecStatus.REJECTED:
                self._window["rejects"] += 1
            if rep.status in _FINAL or (
                rep.status is ExecStatus.STATUS and rep.reason.startswith("cancel rejected")
            ):
                self._cancels.discard(rep.order_id)
            if rep.status in _FINAL:
                self._acked.discard(rep.order_id)
                if sent is not None:
                    self._sent_at.pop(rep.order_id, None)
                    if rep.status is ExecStatus.FILLED:
                        self._fill_ms.append((now - sent) * 1000)
                        ORDER_LATENCY.labels(self.adapter.name, "fill").observe(now - sent)
        if now >= self._next_metrics:
            reports.append(self.metrics())
            self._next_metrics = now + self.cfg.metrics_interval_s
        return reports

    def metrics(self) -> ExecutionMetrics:
        """Return the execution metrics of the window that ends now, and start a new one."""
        health = self.adapter.health()
        w = self._window
        decided = w["acks"] + w["rejects"]
        ack, fill = list(self._ack_ms), list(self._fill_ms)
        figures = ExecutionMetrics(
            venue=self.adapter.name,
            window_s=self.cfg.metrics_interval_s,
            orders_sent=w["orders_sent"],
            acks=w["acks"],
            fills=w["fills"],
            rejects=w["rejects"],
            reject_rate=w["rejects"] / decided if decided else 0.0,
            ack_p50_ms=percentile(ack, 50),
            ack_p99_ms=percentile(ack, 99),
            fill_p50_ms=percentile(fill, 50),
            fill_p99_ms=percentile(fill, 99),
            msgs_sent=int(health.get("msgs_sent", 0) or 0),
            msgs_received=int(health.get("msgs_received", 0) or 0),
            session_state=str(health.get("session_state", "UNKNOWN")),
            ts=datetime.now(UTC),
        )
        self._window = dict.fromkeys(w, 0)
        self._ack_ms.clear()
        self._fill_ms.clear()
        return figures

    @override
    def on_notify(self) -> tuple[list[Record], bool]:
        if self._closed:
            return [], False
        self._reconcile_if_due()
        return self._poll(), False

    def _reconcile_if_due(self) -> None:
        now = time.monotonic()
        if self.cfg.reconcile_s > 0 and now >= self._next_reconcile:
            self._next_reconcile = now + self.cfg.reconcile_s
            self.reconcile()

    def reconcile(self) -> int:
        """Ask the venue about every order it holds open for us; return how many.

        The answers come back as STATUS reports; quantity filled there that we never
        received becomes a synthetic fill and a VENUE_RECONCILIATION alarm.
        """
        try:
            working = self.adapter.open_orders()
        except NotImplementedError:
            return 0
        for order in working:
            self.adapter.request_status(order.order_id)
        return len(working)

    @override
    def notify_at(self) -> datetime | None:
        if self._closed:
            return None
        return datetime.now(UTC) + timedelta(milliseconds=self.cfg.poll_ms)

    @override
    def on_eof(self) -> tuple[list[Record], bool]:
        out: list[Record] = []
        held, self.held = self.held, []  # the table ended short of its start-up end
        for order in held:
            out.extend(self._order(order))
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while (self._sent_at or self._cancels) and time.monotonic() < deadline and self.cfg.venue != "paper":
            self._reconcile_if_due()
            out.extend(self._poll())
            time.sleep(self.cfg.poll_ms / 1000)
        out.extend(self._poll())
        out.append(self.metrics())
        self.adapter.close()  # the run is over: log out, stop the I/O thread
        self._closed = True
        out.extend(r for r in self._poll() if isinstance(r, VenueFill))  # came during the logout
        return out, False

    @override
    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "sent": dict(self.sent),
            "done": sorted(self.done),
            "controls": dict(self.controls),
            "gate": dict(self.gate.pending),
            "held": list(self.held),
        }
        snap = getattr(self.adapter, "snapshot", None)
        if snap is not None:
            state["venue"] = snap()
        return state


_STREAM_OF: dict[type, str] = {
    VenueFill: "venue_fills",
    ExecutionMetrics: "execution_metrics",
    RiskEvent: "risk_events",
    Control: "control",
}


def reconciliation_finding(fill: VenueFill) -> list[Record]:
    """Turn quantity the venue reports but we never received into an alarm.

    The venue's CumQty was above the fills we had (a fill our side never saw): a
    CRITICAL ``VENUE_RECONCILIATION`` risk event, and the account goes to REDUCING
    through the control table (Jobs B and C honour it) until operations look.
    """
    reason = (
        f"venue reports {fill.cum_qty} filled on {fill.order_id}, "
        f"{fill.last_qty} more than the fills received"
    )
    return [
        RiskEvent(
            event_id=f"E-REC-{fill.exec_id}",
            account=fill.account,
            rule="VENUE_RECONCILIATION",
            severity=Severity.CRITICAL,
            message=reason,
            symbol=fill.symbol,
            order_id=fill.order_id,
            values={"venue_cum_qty": str(fill.cum_qty), "missing_qty": str(fill.last_qty)},
            ts=fill.ts,
        ),
        Control(
            scope=f"account:{fill.account}", state=TradingState.REDUCING,
            reason=f"reconciliation: {reason}", updated_by="execution", ts=fill.ts,
        ),
    ]


def build_flow(settings: Settings | None = None) -> Dataflow:
    """Build Job D with the given settings (default: from the environment)."""
    settings = settings or load_settings()
    conn = Connectors(settings)
    serve(settings.metrics_port, settings.metrics_host)
    venue = settings.execution.venue
    flow = Dataflow(JOB)
    letters: list[Stream[Any]] = []
    inputs: list[Stream[Decoded[Any]]] = []
    streams: list[tuple[str, type[Record]]] = [("validated_orders", ValidatedOrder), ("control", Control)]
    if venue == "paper":
        streams.append(("market_data", MarketData))
    for name, model in streams:
        src = conn.source(name, sharded=name in SHARDED_INPUTS[JOB])
        dec = decode_messages(name, op.input(name, flow, src), model, job=JOB)
        inputs.append(dec.oks)
        letters.append(dec.errs)
    keyed = op.key_on("by_venue", op.merge("inputs", *inputs), lambda _: venue)
    ends = startup_ends(conn, "control")
    logic = op.stateful_batch("venue", keyed, lambda r: ExecutionLogic(settings, ends, r))
    out = op.key_rm("unkey", logic)
    tagged = op.map("tag", out, lambda r: (_STREAM_OF[type(r)], r))
    routed = demux("publish", tagged, ["venue_fills", "execution_metrics", "risk_events", "control"])
    output("out_risk_events", routed["risk_events"], conn, "risk_events", job=JOB)
    output("out_control", routed["control"], conn, "control", job=JOB)
    output("venue_fills", routed["venue_fills"], conn, "venue_fills", job=JOB)
    output("execution_metrics", routed["execution_metrics"], conn, "execution_metrics", job=JOB)
    letters.append(shard_guard(flow, conn, JOB))
    output("dead_letters", op.merge("all_letters", *letters), conn, "dead_letters", job=JOB)
    return flow
