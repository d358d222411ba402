"""The order lifecycle: an explicit transition table and FIX 4.4 quantity semantics.

Pure domain code: it imports only schemas and the standard library.

``TRANSITIONS`` is the whole state machine, ``{(from_status, event): to_status}``;
``next_status`` raises ``InvalidTransition`` for anything not in it. ``Order.apply``
turns one venue report into an ``OrderEvent``, moves the order through the table and
returns a ``ReportOutcome``: the quantity actually applied (for the accounting) and
any ``OrderIssue`` (a typed error the caller publishes as a risk event). A report that
breaks the rules never changes the order.

Quantities follow FIX 4.4: ``cum_qty`` is the quantity filled so far, ``leaves_qty``
is ``qty - cum_qty`` while the order works and zero once it is terminal, ``avg_px`` is
the volume-weighted price of the fills.

Fill quantities (reports of one order arrive in venue order, the stream being keyed by
order id, but the rules below also hold when they do not):

1. A report whose ``(venue, exec_id)`` was seen before is dropped (``DUPLICATE_EXEC``).
2. The increment is the report's ``last_qty``. When the report states a cumulative
   quantity (``cum_qty > 0``), the order never counts more than the highest
   cumulative quantity any report of it has stated: a fill re-sent under a new exec
   id is not counted twice (``FILL_ALREADY_COUNTED`` / ``CUM_QTY_MISMATCH``), while
   reports that arrive out of order still add up. A report stating more than has been
   counted is flagged ``FILL_GAP`` (a report is missing so far).
3. The order's ``cum_qty`` never exceeds its ``qty``: the excess is dropped and
   reported as ``OVERFILL``.

A fill's fee is applied when some of its quantity is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from operators.accounting import MONEY, ZERO, shared, shared_or_none
from schemas.base import Side
from schemas.built import trusting
from schemas.strategy import OrderType
from schemas.trading import ExecStatus, OrderState, OrderStatus, Severity, VenueFill

S = OrderStatus


class OrderEvent(StrEnum):
    """What can happen to an order (the columns of the transition table)."""

    ACK = "ACK"
    """The venue accepted the order."""
    PARTIAL_FILL = "PARTIAL_FILL"
    """A fill that leaves quantity working."""
    FILL = "FILL"
    """A fill that completes the order."""
    CANCEL_REQUEST = "CANCEL_REQUEST"
    """We asked the venue to cancel (kill switch, operator)."""
    CANCELED = "CANCELED"
    """The venue canceled the order (after our request, or unsolicited)."""
    REJECT = "REJECT"
    """The venue rejected the order."""
    EXPIRE = "EXPIRE"
    """The order's time in force ran out (IOC remainder, end of day)."""


E = OrderEvent

TRANSITIONS: Mapping[tuple[OrderStatus, OrderEvent], OrderStatus] = MappingProxyType({
    # Sent, not acknowledged yet. Fills may beat the ack; a cancel may be asked.
    (S.PENDING_NEW, E.ACK): S.NEW,
    (S.PENDING_NEW, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PENDING_NEW, E.FILL): S.FILLED,
    (S.PENDING_NEW, E.CANCEL_REQUEST): S.CANCEL_PENDING,
    (S.PENDING_NEW, E.CANCELED): S.CANCELED,
    (S.PENDING_NEW, E.REJECT): S.REJECTED,
    (S.PENDING_NEW, E.EXPIRE): S.EXPIRED,
    # Working.
    (S.NEW, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.NEW, E.FILL): S.FILLED,
    (S.NEW, E.CANCEL_REQUEST): S.CANCEL_PENDING,
    (S.NEW, E.CANCELED): S.CANCELED,
    (S.NEW, E.REJECT): S.REJECTED,
    (S.NEW, E.EXPIRE): S.EXPIRED,
    # Working with fills: a rejection is no longer possible, only cancel or expiry.
    (S.PARTIALLY_FILLED, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, E.FILL): S.FILLED,
    (S.PARTIALLY_FILLED, E.CANCEL_REQUEST): S.CANCEL_PENDING,
    (S.PARTIALLY_FILLED, E.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, E.EXPIRE): S.EXPIRED,
    # Cancel asked: the ack of the original order or fills may still race the cancel.
    (S.CANCEL_PENDING, E.ACK): S.CANCEL_PENDING,
    (S.CANCEL_PENDING, E.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.CANCEL_PENDING, E.FILL): S.FILLED,
    (S.CANCEL_PENDING, E.CANCELED): S.CANCELED,
    (S.CANCEL_PENDING, E.REJECT): S.REJECTED,
    (S.CANCEL_PENDING, E.EXPIRE): S.EXPIRED,
})
"""Every allowed move of the order state machine; FILLED, CANCELED, REJECTED and
EXPIRED are terminal (no row leaves them)."""

TERMINAL: frozenset[OrderStatus] = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
"""States an order never leaves."""

_STATUS_EVENTS: Mapping[ExecStatus, OrderEvent] = MappingProxyType({
    ExecStatus.NEW: E.ACK,
    ExecStatus.ACK: E.ACK,
    ExecStatus.CANCELED: E.CANCELED,
    ExecStatus.REJECTED: E.REJECT,
    ExecStatus.EXPIRED: E.EXPIRE,
})
_FILL_STATUSES = frozenset({ExecStatus.PARTIAL, ExecStatus.FILLED})


class InvalidTransition(ValueError):
    """An event the transition table has no row for, in the order's current state."""

    def __init__(self, status: OrderStatus, event: OrderEvent) -> None:
        super().__init__(f"no transition from {status.value} on {event.value}")
        self.status = status
        self.event = event


def next_status(status: OrderStatus, event: OrderEvent) -> OrderStatus:
    """Return the state ``event`` leads to from ``status``; raise ``InvalidTransition``."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise InvalidTransition(status, event) from None


class IssueKind(StrEnum):
    """Why a venue report was not (fully) applied; also the risk event's rule name."""

    INVALID_TRANSITION = "INVALID_TRANSITION"
    DUPLICATE_EXEC = "DUPLICATE_EXEC"
    OVERFILL = "OVERFILL"
    FILL_ALREADY_COUNTED = "FILL_ALREADY_COUNTED"
    CUM_QTY_MISMATCH = "CUM_QTY_MISMATCH"
    FILL_GAP = "FILL_GAP"
    EMPTY_FILL = "EMPTY_FILL"
    QTY_ON_NON_FILL = "QTY_ON_NON_FILL"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    REPORT_MISMATCH = "REPORT_MISMATCH"


_SEVERITY: Mapping[IssueKind, Severity] = MappingProxyType({
    IssueKind.INVALID_TRANSITION: Severity.WARN,
    IssueKind.DUPLICATE_EXEC: Severity.INFO,
    IssueKind.OVERFILL: Severity.CRITICAL,
    IssueKind.FILL_ALREADY_COUNTED: Severity.WARN,
    IssueKind.CUM_QTY_MISMATCH: Severity.WARN,
    IssueKind.FILL_GAP: Severity.WARN,
    IssueKind.EMPTY_FILL: Severity.WARN,
    IssueKind.QTY_ON_NON_FILL: Severity.WARN,
    IssueKind.STATUS_MISMATCH: Severity.WARN,
    IssueKind.REPORT_MISMATCH: Severity.CRITICAL,
})


@dataclass(frozen=True)
class OrderIssue:
    """A typed error about one venue report, for the caller to publish as a risk event."""

    kind: IssueKind
    message: str
    values: dict[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        """Return how loud the risk event for this issue should be."""
        return _SEVERITY[self.kind]


@dataclass(frozen=True)
class ReportOutcome:
    """What one venue report did to an order."""

    changed: bool = False
    """The order's status or quantities changed (publish a new OrderState)."""
    fill_qty: Decimal = ZERO
    """Quantity newly filled and to be applied to the position (0 if none)."""
    fill_px: Decimal = ZERO
    fee: Decimal = ZERO
    issues: tuple[OrderIssue, ...] = ()


ExecKey = tuple[str, str]
"""``(venue, exec_id)``: what identifies one venue report."""

SMALL_EXEC_IDS = 8
"""Up to this many report ids an order keeps them in a sorted tuple, then in a set."""


def _issue(kind: IssueKind, message: str, **values: object) -> OrderIssue:
    return OrderIssue(kind, message, {k: str(v) for k, v in values.items()})


IDENTITY = ("order_id", "account", "symbol", "side", "qty", "order_type", "limit_px", "signal_id",
            "strategy_id", "venue")
"""The fields of an ``Order`` that its state rows and its cancel repeat as they are."""

_STATE_TRUSTED = frozenset({*IDENTITY, "status"})
"""What an order's state row takes on trust (``schemas.built.trusting``): what the order
is (``IDENTITY``, copied from the validated signal or route it came from, or from the
book's own snapshot) and its status (an enum member); the quantities and the time, which
the book computes, are checked."""


@dataclass(slots=True)
class Order:
    """One order of an account, from validation to a terminal state."""

    order_id: str
    account: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    ts: datetime
    """Event time of the last change."""
    limit_px: Decimal | None = None
    reserve_px: Decimal = ZERO
    """Price the order's exposure is reserved at: the limit price, or for a market
    order the mark (else the signal's ref price) at validation; zero if unknown."""
    signal_id: str | None = None
    strategy_id: str | None = None
    venue: str | None = None
    """The venue the order was routed to (None: the default venue)."""
    status: OrderStatus = S.PENDING_NEW
    cum_qty: Decimal = ZERO
    cum_notional: Decimal = ZERO
    """Sum of fill qty * fill px, for the average price."""
    venue_cum_qty: Decimal = ZERO
    """Highest cumulative quantity any report of this order stated."""
    fees: Decimal = ZERO
    cancel_requested: bool = False
    """A cancel was sent once; it is never sent again."""
    exec_ids: tuple[ExecKey, ...] | set[ExecKey] = ()
    """``(venue, exec_id)`` of every report applied: a sorted tuple while there are at
    most ``SMALL_EXEC_IDS`` (most orders: a tuple is a quarter of a set's size), then a
    set. The form depends on the count only, so ``from_dict(to_dict())`` is equal."""

    @property
    def is_open(self) -> bool:
        """Tell whether the order still works (or may) at the venue."""
        return self.status not in TERMINAL

    @property
    def leaves_qty(self) -> Decimal:
        """Return ``qty - cum_qty`` while the order works, zero once it is terminal."""
        return self.qty - self.cum_qty if self.is_open else ZERO

    @property
    def avg_px(self) -> Decimal:
        """Return the volume-weighted price of the fills (zero before the first)."""
        if self.cum_qty == 0:
            return ZERO
        return MONEY.divide(self.cum_notional, self.cum_qty)

    @property
    def reserved_notional(self) -> Decimal:
        """Return the exposure this order holds reserved: ``leaves qty * reserve px``."""
        return MONEY.multiply(self.leaves_qty, self.reserve_px)

    def request_cancel(self, ts: datetime) -> None:
        """Move the order to CANCEL_PENDING; raise ``InvalidTransition`` if it cannot."""
        self.status = next_status(self.status, E.CANCEL_REQUEST)
        self.cancel_requested = True
        self.ts = max(self.ts, ts)

    def apply(self, report: VenueFill) -> ReportOutcome:
        """Apply one venue report; never raises for bad reports, returns the issues."""
        mismatch = self._mismatch(report)
        if mismatch is not None:
            return ReportOutcome(issues=(mismatch,))
        key = (report.venue, report.exec_id)
        if key in self.exec_ids:
            return ReportOutcome(issues=(_issue(
                IssueKind.DUPLICATE_EXEC,
                f"execution {report.exec_id} from {report.venue} was already applied",
                exec_id=report.exec_id, venue=report.venue,
            ),))
        self.exec_ids = _with_exec_id(self.exec_ids, key)
        if report.status in _FILL_STATUSES:
            return self._apply_fill(report)
        if report.status in (ExecStatus.STATUS, ExecStatus.CANCEL_REJECTED):
            return self._check_status(report)
        return self._apply_status(report)

    def _mismatch(self, report: VenueFill) -> OrderIssue | None:
        ours = (self.order_id, self.account, self.symbol, self.side)
        theirs = (report.order_id, report.account, report.symbol, report.side)
        if ours == theirs:
            return None
        return _issue(
            IssueKind.REPORT_MISMATCH,
            f"report {report.exec_id} does not match order {self.order_id}: "
            f"{'/'.join(map(str, theirs))} vs {'/'.join(map(str, ours))}",
            exec_id=report.exec_id, venue=report.venue,
        )

    def _apply_status(self, report: VenueFill) -> ReportOutcome:
        event = _STATUS_EVENTS[report.status]
        issues: list[OrderIssue] = []
        if report.last_qty > 0:
            issues.append(_issue(
                IssueKind.QTY_ON_NON_FILL,
                f"{report.status.value} report {report.exec_id} carries last_qty "
                f"{report.last_qty}; the quantity is ignored",
                last_qty=report.last_qty, exec_id=report.exec_id,
            ))
        try:
            status = next_status(self.status, event)
        except InvalidTransition as exc:
            issues.append(_transition_issue(exc, report))
            return ReportOutcome(issues=tuple(issues))
        changed = status is not self.status
        self.status = status
        self.ts = max(self.ts, report.ts)
        return ReportOutcome(changed=changed, issues=tuple(issues))

    def _check_status(self, report: VenueFill) -> ReportOutcome:
        if report.cum_qty == self.cum_qty:
            return ReportOutcome()
        return ReportOutcome(issues=(_issue(
            IssueKind.STATUS_MISMATCH,
            f"venue says {report.cum_qty} of order {self.order_id} filled, "
            f"{self.cum_qty} counted",
            venue_cum_qty=report.cum_qty, cum_qty=self.cum_qty,
        ),))

    def _apply_fill(self, report: VenueFill) -> ReportOutcome:
        if report.last_qty <= 0:
            return ReportOutcome(issues=(_issue(
                IssueKind.EMPTY_FILL, f"fill {report.exec_id} has no quantity",
                exec_id=report.exec_id,
            ),))
        qty, venue_cum, issues = self._fill_increment(report)
        if qty == 0:
            self.venue_cum_qty = venue_cum
            return ReportOutcome(issues=tuple(issues))
        event = E.FILL if self.cum_qty + qty == self.qty else E.PARTIAL_FILL
        try:
            status = next_status(self.status, event)
        except InvalidTransition as exc:
            return ReportOutcome(issues=(_transition_issue(exc, report),))
        self.cum_qty = MONEY.add(self.cum_qty, qty)
        self.cum_notional = MONEY.add(self.cum_notional, MONEY.multiply(qty, report.last_px))
        self.fees = MONEY.add(self.fees, report.fee)
        self.venue_cum_qty = venue_cum
        self.status = status
        self.ts = max(self.ts, report.ts)
        if report.cum_qty > self.cum_qty:
            issues.append(_issue(
                IssueKind.FILL_GAP,
                f"venue says {report.cum_qty} filled, {self.cum_qty} counted: "
                "a report is missing so far",
                venue_cum_qty=report.cum_qty, cum_qty=self.cum_qty,
            ))
        return ReportOutcome(
            changed=True, fill_qty=qty, fill_px=report.last_px, fee=report.fee,
            issues=tuple(issues),
        )

    def _fill_increment(
        self, report: VenueFill
    ) -> tuple[Decimal, Decimal, list[OrderIssue]]:
        # The quantity of ``report`` not counted yet (capped), the highest cumulative
        # quantity stated so far, and the issues. Changes nothing.
        issues: list[OrderIssue] = []
        qty = report.last_qty
        venue_cum = self.venue_cum_qty
        if report.cum_qty > 0:
            venue_cum = max(venue_cum, report.cum_qty)
            uncounted = venue_cum - self.cum_qty
            if qty > uncounted:
                kind = (
                    IssueKind.FILL_ALREADY_COUNTED if uncounted <= 0
                    else IssueKind.CUM_QTY_MISMATCH
                )
                issues.append(_issue(
                    kind,
                    f"fill {report.exec_id} of {qty} would take order {self.order_id} past "
                    f"the venue's cumulative {venue_cum}; counting {max(uncounted, ZERO)}",
                    last_qty=qty, venue_cum_qty=venue_cum, cum_qty=self.cum_qty,
                ))
                qty = max(uncounted, ZERO)
        room = self.qty - self.cum_qty
        if qty > room:
            issues.append(_issue(
                IssueKind.OVERFILL,
                f"fill {report.exec_id} of {qty} overfills order {self.order_id} "
                f"({self.cum_qty} of {self.qty} filled); {qty - room} dropped",
                last_qty=qty, cum_qty=self.cum_qty, qty=self.qty, excess=qty - room,
            ))
            qty = room
        return qty, venue_cum, issues

    def share(self) -> None:
        """Keep shared objects for the amounts (``accounting.shared``): the same values.

        For the orders a book keeps long: its closed ones.
        """
        self.qty = shared(self.qty)
        self.limit_px = shared_or_none(self.limit_px)
        self.reserve_px = shared(self.reserve_px)
        self.cum_qty = shared(self.cum_qty)
        self.cum_notional = shared(self.cum_notional)
        self.venue_cum_qty = shared(self.venue_cum_qty)
        self.fees = shared(self.fees)

    def identity(self) -> dict[str, Any]:
        """Return what the order is: the ``IDENTITY`` fields every record about it repeats."""
        return {name: getattr(self, name) for name in IDENTITY}

    def to_state(self) -> OrderState:
        """Return the order as a row of the orders changelog."""
        return trusting(OrderState, _STATE_TRUSTED)(
            **self.identity(), status=self.status, cum_qty=self.cum_qty,
            leaves_qty=self.leaves_qty, avg_px=self.avg_px, ts=self.ts,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the order as plain picklable data (a new dict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["exec_ids"] = sorted([venue, exec_id] for venue, exec_id in self.exec_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        """Rebuild an order from ``to_dict`` output."""
        order = cls(**data)
        rows = data["exec_ids"]
        if len(rows) == 1:  # most orders: one report (sorted and unique as it is)
            venue, exec_id = rows[0]
            order.exec_ids = ((venue, exec_id),)
        else:
            order.exec_ids = _exec_ids((venue, exec_id) for venue, exec_id in rows)
        return order


def _exec_ids(keys: Iterable[ExecKey]) -> tuple[ExecKey, ...] | set[ExecKey]:
    """Return ``keys`` in the form ``Order.exec_ids`` keeps for their number."""
    unique = set(keys)
    return tuple(sorted(unique)) if len(unique) <= SMALL_EXEC_IDS else unique


def _with_exec_id(
    ids: tuple[ExecKey, ...] | set[ExecKey], key: ExecKey
) -> tuple[ExecKey, ...] | set[ExecKey]:
    if isinstance(ids, set):
        ids.add(key)
        return ids
    return _exec_ids((*ids, key))


def _transition_issue(exc: InvalidTransition, report: VenueFill) -> OrderIssue:
    return _issue(
        IssueKind.INVALID_TRANSITION,
        f"order {report.order_id}: {exc} (report {report.exec_id}, {report.status.value})",
        status=exc.status.value, event=exc.event.value, exec_id=report.exec_id,
    )
