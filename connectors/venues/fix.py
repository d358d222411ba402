"""The FIX 4.4 venue adapter: ``VenueAdapter`` over ``FixSession`` + ``FixInitiator``.

``submit``/``cancel``/``request_status`` only put a call on the initiator's queue; the
I/O thread routes it. While the session is not logged on, orders wait in a pending
list and go out right after the next logon (after the status requests for IN_FLIGHT
orders); one still waiting after ``pending_order_timeout_s`` is rejected locally
(a REJECTED report with the reason) and recorded NOT_SENT, so it can never go out
later. An order sent and not answered at all for ``status_after_s`` (a lost ack) gets
an OrderStatusRequest, again at that interval until something about it comes back;
it is never sent again. A cancel of an order still waiting here cancels it locally (CANCELED).

Reports are written to the store's outbox on the I/O thread (``ReportLog``: fsynced,
numbered) and handed over by ``poll_reports``. ``snapshot()`` returns the offset of
the next report not yet handed over and ``restore()`` takes it back, so a consumer
that keeps the snapshot with its own recovery state (Job D in its Bytewax snapshot)
gets every report from there again after a crash, with the original ExecIDs: a fill
read off the wire but not yet written downstream is never lost. Without
``restore()`` every report still in the outbox is handed over again at connect.

The snapshot also carries the orders and cancels handed to ``submit``/``cancel`` that
are not in the store's order journal yet (still queued for the I/O thread, or waiting
for a logon): the consumer takes them as sent, so after a crash ``restore()`` hands
them in again. One that did reach the journal in between is not sent twice (a NEW
becomes a status request); a cancel may go out a second time and be refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from connectors.fix.application import FixApplication, Routed
from connectors.fix.initiator import FixInitiator
from connectors.fix.session import (
    Clock,
    EventKind,
    FixSession,
    SessionOutput,
    SessionState,
    utc_now,
)
from connectors.fix.settings import FixSettings
from connectors.fix.store import OrderJournal, OrderPhase, SessionStore, SyncGroup
from connectors.venues.base import JournalingVenue, VenueError, VenueFinding, VenueHealth, VenueOrder
from schemas import ExecStatus, OrderAction, ValidatedOrder, VenueFill

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Pending:
    order: ValidatedOrder
    cancel: bool
    since: float


class FixVenue(JournalingVenue[FixSettings]):
    """Send orders to a FIX 4.4 venue and bring its execution reports back."""

    def __init__(
        self, settings: FixSettings, *, name: str = "fix", clock: Clock = utc_now
    ) -> None:
        super().__init__(settings, name)
        self._clock = clock
        self._asked: dict[str, float] = {}
        """IN_FLIGHT orders and when they were last sent or asked about (I/O thread)."""
        self._next_status_check = 0.0
        self._pending: list[_Pending] = []
        self._logons = 0
        self._session_error = ""
        self._events: dict[str, int] = {}
        self._logged_on = threading.Event()
        self._session: FixSession | None = None
        self._app: FixApplication | None = None
        self._initiator: FixInitiator | None = None
        self._closed = False

    # -- required ------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the store and start the initiator thread (returns at once)."""
        if self._initiator is not None:
            return
        directory = self._settings.session_dir
        group = SyncGroup()  # one fsync per file per session batch (see connectors.fix.store)
        store = SessionStore(directory, fsync=self._settings.fsync, group=group)
        journal = OrderJournal(
            directory, fsync=self._settings.fsync, max_seen=self._settings.max_seen_exec_ids, group=group
        )
        self._open_outbox(journal)
        self._session = FixSession(self._settings, store, self._clock)
        self._app = FixApplication(
            self._name, journal, self._clock, fill_gaps=self._settings.fill_gaps,
            resend_max_age_s=self._settings.resend_max_age_s,
        )
        self._session.resend_filter = self._app.safe_to_resend
        self._initiator = FixInitiator(self._session, self)
        self._initiator.start()
        self._hand_back_restored()

    def submit(self, order: ValidatedOrder) -> None:
        """Enqueue a NEW order for the I/O thread."""
        if order.action is not OrderAction.NEW:
            raise VenueError(f"submit takes NEW orders, got {order.action} for {order.order_id}")
        since = time.monotonic()
        initiator = self._initiator_or_fail()
        self._hand_in(order)
        initiator.call_soon(lambda: self._new(order, since))

    def cancel(self, order: ValidatedOrder) -> None:
        """Enqueue a cancel of ``order.order_id`` for the I/O thread."""
        since = time.monotonic()
        initiator = self._initiator_or_fail()
        self._hand_in(order)
        initiator.call_soon(lambda: self._cancel(order, since))

    def health(self) -> VenueHealth:
        """Return session state, sequence numbers, counts and ack/fill latencies."""
        session, app, initiator = self._session, self._app, self._initiator
        if session is None or app is None or initiator is None:
            return VenueHealth(self._name, session_state="CLOSED")
        with initiator.lock:
            return VenueHealth(
                self._name,
                session_state=session.state.value,
                connected=initiator.connected,
                logons=self._logons,
                msgs_sent=session.msgs_sent,
                msgs_received=session.msgs_received,
                details={
                    "logged_on": session.state is SessionState.ACTIVE,
                    "next_sender_seq": session.next_sender_seq,
                    "next_target_seq": session.next_target_seq,
                    "connects": initiator.connects,
                    "connect_failures": initiator.connect_failures,
                    "last_error": initiator.last_error,
                    "halted": initiator.halted,
                    "last_session_error": self._session_error,
                    "pending": len(self._pending),
                    "unanswered": len(self._asked),
                    "reports_queued": app.journal.reports.queued,
                    "next_report": self._next_report,
                    "in_flight": len(app.in_flight()),
                    **app.counts,
                    **{f"events_{k.lower()}": v for k, v in self._events.items()},
                    **self._latency_figures(),
                },
            )

    def close(self) -> None:
        """Log out, stop the I/O thread and close the store."""
        if self._closed:
            return
        self._closed = True
        if self._initiator is not None:
            self._initiator.stop()
        if self._session is not None:
            self._session.store.close()
        if self._app is not None:
            self._app.journal.close()

    # -- optional ------------------------------------------------------------------------

    def request_status(self, order_id: str) -> None:
        """Enqueue an OrderStatusRequest; the answer arrives as a STATUS report."""
        self._initiator_or_fail().call_soon(lambda: self._status(order_id))

    def poll_findings(self) -> list[VenueFinding]:
        """Return what was found wrong with the venue since the last call (see the application)."""
        return self._under_lock(lambda app: app.take_findings())

    def open_orders(self) -> list[VenueOrder]:
        """Return the orders sent and not done (IN_FLIGHT ones flagged)."""
        return self._under_lock(lambda app: app.open_orders())

    def _under_lock(self, read: Callable[[FixApplication], list[T]]) -> list[T]:
        """Return ``read(application)`` under the I/O thread's lock; nothing before connect."""
        initiator, app = self._initiator, self._app
        if initiator is None or app is None:
            return []
        with initiator.lock:
            return read(app)

    # -- recovery (snapshot, restore: JournalingVenue) -------------------------------------

    def _journal_if_open(self) -> OrderJournal | None:
        return None if self._app is None else self._app.journal

    # -- extras --------------------------------------------------------------------------

    def wait_logged_on(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a logon (tests and tools, not the worker)."""
        return self._logged_on.wait(timeout)

    @property
    def session_state(self) -> SessionState:
        """Return the FIX session state."""
        return SessionState.DISCONNECTED if self._session is None else self._session.state

    # -- on the I/O thread ---------------------------------------------------------------

    def on_output(self, out: SessionOutput) -> list[bytes]:
        """Turn session output into reports; after a logon, send what waited for it."""
        app, session = self._parts()
        logon = False
        for event in out.events:
            self._events[event.kind.value] = self._events.get(event.kind.value, 0) + 1
            self._add(app.on_event(event))
            if event.kind is EventKind.LOGON:
                logon = True
            elif event.kind is EventKind.ERROR:
                self._session_error = event.text
        for msg in out.app_messages:
            self._add(app.on_message(msg))
        asks = app.take_requests()  # status requests the application decided on
        if not session.ready:
            return []
        frames = [session.send_app(m) for m in asks]
        if not logon:
            return frames
        self._logons += 1
        self._logged_on.set()
        frames += [session.send_app(m) for m in app.on_logon()]
        now = time.monotonic()
        self._asked = dict.fromkeys(app.in_flight(), now)
        pending, self._pending = self._pending, []
        for p in pending:
            frames += self._cancel(p.order, p.since) if p.cancel else self._new(p.order, p.since)
        return frames

    def on_idle(self) -> list[bytes]:
        """Reject orders that waited too long for a session; ask about unanswered ones."""
        frames = self._ask_unanswered()
        if not self._pending:
            return frames
        app, _ = self._parts()
        now = time.monotonic()
        limit = self._settings.pending_order_timeout_s
        halted = self._initiator.halted if self._initiator is not None else None
        keep: list[_Pending] = []
        for p in self._pending:
            if halted is None and now - p.since < limit:
                keep.append(p)
                continue
            why = (f"not sent: FIX session stopped ({halted})" if halted
                   else f"not sent: no FIX session for {limit:g}s")
            if p.cancel:
                self._add([app.cancel_not_sent(p.order, why)])
            else:
                self._add([app.reject_unsent(p.order, why)])
            self._journaled(p.order)
        self._pending = keep
        return frames

    def _ask_unanswered(self) -> list[bytes]:
        limit = self._settings.status_after_s
        now = time.monotonic()
        if limit is None or not self._asked or now < self._next_status_check:
            return []
        self._next_status_check = now + min(limit, 0.1)
        app, session = self._parts()
        if not session.ready:
            return []
        frames: list[bytes] = []
        for order_id, at in list(self._asked.items()):
            if now - at < limit:
                continue
            entry = app.journal.get(order_id)
            if entry is None or entry.phase is not OrderPhase.IN_FLIGHT:
                del self._asked[order_id]
                continue
            log.warning("fix: no answer about %s for %.1fs; requesting its status", order_id, now - at)
            self._asked[order_id] = now
            frames += self._route(app.status_request(order_id))
        return frames

    def on_disconnected(self) -> None:
        """Note the disconnect (orders now wait in the pending list)."""
        self._logged_on.clear()

    def _new(self, order: ValidatedOrder, since: float) -> list[bytes]:
        app, session = self._parts()
        if not session.ready:
            self._pending.append(_Pending(order, cancel=False, since=since))
            return []
        routed = app.new_order(order)
        self._journaled(order)
        if routed.messages:
            self._sent_at.setdefault(order.order_id, time.monotonic())
            self._asked[order.order_id] = time.monotonic()
        return self._route(routed)

    def _cancel(self, order: ValidatedOrder, since: float) -> list[bytes]:
        app, session = self._parts()
        waiting = [p for p in self._pending if not p.cancel and p.order.order_id == order.order_id]
        if waiting:
            self._pending.remove(waiting[0])
            self._add([app.cancel_unsent(waiting[0].order, "canceled before it was sent")])
            self._journaled(waiting[0].order)
            self._journaled(order)
            return []
        if not session.ready:
            self._pending.append(_Pending(order, cancel=True, since=since))
            return []
        routed = app.cancel_order(order)
        self._journaled(order)
        return self._route(routed)

    def _status(self, order_id: str) -> list[bytes]:
        app, session = self._parts()
        if not session.ready:
            entry = app.journal.get(order_id)
            if entry is not None and entry.phase is not OrderPhase.DONE:
                entry.phase = OrderPhase.IN_FLIGHT  # asked for at the next logon
            return []
        return self._route(app.status_request(order_id))

    def _route(self, routed: Routed) -> list[bytes]:
        _, session = self._parts()
        self._add(routed.reports)
        return [session.send_app(m) for m in routed.messages]

    def _add(self, reports: list[VenueFill]) -> None:
        """Measure latencies (the reports are already in the outbox)."""
        now = time.monotonic()
        for fill in reports:
            self._asked.pop(fill.order_id, None)  # answered (or settled locally)
            sent = self._sent_at.get(fill.order_id)
            if sent is not None:
                if fill.status in (ExecStatus.NEW, ExecStatus.ACK, ExecStatus.REJECTED):
                    self._ack_ms.append((now - sent) * 1000)
                elif fill.status in (ExecStatus.PARTIAL, ExecStatus.FILLED):
                    self._fill_ms.append((now - sent) * 1000)
                    if fill.status is ExecStatus.FILLED:
                        self._sent_at.pop(fill.order_id, None)

    def _parts(self) -> tuple[FixApplication, FixSession]:
        if self._app is None or self._session is None:
            raise VenueError("FixVenue used before connect()")
        return self._app, self._session

    def _initiator_or_fail(self) -> FixInitiator:
        if self._initiator is None or self._closed:
            raise VenueError("FixVenue is not connected (call connect() first)")
        return self._initiator


