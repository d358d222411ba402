"""Job D's decisions: what goes to the venue, what is refused, what comes back, and figures.

``ExecutionEngine`` owns one venue adapter (``operators.venue.VenueAdapter``) and is
the whole order manager of a Job D; the flow (``flows.execution``) only feeds it
records and timer ticks and publishes what it returns. It has no I/O of its own: the
clock, the sleep of the end-of-run drain, the latency observer and the lookup of the
accounts that ask for cancel on disconnect are all passed in, so a unit test drives it
with a fake venue and a fake clock.

- **Never twice.** Orders are de-duplicated by ``(order_id, action)``: a replayed
  validated_orders record is never sent again (the set is in the snapshot).
- **Fail closed.** Orders wait until the control table was read to where it ended at
  start-up (``TableGate``); a NEW in a scope the control table HALTs is refused with a
  REJECTED report (Job C releases its reservation); a cancel of an order this
  engine never sent is not sent (reported as a rejected cancel).
- **Cancel on disconnect.** When a lost venue session comes back (a logon after the
  first), the working orders of accounts with ``cancel_on_disconnect`` are cancelled.
- **Reconciliation.** Every ``reconcile_s`` the venue is asked about every order it
  holds open for us; a synthetic fill in the answers (quantity filled there that we
  never received) becomes a CRITICAL ``VENUE_RECONCILIATION`` event and moves the
  account to REDUCING through the control table.
- **A venue is not trusted blindly.** What the adapter finds wrong with the venue
  (``VenueAdapter.poll_findings``: it lost its state, refused logons, over-fills,
  reports of orders we never sent or that contradict ours) becomes CRITICAL risk
  events, and for the findings that say so the accounts concerned go to REDUCING.
- **Figures.** Ack and fill latencies on the injected monotonic clock, from handing the
  order to the adapter to its first ack and its final fill, and windowed
  ``ExecutionMetrics``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from operators.sequencing import TableGate
from operators.stats import percentile
from operators.venue import VenueAdapter, VenueFinding
from schemas import (
    CANCEL_REJECTED_PREFIX,
    Control,
    DeadLetter,
    ExecStatus,
    ExecutionMetrics,
    MarketData,
    OrderAction,
    Record,
    RiskEvent,
    Scope,
    Severity,
    TradingState,
    ValidatedOrder,
    VenueFill,
    encode,
)

log = logging.getLogger(__name__)

PAYLOAD_CHARS = 4000
"""Characters of a failed input kept in its dead letter (as Job C keeps them)."""

_ACKS = frozenset({ExecStatus.NEW, ExecStatus.ACK})
_FINAL = frozenset({ExecStatus.FILLED, ExecStatus.CANCELED, ExecStatus.REJECTED, ExecStatus.EXPIRED})
_LATENCY_WINDOW = 10_000
"""Latencies kept per metrics window, at most."""


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """The engine's timings, in seconds (from ``ExecutionSettings``)."""

    metrics_interval_s: float = 5.0
    """Window of each execution_metrics record."""
    reconcile_s: float = 30.0
    """How often every open order is asked about (0: never)."""
    session_check_s: float = 0.25
    """How often the venue's logon count is read to notice a session that came back."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _no_observer(kind: str, seconds: float) -> None:
    """Default latency observer: nothing."""


class ExecutionEngine:
    """The order manager of one venue: send, refuse, de-duplicate, poll, reconcile, measure."""

    def __init__(
        self,
        venue: VenueAdapter,
        *,
        control_ends: dict[int, int],
        cancel_on_disconnect: Callable[[], set[str]],
        policy: ExecutionPolicy | None = None,
        resume: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        observe: Callable[[str, float], None] = _no_observer,
    ) -> None:
        """Build the engine; ``start()`` then restores the venue and connects it.

        ``cancel_on_disconnect`` returns the accounts asking for it, as the accounts
        table says at the moment of the call. ``observe(kind, seconds)`` is told each
        ack and fill latency (``kind`` is ``ack`` or ``fill``).
        """
        self.venue = venue
        self.policy = policy or ExecutionPolicy()
        self._clock, self._now, self._observe = clock, now, observe
        self._cancel_on_disconnect = cancel_on_disconnect
        state = resume or {}
        self.sent: dict[str, str] = dict(state.get("sent", {}))
        """``order_id`` -> account of every NEW order handed to the venue."""
        self.done: set[str] = set(state.get("done", ()))
        """``order_id:action`` already handled (sent or refused)."""
        self.handled: dict[str, int] = dict(state.get("handled", {}))
        """Per account, how many of its validated orders were handled (event-time mode's promise)."""
        self.controls: dict[str, str] = dict(state.get("controls", {}))
        """Trading state by control scope, as the control table says."""
        self.gate = TableGate(dict(state["gate"])) if "gate" in state else TableGate.at(control_ends)
        self.held: list[ValidatedOrder] = list(state.get("held", ()))
        """Orders that arrived before the control table was read to its start-up end."""
        self._venue_state: dict[str, Any] | None = state.get("venue")
        self._sent_at: dict[str, float] = {}
        self._entered_at: dict[str, datetime] = {}
        """``entered_at`` of the working orders sent in this run, carried onto their reports
        (observability only, so not in the snapshot: after a restart they go without)."""
        self._cancels: set[str] = set()
        """Orders whose cancel went to the venue in this run and is not answered yet."""
        self._acked: set[str] = set()
        self._ack_ms: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._fill_ms: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._window = dict.fromkeys(("orders_sent", "acks", "fills", "rejects"), 0)
        start = clock()
        self._next_metrics = start + self.policy.metrics_interval_s
        self._next_reconcile = start + self.policy.reconcile_s
        self._next_session_check = 0.0
        self._logons = 0
        self.closed = False

    def start(self) -> None:
        """Restore the venue from the snapshot (if any), then connect it."""
        if self._venue_state is not None:
            self.venue.restore(self._venue_state)
        self.venue.connect()

    # -- inputs ---------------------------------------------------------------------------

    def take(self, record: Record, stream: str, partition: int, offset: int) -> list[Record]:
        """Take one input of any kind; one Job D cannot handle never stops it.

        An exception while handling a record (a poison pill no check refused, an adapter
        bug) sends the record to dead_letters with the error and raises a CRITICAL
        ``EXECUTION_ERROR`` event; Job D goes on. A replay of that record meets the same
        guard, and an order it happened to is in ``done``: never sent twice.
        """
        try:
            if isinstance(record, ValidatedOrder):
                return self.on_order(record)
            if isinstance(record, MarketData):
                self.on_market(record)
                return []
            if isinstance(record, Control):
                return self.on_control(record, partition, offset)
            if isinstance(record, DeadLetter):  # a control row that did not decode
                return self.on_unreadable_control(partition, offset)
            raise TypeError(f"Job D got {type(record).__name__}")
        except Exception as exc:  # noqa: BLE001 - one record must not stop the job
            return self._failed_on(record, stream, partition, offset, exc)

    def _failed_on(
        self, record: Record, stream: str, partition: int, offset: int, exc: Exception
    ) -> list[Record]:
        error = f"{type(exc).__name__}: {exc}"[:400]
        log.exception("execution: failed on %s %s@%s", stream, partition, offset)
        account = record.account if isinstance(record, ValidatedOrder) else f"venue:{self.venue.name}"
        why = f"Job D failed on this input ({error}); not used"
        now = self._now()
        return [
            DeadLetter(source_stream=stream, partition=partition, offset=offset, source_key=account,
                       reason=why, payload=encode(record).decode()[:PAYLOAD_CHARS], job="execution", ts=now),
            RiskEvent(
                event_id=f"E-EXEC-{stream}-{partition}-{offset}", account=account, rule="EXECUTION_ERROR",
                severity=Severity.CRITICAL, message=why,
                order_id=record.order_id if isinstance(record, ValidatedOrder) else None,
                values={"stream": stream, "partition": str(partition), "offset": str(offset)}, ts=now,
            ),
        ]

    def on_order(self, order: ValidatedOrder) -> list[Record]:
        """Take a validated order: send it, refuse it, hold it, or drop it as a replay."""
        if not self.gate.open:
            self.held.append(order)
            return []
        return self._order(order)

    def on_market(self, tick: MarketData) -> None:
        """Hand a tick to the venue (the paper venue matches on it)."""
        self.venue.on_market(tick)

    def on_control(self, control: Control, partition: int, offset: int) -> list[Record]:
        """Take a control row; once the table is read to its start-up end, send what waited."""
        self.controls[control.scope] = control.state.value
        return self.on_unreadable_control(partition, offset)

    def on_unreadable_control(self, partition: int, offset: int) -> list[Record]:
        """Take a control row that did not decode: read all the same, so the gate can open.

        ``on_control`` ends here too: once the table is read to its start-up end, what
        waited is sent.
        """
        self.gate.seen(partition, offset)
        if not (self.gate.open and self.held):
            return []
        return self._release_held()

    def _release_held(self) -> list[Record]:
        out: list[Record] = []
        held, self.held = self.held, []
        for order in held:
            out.extend(self._order(order))
        return out

    def _order(self, order: ValidatedOrder) -> list[Record]:
        ident = f"{order.order_id}:{order.action.value}"
        if ident in self.done:
            return []  # a replayed record: never sent twice
        self.done.add(ident)
        self.handled[order.account] = self.handled.get(order.account, 0) + 1
        if order.action is OrderAction.CANCEL:
            if order.order_id not in self.sent:
                return [self._refusal(order, "cancel of an order this venue session never sent")]
            self._cancels.add(order.order_id)
            self.venue.cancel(order)
            return []
        halted = self.halted_by(order)
        if halted is not None:
            return [self._refusal(order, f"refused: control {halted} is HALTED")]
        self.sent[order.order_id] = order.account
        self._sent_at[order.order_id] = self._clock()
        if order.entered_at is not None:
            self._entered_at[order.order_id] = order.entered_at
        self._window["orders_sent"] += 1
        self.venue.submit(order)
        return []

    def halted_by(self, order: ValidatedOrder) -> Scope | None:
        """Return the control scope that HALTs this order, if any."""
        for scope in Scope.of_order(order.account, order.strategy_id):
            if self.controls.get(str(scope)) == TradingState.HALTED.value:
                return scope
        return None

    def _refusal(self, order: ValidatedOrder, reason: str) -> VenueFill:
        """Report an order this engine will not send: a NEW is REJECTED, a cancel rejected."""
        new = order.action is OrderAction.NEW
        if new:
            self._window["rejects"] += 1
        return VenueFill(
            order_id=order.order_id,
            venue=self.venue.name,
            exec_id=f"{order.order_id}-refused-{order.action.value}",
            status=ExecStatus.REJECTED if new else ExecStatus.CANCEL_REJECTED,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            reason=reason if new else f"{CANCEL_REJECTED_PREFIX}{reason}",
            ts=order.ts,
            entered_at=order.entered_at,
        )

    # -- the venue's side -----------------------------------------------------------------

    def on_timer(self) -> list[Record]:
        """Run what is due (reconciliation, metrics) and return the venue's new reports."""
        self._reconcile_if_due()
        return self.poll()

    def poll(self) -> list[Record]:
        """Return the venue's reports since the last poll, findings, and metrics when due."""
        now = self._clock()
        self._after_reconnect(now)
        out: list[Record] = []
        for report in self.venue.poll_reports():
            rep = self._carried(report)
            out.append(rep)
            if rep.synthetic:
                out.extend(reconciliation_finding(rep))
            self._measure(rep, now)
        for finding in self.venue.poll_findings():
            out.extend(venue_alarm(self.venue.name, finding, self._now()))
        if now >= self._next_metrics:
            out.append(self.metrics())
            self._next_metrics = now + self.policy.metrics_interval_s
        return out

    def _carried(self, rep: VenueFill) -> VenueFill:
        """Return the report with its order's ``entered_at``, when this run sent the order."""
        entered = self._entered_at.get(rep.order_id)
        if entered is None or rep.entered_at is not None:
            return rep
        return rep.model_copy(update={"entered_at": entered})

    def _measure(self, rep: VenueFill, now: float) -> None:
        sent = self._sent_at.get(rep.order_id)
        if sent is not None and rep.status in _ACKS | _FINAL and rep.order_id not in self._acked:
            self._acked.add(rep.order_id)
            self._ack_ms.append((now - sent) * 1000)
            self._observe("ack", now - sent)
            self._window["acks"] += 1
        if rep.last_qty > 0:
            self._window["fills"] += 1
        if rep.status is ExecStatus.REJECTED:
            self._window["rejects"] += 1
        if rep.status in _FINAL or rep.status is ExecStatus.CANCEL_REJECTED:
            self._cancels.discard(rep.order_id)
        if rep.status in _FINAL:
            self._acked.discard(rep.order_id)
            self._sent_at.pop(rep.order_id, None)
            self._entered_at.pop(rep.order_id, None)
            if sent is not None and rep.status is ExecStatus.FILLED:
                self._fill_ms.append((now - sent) * 1000)
                self._observe("fill", now - sent)

    def _after_reconnect(self, now: float) -> None:
        """Cancel the working orders of cancel-on-disconnect accounts once a lost session is back.

        The first logon of this process is not a reconnect. The accounts are looked up
        at that moment, so the flag in force then applies.
        """
        if now < self._next_session_check:
            return
        self._next_session_check = now + self.policy.session_check_s
        logons = self.venue.health().logons
        reconnected = self._logons > 0 and logons > self._logons
        self._logons = max(self._logons, logons)
        if not reconnected:
            return
        accounts = self._cancel_on_disconnect()
        if not accounts:
            return
        try:
            working = self.venue.open_orders()
        except NotImplementedError:
            return
        for o in working:
            if o.account in accounts and o.order_id in self.sent:
                log.warning("venue session came back: cancelling %s (cancel on disconnect)", o.order_id)
                self._cancels.add(o.order_id)
                self.venue.cancel(
                    ValidatedOrder(
                        order_id=o.order_id, action=OrderAction.CANCEL, account=o.account,
                        symbol=o.symbol, side=o.side, qty=o.qty,
                        reason="cancel on disconnect", ts=self._now(),
                    )
                )

    def _reconcile_if_due(self) -> None:
        now = self._clock()
        if self.policy.reconcile_s > 0 and now >= self._next_reconcile:
            self._next_reconcile = now + self.policy.reconcile_s
            self.reconcile()

    def reconcile(self) -> int:
        """Ask the venue about every order it holds open for us; return how many.

        The answers come back as STATUS reports; quantity filled there that we never
        received becomes a synthetic fill and a VENUE_RECONCILIATION alarm.
        """
        try:
            working = self.venue.open_orders()
        except NotImplementedError:
            return 0
        for order in working:
            self.venue.request_status(order.order_id)
        return len(working)

    def metrics(self) -> ExecutionMetrics:
        """Return the execution metrics of the window that ends now, and start a new one."""
        health = self.venue.health()
        w = self._window
        decided = w["acks"] + w["rejects"]
        ack, fill = list(self._ack_ms), list(self._fill_ms)
        figures = ExecutionMetrics(
            venue=self.venue.name,
            window_s=self.policy.metrics_interval_s,
            orders_sent=w["orders_sent"],
            acks=w["acks"],
            fills=w["fills"],
            rejects=w["rejects"],
            reject_rate=w["rejects"] / decided if decided else 0.0,
            ack_p50_ms=percentile(ack, 50),
            ack_p99_ms=percentile(ack, 99),
            fill_p50_ms=percentile(fill, 50),
            fill_p99_ms=percentile(fill, 99),
            msgs_sent=health.msgs_sent,
            msgs_received=health.msgs_received,
            session_state=health.session_state,
            ts=self._now(),
        )
        self._window = dict.fromkeys(w, 0)
        self._ack_ms.clear()
        self._fill_ms.clear()
        return figures

    # -- the end of a bounded run ---------------------------------------------------------

    @property
    def awaiting(self) -> int:
        """Return how many orders and cancels sent in this run the venue has not answered."""
        return len(self._sent_at) + len(self._cancels)

    def finish(self, *, wait_s: float, poll_s: float, sleep: Callable[[float], None]) -> list[Record]:
        """End the run: send what waited, wait up to ``wait_s`` for answers, close the venue.

        Reports that come later are handed over by the next run (the venue's snapshot).
        """
        out = self._release_held()  # the control table ended short of its start-up end
        deadline = self._clock() + wait_s
        while self.awaiting and self._clock() < deadline:
            out.extend(self.on_timer())
            sleep(poll_s)
        out.extend(self.poll())
        out.append(self.metrics())
        self.venue.close()  # log out, stop the I/O thread
        self.closed = True
        out.extend(r for r in self.poll() if isinstance(r, VenueFill))  # came during the logout
        return out

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's recovery state (a copy), the venue's own inside it."""
        state: dict[str, Any] = {
            "sent": dict(self.sent),
            "done": sorted(self.done),
            "controls": dict(self.controls),
            "gate": dict(self.gate.pending),
            "held": list(self.held),
            "handled": dict(self.handled),
        }
        venue = self.venue.snapshot()
        if venue is not None:
            state["venue"] = venue
        return state


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
            scope=str(Scope.account(fill.account)), state=TradingState.REDUCING,
            reason=f"reconciliation: {reason}", updated_by="execution", ts=fill.ts,
        ),
    ]


def venue_alarm(venue: str, finding: VenueFinding, ts: datetime) -> list[Record]:
    """Turn one ``VenueFinding`` into CRITICAL risk events and, if asked, REDUCING controls.

    One event per account concerned (one under ``venue:<name>`` when none is); the
    event id comes from the finding's key, so the same finding raised again after a
    replay is the same event.
    """
    accounts = finding.accounts or (f"venue:{venue}",)
    out: list[Record] = []
    for account in accounts:
        out.append(
            RiskEvent(
                event_id=f"E-{finding.rule}-{finding.key}-{account}"[:160],
                account=account,
                rule=finding.rule,
                severity=Severity.CRITICAL,
                message=f"venue {venue}: {finding.message}",
                symbol=finding.symbol,
                order_id=finding.order_id,
                values={"venue": venue, **finding.values},
                ts=ts,
            )
        )
        if finding.reduce and finding.accounts:
            out.append(
                Control(
                    scope=str(Scope.account(account)), state=TradingState.REDUCING,
                    reason=f"{finding.rule} at venue {venue}: {finding.message}"[:1000],
                    updated_by="execution", ts=ts,
                )
            )
    return out
