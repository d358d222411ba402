"""The FIX application layer: validated orders out, execution reports in as VenueFills.

ID mapping: the internal ``order_id`` is the ClOrdID (11) of the NewOrderSingle, so a
retry after a crash reuses it; a cancel gets ClOrdID ``<order_id>-C<n>`` (``n`` counts
that order's cancels) with OrigClOrdID = ``order_id``; the venue's OrderID (37) is
recorded the first time it is seen. The map lives in the ``OrderJournal`` and is
written before any message goes out.

IN_FLIGHT: an order recorded as sent whose outcome is unknown — no report yet, or not
confirmed since a restart. Such an order is never sent again: submitting it again
(a replay after a crash) sends an OrderStatusRequest instead, and every IN_FLIGHT
order gets one after each logon. An order rejected locally (it never went out) is
NOT_SENT and stays rejected on any replay.

Reports: every ExecutionReport becomes at most one VenueFill, de-duplicated by ExecID
across restarts (persisted, bounded); cumulative quantities are capped by the order
quantity. An OrderCancelReject becomes a CANCEL_REJECTED report (the order itself
did not change). Every report
this layer makes is appended to the store's outbox (``OrderJournal.log_report``)
before the ExecID is remembered or the order's phase moves, so a report is either
replayable after a crash or never taken as seen.

Lost fills (with ``fill_gaps``, which ``FixVenue`` turns on from
``FixSettings.fill_gaps``): a report whose CumQty, less its own LastQty, is above the
quantity of the fills logged for that order (a fill the venue sent but this process
never logged, e.g. read off the wire just before a crash, or never sent by a venue
that crashed) is preceded by one synthetic fill of the difference: ExecID
``<order_id>-SYN-<cum>`` (deterministic: the same gap always gets the same id), priced
so the average matches the venue's AvgPx, status PARTIAL or FILLED, reason ``synthetic
fill: ...``. After a logon every open order (IN_FLIGHT or WORKING) gets an
OrderStatusRequest, so such a gap is found even when the venue sends nothing more for
the order.

The venue is not trusted blindly; what it does wrong becomes a ``VenueFinding``
(``take_findings``; the engine makes CRITICAL risk events of them):

- A session Reject (35=3) or BusinessMessageReject (35=j) of a NewOrderSingle does
  not decide the order: it sends an OrderStatusRequest (``take_requests``) and the
  answer does. A venue answering "unknown order" for an order with fills is a
  ``FILLED_ORDER_UNKNOWN`` finding, and the order is not moved to REJECTED.
- Over-fills are capped consistently: CumQty at the order quantity and LastQty at
  what is left of it; the excess is an ``OVERFILL`` finding.
- A report for a ClOrdID we never sent is an ``UNKNOWN_ORDER`` finding.
- Side, Account and Symbol come from our order map; a report saying otherwise is a
  ``REPORT_MISMATCH`` finding.
- The venue lost its state (``VENUE_STATE_LOST``) or refuses logons
  (``LOGON_REFUSED``): a finding naming every account with an open order, to be
  moved to REDUCING.
- ``safe_to_resend`` tells the session which stored messages may go out again on a
  ResendRequest: not a NewOrderSingle or cancel of an order that is done or has fills,
  nor one older than ``resend_max_age_s``.

ExecType (150) -> status: 0 NEW; A and 6/E (pending new/cancel/replace) ACK; F (and
FIX 4.2's 1/2) PARTIAL or FILLED by OrdStatus/LeavesQty; 4 CANCELED; 8 REJECTED;
C EXPIRED; I (status answer) STATUS, or REJECTED when OrdStatus says 8 (the venue does
not know the order); 3/5/D/G/H STATUS.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from hashlib import sha256

import simplefix
from pydantic import ValidationError

from connectors.fix.codec import (
    AppMessage,
    FixEncodeError,
    MsgType,
    Tag,
    decimal,
    fmt_decimal,
    fmt_time,
    parse,
    parse_time,
    safe_text,
    text,
)
from connectors.fix.session import Clock, EventKind, SessionEvent, utc_now
from connectors.fix.store import OrderEntry, OrderJournal, OrderPhase
from connectors.venues.base import VenueFinding, VenueOrder
from schemas import (
    CANCEL_REJECTED_PREFIX,
    SYNTHETIC_TAG,
    ExecStatus,
    OrderType,
    Side,
    ValidatedOrder,
    VenueFill,
)
from schemas.base import ID_PATTERN, RECORD_ID_PATTERN

"""Marks the exec_id of a fill made up for quantity the venue reports but we never
received (``<order_id>-SYN-<venue CumQty>``): a reconciliation finding."""

log = logging.getLogger(__name__)

_SIDE_OUT = {Side.BUY: "1", Side.SELL: "2"}
_SIDE_IN = {"1": Side.BUY, "2": Side.SELL, "5": Side.SELL, "6": Side.SELL}
_ORD_TYPE = {OrderType.MARKET: "1", OrderType.LIMIT: "2"}
_TIF = {"DAY": "0", "GTC": "1", "IOC": "3"}

_EXEC_TYPE: dict[str, ExecStatus] = {
    "0": ExecStatus.NEW,
    "A": ExecStatus.ACK,
    "6": ExecStatus.ACK,
    "E": ExecStatus.ACK,
    "4": ExecStatus.CANCELED,
    "8": ExecStatus.REJECTED,
    "C": ExecStatus.EXPIRED,
    "I": ExecStatus.STATUS,
    "3": ExecStatus.STATUS,
    "5": ExecStatus.STATUS,
    "D": ExecStatus.STATUS,
    "G": ExecStatus.STATUS,
    "H": ExecStatus.STATUS,
}
_TRADE_TYPES = frozenset({"F", "1", "2"})
_DONE = frozenset({ExecStatus.FILLED, ExecStatus.CANCELED, ExecStatus.REJECTED, ExecStatus.EXPIRED})
_DONE_ORD_STATUS = frozenset({"2", "4", "8", "C"})
STATUS_WAIT_S = 1.0
"""After a status request, the next one for the same order waits this long (unless answered)..."""
STATUS_WAIT_MAX_S = 30.0
"""...doubling up to this."""
PX_QUANTUM = Decimal("0.00000001")
"""Prices worked out here (synthetic fills) are rounded to DECIMAL(18,8)."""


def exec_status(exec_type: str, ord_status: str, leaves: Decimal | None) -> ExecStatus | None:
    """Map ExecType (150) and OrdStatus (39) to an ``ExecStatus`` (None if unknown)."""
    if exec_type in _TRADE_TYPES:
        done = ord_status == "2" or (leaves is not None and leaves == 0)
        return ExecStatus.FILLED if done else ExecStatus.PARTIAL
    if exec_type == "I" and ord_status == "8":
        return ExecStatus.REJECTED
    return _EXEC_TYPE.get(exec_type)


@dataclass(slots=True)
class Routed:
    """What routing one request produced: messages to send and reports made locally."""

    messages: list[AppMessage] = field(default_factory=list)
    reports: list[VenueFill] = field(default_factory=list)


_RECORD_ID = re.compile(RECORD_ID_PATTERN)
EXEC_ID_MAX = 128
"""Longest exec id kept as the venue sent it (``RECORD_ID_MAX`` leaves room for prefixes)."""
_NAME = re.compile(ID_PATTERN)


def _clean(value: str) -> bool:
    """Tell whether a venue-chosen OrderID can be kept: a valid id, echoed back safely."""
    if _RECORD_ID.match(value):
        return True
    log.error("fix: venue OrderID %r is not a valid id; not kept", value)
    return False


def safe_exec_id(value: str) -> str:
    """Return ``value`` if it is a valid record id, else a stable id derived from it.

    A venue's ExecID (or the ClOrdID a reject quotes) is the venue's text: one that
    breaks the id pattern must neither crash Job D nor lose the fill, so it becomes
    ``X-`` + 32 hex digits of its SHA-256 (the same every time: de-duplication holds).
    Longer than ``EXEC_ID_MAX`` counts as breaking it: ids derived from an exec id
    (``E-REC-<exec id>``, Job D's reconciliation event) must stay valid too.
    """
    if len(value) <= EXEC_ID_MAX and _RECORD_ID.match(value):
        return value
    return "X-" + sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]



class FixApplication:
    """Turn orders into FIX messages and FIX reports into VenueFills (see module doc)."""

    def __init__(
        self,
        venue: str,
        journal: OrderJournal,
        clock: Clock = utc_now,
        *,
        fill_gaps: bool = False,
        resend_max_age_s: float = 10.0,
    ) -> None:
        self._venue = venue
        self._journal = journal
        self._clock = clock
        self._resend_max_age_s = resend_max_age_s
        self._findings: list[VenueFinding] = []
        self._asking: dict[str, tuple[datetime, float]] = {}
        """Orders with a status request unanswered: when another may go, and the wait."""
        self._requests: list[AppMessage] = []
        self._fill_gaps = fill_gaps
        """Precede a report whose CumQty is above the logged fills with a synthetic fill;
        off, every ExecutionReport maps to at most one VenueFill."""
        self.counts = {
            "orders_sent": 0,
            "cancels_sent": 0,
            "status_requests": 0,
            "acks": 0,
            "fills": 0,
            "rejects": 0,
            "duplicates": 0,
            "unknown_reports": 0,
            "bad_reports": 0,
            "not_resent": 0,
            "synthetic_fills": 0,
            "findings": 0,
            "status_requests_held": 0,
            "not_resent_on_request": 0,
        }

    @property
    def journal(self) -> OrderJournal:
        """Return the order journal."""
        return self._journal

    # -- outbound ------------------------------------------------------------------------

    def new_order(self, order: ValidatedOrder) -> Routed:
        """Route a NEW order: a NewOrderSingle the first time, never twice (see doc)."""
        entry = self._journal.get(order.order_id)
        if entry is None:
            try:
                message = self._new_order_single(order)
            except FixEncodeError as exc:  # only an order built without validation
                log.error("fix: order %r cannot be encoded: %s", order.order_id, exc)
                try:
                    return Routed(reports=[self.reject_unsent(order, f"not sent: {exc}")])
                except ValidationError:
                    return Routed()
            entry = _entry(order, OrderPhase.IN_FLIGHT)
            self._journal.record_order(entry)
            self.counts["orders_sent"] += 1
            return Routed([message])
        if entry.phase is OrderPhase.NOT_SENT:
            try:
                return Routed(reports=self._emit([self._unsent_report(entry)]))
            except ValidationError:  # journalled from an order built without validation
                return Routed()
        if entry.phase is OrderPhase.DONE:
            log.info("fix: order %s submitted again but already done; ignored", order.order_id)
            return Routed()
        self.counts["not_resent"] += 1
        log.warning(
            "fix: order %s is already %s at the venue; requesting its status, not re-sending",
            order.order_id,
            entry.phase.value,
        )
        entry.phase = OrderPhase.IN_FLIGHT
        return Routed(self._status_request(entry))

    def reject_unsent(self, order: ValidatedOrder, reason: str) -> VenueFill:
        """Reject an order that never went out; it stays rejected on any replay."""
        self.counts["rejects"] += 1
        return self._emit([self._unsent(order, ExecStatus.REJECTED, reason)])[0]

    def cancel_unsent(self, order: ValidatedOrder, reason: str) -> VenueFill:
        """Cancel an order that never went out; it stays canceled on any replay."""
        return self._emit([self._unsent(order, ExecStatus.CANCELED, reason)])[0]

    def cancel_not_sent(self, cancel: ValidatedOrder, why: str) -> VenueFill:
        """Report a cancel request that could not be sent (the order is unchanged)."""
        return self._emit([self._notice(cancel, f"CXLREJ-{fmt_time(cancel.ts)}", why)])[0]

    def _unsent(self, order: ValidatedOrder, status: ExecStatus, reason: str) -> VenueFill:
        entry = self._journal.get(order.order_id)
        if entry is None:
            entry = _entry(order, OrderPhase.NOT_SENT, reason)
            entry.local_status = status.value
            self._journal.record_order(entry)
        return self._unsent_report(entry)

    def _unsent_report(self, entry: OrderEntry) -> VenueFill:
        status = ExecStatus(entry.local_status or ExecStatus.REJECTED.value)
        return self._local(entry, status, status.value[:3], entry.reason)

    def cancel_order(self, order: ValidatedOrder) -> Routed:
        """Route a cancel: an OrderCancelRequest with ClOrdID ``<order_id>-C<n>``."""
        entry = self._journal.get(order.order_id)
        tag = f"CXLREJ-{fmt_time(order.ts)}"
        if entry is None:
            return Routed(reports=self._emit([self._notice(order, tag, "unknown order")]))
        if entry.phase in (OrderPhase.DONE, OrderPhase.NOT_SENT):
            why = f"{CANCEL_REJECTED_PREFIX}order is {entry.phase.value.lower()}"
            return Routed(reports=self._emit([self._local(entry, ExecStatus.CANCEL_REJECTED, tag, why)]))
        if entry.pending_cancel is not None:
            log.info("fix: cancel of %s already pending (%s)", order.order_id, entry.pending_cancel)
            return Routed()
        cl_ord_id = f"{entry.order_id}-C{len(entry.cancel_ids) + 1}"
        self._journal.record_cancel(entry.order_id, cl_ord_id)
        self.counts["cancels_sent"] += 1
        fields = [
            (Tag.ORIG_CL_ORD_ID, entry.cl_ord_id),
            (Tag.CL_ORD_ID, cl_ord_id),
            *_order_identity(entry),
            (Tag.TRANSACT_TIME, fmt_time(order.ts)),
            (Tag.ORDER_QTY, entry.qty),
        ]
        return Routed([AppMessage(MsgType.ORDER_CANCEL_REQUEST, tuple(fields))])

    def status_request(self, order_id: str) -> Routed:
        """Route an OrderStatusRequest for a known order (unknown ids are logged)."""
        entry = self._journal.get(order_id)
        if entry is None or entry.phase is OrderPhase.NOT_SENT:
            log.warning("fix: status request for %s, which was never sent", order_id)
            return Routed()
        return Routed(self._status_request(entry))

    def on_logon(self) -> list[AppMessage]:
        """Return a status request for every open order (IN_FLIGHT or WORKING).

        IN_FLIGHT ones have an unknown outcome; WORKING ones may have traded while the
        connection was down in a way no resend brings back (a venue that crashed
        between booking a fill and sending it): the answer's CumQty tells.
        """
        self._asking.clear()  # a new session: every open order may be asked again
        return [
            ask
            for e in self._journal.entries()
            if e.phase in (OrderPhase.IN_FLIGHT, OrderPhase.WORKING)
            for ask in self._status_request(e)
        ]

    def in_flight(self) -> list[str]:
        """Return the order ids whose outcome is unknown."""
        return [e.order_id for e in self._journal.entries() if e.phase is OrderPhase.IN_FLIGHT]

    def open_orders(self) -> list[VenueOrder]:
        """Return the orders sent and not done, as far as the reports tell."""
        return self._journal.open_orders(self._venue, in_flight_status=ExecStatus.STATUS)

    # -- inbound -------------------------------------------------------------------------

    def on_message(self, msg: simplefix.FixMessage) -> list[VenueFill]:
        """Turn one inbound application message into VenueFills (maybe none)."""
        msg_type = text(msg, Tag.MSG_TYPE)
        if msg_type == MsgType.EXECUTION_REPORT:
            return self._execution_report(msg)
        if msg_type == MsgType.ORDER_CANCEL_REJECT:
            return self._cancel_reject(msg)
        if msg_type == MsgType.BUSINESS_MESSAGE_REJECT:
            return self._business_reject(msg)
        log.warning("fix: application message 35=%s not handled", msg_type)
        return []

    def on_event(self, event: SessionEvent) -> list[VenueFill]:
        """Act on a session event: a Reject of one of our orders, or a venue gone wrong."""
        if event.kind in (EventKind.VENUE_STATE_LOST, EventKind.LOGON_REFUSED):
            self._venue_alarm(event)
            return []
        if event.kind is not EventKind.REJECT_RECEIVED or event.ref_message is None:
            return []
        ref = parse(event.ref_message)
        return self._refused(
            text(ref, Tag.MSG_TYPE) or "",
            text(ref, Tag.CL_ORD_ID),
            f"session reject: {event.text}",
            parse_time(text(ref, Tag.SENDING_TIME)),
        )

    def take_findings(self) -> list[VenueFinding]:
        """Return the findings about the venue since the last call."""
        out, self._findings = self._findings, []
        return out

    def take_requests(self) -> list[AppMessage]:
        """Return the messages this layer wants sent on its own (status requests)."""
        out, self._requests = self._requests, []
        return out

    def safe_to_resend(self, msg: simplefix.FixMessage) -> bool:
        """Tell whether a stored message may go out again on a ResendRequest (see doc)."""
        msg_type = text(msg, Tag.MSG_TYPE)
        if msg_type not in (MsgType.NEW_ORDER_SINGLE, MsgType.ORDER_CANCEL_REQUEST):
            return True
        ref = Tag.CL_ORD_ID if msg_type == MsgType.NEW_ORDER_SINGLE else Tag.ORIG_CL_ORD_ID
        cl_ord_id = text(msg, ref)
        entry = self._journal.by_cl_ord_id(cl_ord_id) if cl_ord_id else None
        sent = parse_time(text(msg, Tag.SENDING_TIME))
        age = (self._clock() - sent).total_seconds() if sent is not None else float("inf")
        safe = (
            entry is not None
            and entry.phase is not OrderPhase.DONE
            and self._journal.reports.reported(entry.order_id).qty == 0
            and age <= self._resend_max_age_s
        )
        if not safe:
            self.counts["not_resent_on_request"] += 1
            log.warning("fix: 35=%s of %s (%.1fs old) not re-sent: done, filled or too old",
                        msg_type, cl_ord_id, age)
        return safe

    def _find_out(self, finding: VenueFinding) -> None:
        self.counts["findings"] += 1
        log.critical("fix: %s: %s", finding.rule, finding.message)
        self._findings.append(finding)

    def _venue_alarm(self, event: SessionEvent) -> None:
        accounts = sorted({
            e.account for e in self._journal.entries()
            if e.phase in (OrderPhase.IN_FLIGHT, OrderPhase.WORKING)
        })
        at = fmt_time(self._clock()).replace("-", "T")
        self._find_out(VenueFinding(
            rule=event.kind.value, message=event.text, key=f"{at}-{event.ref_seq or 0}",
            accounts=tuple(accounts), reduce=True,
            values={"open_accounts": str(len(accounts))},
        ))

    def _execution_report(self, msg: simplefix.FixMessage) -> list[VenueFill]:
        entry = self._find(msg)
        exec_id = text(msg, Tag.EXEC_ID) or ""
        if entry is None:
            self.counts["unknown_reports"] += 1
            self._unknown_order(msg, exec_id)
            return []
        self._asking.pop(entry.order_id, None)  # any report answers a status request
        if self._journal.seen(exec_id):
            self.counts["duplicates"] += 1
            log.info("fix: ExecID %s already turned into a fill; dropped", exec_id)
            return []
        exec_type, ord_status = text(msg, Tag.EXEC_TYPE) or "", text(msg, Tag.ORD_STATUS) or ""
        status = exec_status(exec_type, ord_status, decimal(msg, Tag.LEAVES_QTY))
        filled = self._journal.reports.reported(entry.order_id).qty
        if status is ExecStatus.REJECTED and exec_type == "I" and filled > 0:
            self._journal.mark_seen(exec_id)
            self._find_out(VenueFinding(
                rule="FILLED_ORDER_UNKNOWN",
                message=f"the venue does not know order {entry.order_id}, of which "
                f"{fmt_decimal(filled)} was filled: kept as it was, not REJECTED",
                key=safe_exec_id(exec_id), accounts=(entry.account,), order_id=entry.order_id,
                symbol=entry.symbol, reduce=True, values={"filled_qty": fmt_decimal(filled)},
            ))
            return []
        if status is None:
            self.counts["bad_reports"] += 1
            log.warning("fix: ExecType %s not understood; dropped", text(msg, Tag.EXEC_TYPE))
            self._journal.mark_seen(exec_id)
            return []
        fill = self._fill(msg, entry, status, exec_id)
        if fill is None:
            self._journal.mark_seen(exec_id)
            return []
        gap = self._gap_fill(entry, fill) if self._fill_gaps else []
        out = self._emit([*gap, fill])  # logged: now seen too
        self._advance(entry, fill, ord_status)
        return out

    def _gap_fill(self, entry: OrderEntry, report: VenueFill) -> list[VenueFill]:
        """Return the synthetic fill for quantity traded but never logged (see doc)."""
        before = report.cum_qty - report.last_qty
        known = self._journal.reports.reported(entry.order_id)
        gap = before - known.qty
        if gap < 0:
            log.error(
                "fix: %s says %s filled before it, but fills of %s were logged for %s",
                report.exec_id, before, known.qty, entry.order_id,
            )
        if gap <= 0:
            return []
        notional = report.avg_px * report.cum_qty - report.last_qty * report.last_px - known.notional
        px = (notional / gap).quantize(PX_QUANTUM)
        if px <= 0:
            px = report.avg_px
        if px <= 0:
            self.counts["bad_reports"] += 1
            log.error("fix: %s shows %s unreported on %s but no price; no fill made",
                      report.exec_id, gap, entry.order_id)
            return []
        qty = Decimal(entry.qty)
        done = before >= qty
        self.counts["synthetic_fills"] += 1
        self.counts["fills"] += 1
        log.warning(
            "fix: %s: CumQty %s but fills of only %s logged; synthetic fill of %s @ %s",
            entry.order_id, before, known.qty, gap, px,
        )
        return [
            VenueFill(
                order_id=entry.order_id,
                venue=self._venue,
                exec_id=f"{entry.order_id}{SYNTHETIC_TAG}{fmt_decimal(before)}",
                status=ExecStatus.FILLED if done else ExecStatus.PARTIAL,
                account=entry.account,
                symbol=entry.symbol,
                side=Side(entry.side),
                last_qty=gap,
                last_px=px,
                cum_qty=before,
                leaves_qty=Decimal(0) if done else qty - before,
                avg_px=((known.notional + gap * px) / before).quantize(PX_QUANTUM),
                venue_order_id=report.venue_order_id or entry.venue_order_id,
                reason=f"synthetic fill: CumQty {fmt_decimal(before)} in {report.exec_id}, "
                f"fills of {fmt_decimal(known.qty)} received",
                ts=report.ts,
            )
        ]

    def _emit(self, fills: list[VenueFill]) -> list[VenueFill]:
        for fill in fills:
            self._journal.log_report(fill)
            self._asking.pop(fill.order_id, None)  # answered: it may be asked again
        return fills

    def _fill(
        self, msg: simplefix.FixMessage, entry: OrderEntry, status: ExecStatus, exec_id: str
    ) -> VenueFill | None:
        qty = Decimal(entry.qty)
        cum = decimal(msg, Tag.CUM_QTY) or Decimal(0)
        last_qty = decimal(msg, Tag.LAST_QTY) or Decimal(0)
        room = max(qty - self._journal.reports.reported(entry.order_id).qty, Decimal(0))
        if cum > qty or last_qty > room:
            self._find_out(VenueFinding(
                rule="OVERFILL",
                message=f"{exec_id} reports CumQty {fmt_decimal(cum)} / LastQty "
                f"{fmt_decimal(last_qty)} on {entry.order_id} of {fmt_decimal(qty)} with "
                f"{fmt_decimal(room)} left: capped at the order quantity",
                key=safe_exec_id(exec_id), accounts=(entry.account,), order_id=entry.order_id,
                symbol=entry.symbol,
                values={"cum_qty": fmt_decimal(cum), "last_qty": fmt_decimal(last_qty),
                        "order_qty": fmt_decimal(qty)},
            ))
            cum, last_qty = min(cum, qty), min(last_qty, room)
        self._check_identity(msg, entry, exec_id)
        venue_order_id = text(msg, Tag.ORDER_ID)
        if venue_order_id and venue_order_id != "NONE" and _clean(venue_order_id):
            self._journal.record_venue_id(entry.order_id, venue_order_id)
        reason = text(msg, Tag.TEXT) or ""
        if status is ExecStatus.REJECTED and text(msg, Tag.ORD_REJ_REASON):
            reason = f"{reason} (OrdRejReason={text(msg, Tag.ORD_REJ_REASON)})".strip()
        try:
            return VenueFill(
                order_id=entry.order_id,
                venue=self._venue,
                exec_id=safe_exec_id(exec_id),
                status=status,
                account=entry.account,
                symbol=entry.symbol,
                side=Side(entry.side),
                last_qty=last_qty,
                last_px=decimal(msg, Tag.LAST_PX) or Decimal(0),
                cum_qty=cum,
                leaves_qty=max(decimal(msg, Tag.LEAVES_QTY) or Decimal(0), Decimal(0)),
                avg_px=decimal(msg, Tag.AVG_PX) or Decimal(0),
                fee=decimal(msg, Tag.COMMISSION) or Decimal(0),
                venue_order_id=entry.venue_order_id,
                reason=reason,
                ts=self._ts(msg),
            )
        except ValidationError as exc:
            self.counts["bad_reports"] += 1
            log.error("fix: ExecutionReport %s does not make a valid fill: %s", exec_id, exc)
            return None

    def _check_identity(self, msg: simplefix.FixMessage, entry: OrderEntry, exec_id: str) -> None:
        """Find out a report whose Side, Account or Symbol is not the order's (ours win)."""
        theirs = {
            "side": _SIDE_IN.get(text(msg, Tag.SIDE) or "", Side(entry.side)).value,
            "account": text(msg, Tag.ACCOUNT) or entry.account,
            "symbol": text(msg, Tag.SYMBOL) or entry.symbol,
        }
        ours = {"side": Side(entry.side).value, "account": entry.account, "symbol": entry.symbol}
        wrong = sorted(k for k in ours if theirs[k] != ours[k])
        if not wrong:
            return
        said = ", ".join(f"{k} {safe_text(theirs[k], 40)!r} instead of {ours[k]!r}" for k in wrong)
        self._find_out(VenueFinding(
            rule="REPORT_MISMATCH",
            message=f"{safe_text(exec_id, 80)} on {entry.order_id} says {said}; the order's own are used",
            key=safe_exec_id(exec_id), accounts=(entry.account,), order_id=entry.order_id,
            symbol=entry.symbol, values={k: safe_text(theirs[k], 40) for k in wrong},
        ))

    def _unknown_order(self, msg: simplefix.FixMessage, exec_id: str) -> None:
        cl_ord_id = safe_text(text(msg, Tag.CL_ORD_ID) or "", 64)
        account = text(msg, Tag.ACCOUNT) or ""
        self._find_out(VenueFinding(
            rule="UNKNOWN_ORDER",
            message=f"ExecutionReport {safe_text(exec_id, 80)} for ClOrdID {cl_ord_id!r}, "
            "which we never sent: dropped",
            key=safe_exec_id(exec_id or cl_ord_id or "none"),
            accounts=(account,) if _clean(account) and len(account) <= 64 else (),
            values={"cl_ord_id": cl_ord_id},
        ))

    def _advance(self, entry: OrderEntry, fill: VenueFill, ord_status: str) -> None:
        entry.cum_qty, entry.avg_px, entry.leaves_qty = fill.cum_qty, fill.avg_px, fill.leaves_qty
        if fill.status in (ExecStatus.NEW, ExecStatus.ACK):
            self.counts["acks"] += 1
        elif fill.status in (ExecStatus.PARTIAL, ExecStatus.FILLED):
            self.counts["fills"] += 1
        elif fill.status is ExecStatus.REJECTED:
            self.counts["rejects"] += 1
        done = fill.status in _DONE or (
            fill.status is ExecStatus.STATUS and ord_status in _DONE_ORD_STATUS
        )
        if done:
            entry.pending_cancel = None
            self._journal.record_phase(entry.order_id, OrderPhase.DONE, fill.status.value)
        else:
            self._journal.record_phase(entry.order_id, OrderPhase.WORKING)

    def _cancel_reject(self, msg: simplefix.FixMessage) -> list[VenueFill]:
        entry = self._find(msg)
        cl_ord_id = text(msg, Tag.CL_ORD_ID) or ""
        exec_id = f"CXLREJ-{cl_ord_id}"
        if entry is None:
            self.counts["unknown_reports"] += 1
            log.warning("fix: OrderCancelReject %s for an order we never sent", cl_ord_id)
            return []
        if self._journal.seen(exec_id):
            self.counts["duplicates"] += 1
            return []
        why = text(msg, Tag.TEXT) or "no reason given"
        reason = f"{CANCEL_REJECTED_PREFIX}{why} (CxlRejReason={text(msg, Tag.CXL_REJ_REASON) or '-'})"
        out = self._emit(
            [self._local(entry, ExecStatus.CANCEL_REJECTED, exec_id, reason, ts=self._ts(msg), exact_id=True)]
        )
        entry.pending_cancel = None
        if text(msg, Tag.ORD_STATUS) in _DONE_ORD_STATUS:
            self._journal.record_phase(entry.order_id, OrderPhase.DONE, "cancel reject: done")
        return out

    def _business_reject(self, msg: simplefix.FixMessage) -> list[VenueFill]:
        return self._refused(
            text(msg, Tag.REF_MSG_TYPE) or "",
            text(msg, Tag.BUSINESS_REJECT_REF_ID),
            f"business reject {text(msg, Tag.BUSINESS_REJECT_REASON)}: {text(msg, Tag.TEXT) or ''}",
            self._ts(msg),
        )

    def _refused(
        self, ref_type: str, cl_ord_id: str | None, why: str, ts: datetime | None
    ) -> list[VenueFill]:
        entry = self._journal.by_cl_ord_id(cl_ord_id) if cl_ord_id else None
        if entry is None:
            log.warning("fix: %s (35=%s, ClOrdID %s) is not ours", why, ref_type, cl_ord_id)
            return []
        exec_id = f"REFUSED-{cl_ord_id}"
        if self._journal.seen(exec_id):
            return []
        if ref_type == MsgType.NEW_ORDER_SINGLE:
            # Not a verdict on the order (it may be a resent copy of one the venue has):
            # the venue's answer to a status request decides.
            log.warning("fix: %s of order %s; asking the venue for its status", why, entry.order_id)
            if entry.phase is not OrderPhase.DONE:
                entry.phase = OrderPhase.IN_FLIGHT
                self._requests += self._status_request(entry)
            return []
        if ref_type == MsgType.ORDER_CANCEL_REQUEST:
            reason = f"{CANCEL_REJECTED_PREFIX}{why}"
            out = self._emit(
                [self._local(entry, ExecStatus.CANCEL_REJECTED, exec_id, reason, ts=ts, exact_id=True)]
            )
            entry.pending_cancel = None
            return out
        self._journal.mark_seen(exec_id)
        log.warning("fix: %s for 35=%s of order %s", why, ref_type, entry.order_id)
        return []

    # -- helpers -------------------------------------------------------------------------

    def _find(self, msg: simplefix.FixMessage) -> OrderEntry | None:
        for tag in (Tag.CL_ORD_ID, Tag.ORIG_CL_ORD_ID):
            value = text(msg, tag)
            entry = self._journal.by_cl_ord_id(value) if value else None
            if entry is not None:
                return entry
        venue_id = text(msg, Tag.ORDER_ID)
        return self._journal.by_venue_order_id(venue_id) if venue_id else None

    def _ts(self, msg: simplefix.FixMessage) -> datetime:
        return (
            parse_time(text(msg, Tag.TRANSACT_TIME))
            or parse_time(text(msg, Tag.SENDING_TIME))
            or self._clock()
        )

    def _new_order_single(self, order: ValidatedOrder) -> AppMessage:
        fields: list[tuple[int, str]] = [
            (Tag.CL_ORD_ID, order.order_id),
            (Tag.ACCOUNT, order.account),
            (Tag.HANDL_INST, "1"),
            (Tag.SYMBOL, order.symbol),
            (Tag.SIDE, _SIDE_OUT[order.side]),
            (Tag.TRANSACT_TIME, fmt_time(order.ts)),
            (Tag.ORDER_QTY, fmt_decimal(order.qty)),
            (Tag.ORD_TYPE, _ORD_TYPE[order.order_type]),
        ]
        if order.order_type is OrderType.LIMIT and order.limit_px is not None:
            fields.append((Tag.PRICE, fmt_decimal(order.limit_px)))
        fields.append((Tag.TIME_IN_FORCE, _TIF[order.time_in_force.value]))
        return AppMessage(MsgType.NEW_ORDER_SINGLE, tuple(fields))

    def _status_request(self, entry: OrderEntry) -> list[AppMessage]:
        """Return an OrderStatusRequest for ``entry``, or none while one is unanswered.

        One request per order at a time: another is sent only after an answer (any
        report of the order) or after a wait that doubles from 1 s up to 30 s, so a
        restart, the reconciliation and the lost-ack timer together never flood the venue.
        """
        now = self._clock()
        asked = self._asking.get(entry.order_id)
        if asked is not None and now < asked[0]:
            self.counts["status_requests_held"] += 1
            return []
        wait = min(asked[1] * 2, STATUS_WAIT_MAX_S) if asked is not None else STATUS_WAIT_S
        self._asking[entry.order_id] = (now + timedelta(seconds=wait), wait)
        self.counts["status_requests"] += 1
        fields = [(Tag.CL_ORD_ID, entry.cl_ord_id), *_order_identity(entry)]
        return [AppMessage(MsgType.ORDER_STATUS_REQUEST, tuple(fields))]

    def _local(
        self,
        entry: OrderEntry,
        status: ExecStatus,
        tag: str,
        reason: str,
        *,
        ts: datetime | None = None,
        exact_id: bool = False,
    ) -> VenueFill:
        qty = Decimal(entry.qty)
        leaves = Decimal(0) if status in _DONE else (
            entry.leaves_qty if entry.leaves_qty is not None else qty - entry.cum_qty
        )
        return VenueFill(
            order_id=entry.order_id,
            venue=self._venue,
            exec_id=safe_exec_id(tag if exact_id else f"{entry.order_id}-LOCAL-{tag}"),
            status=status,
            account=entry.account,
            symbol=entry.symbol,
            side=Side(entry.side),
            cum_qty=entry.cum_qty,
            leaves_qty=leaves,
            avg_px=entry.avg_px,
            venue_order_id=entry.venue_order_id,
            reason=reason,
            ts=ts or self._clock(),
        )

    def _notice(self, order: ValidatedOrder, tag: str, why: str) -> VenueFill:
        """Report a cancel of ``order`` refused here, before it reached the venue."""
        return VenueFill(
            order_id=order.order_id,
            venue=self._venue,
            exec_id=safe_exec_id(f"{order.order_id}-LOCAL-{tag}"),
            status=ExecStatus.CANCEL_REJECTED,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            reason=f"{CANCEL_REJECTED_PREFIX}{why}",
            ts=order.ts,
        )


def _order_identity(entry: OrderEntry) -> list[tuple[int, str]]:
    """Return what names a sent order after its ClOrdID: OrderID (once known), Account, Symbol, Side."""
    venue_id = [(Tag.ORDER_ID, entry.venue_order_id)] if entry.venue_order_id else []
    side = _SIDE_OUT[Side(entry.side)]
    return [*venue_id, (Tag.ACCOUNT, entry.account), (Tag.SYMBOL, entry.symbol), (Tag.SIDE, side)]


def _entry(order: ValidatedOrder, phase: OrderPhase, reason: str = "") -> OrderEntry:
    return OrderEntry(
        order_id=order.order_id,
        cl_ord_id=order.order_id,
        account=order.account,
        symbol=order.symbol,
        side=order.side.value,
        qty=fmt_decimal(order.qty),
        order_type=order.order_type.value,
        limit_px=fmt_decimal(order.limit_px) if order.limit_px is not None else None,
        tif=order.time_in_force.value,
        phase=phase,
        reason=reason,
    )
