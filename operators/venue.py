"""The one interface every venue adapter implements (paper, FIX, and whatever comes next).

It lives with the execution engine (``operators.execution``), which is written against
it; the adapters themselves, which do I/O, live in ``connectors.venues``. Modelled on
NautilusTrader's execution-client template: a table of required and optional methods.

+-------------------------------+-------------+----------------------------------------+
| Method                        | Requirement | Contract                               |
+===============================+=============+========================================+
| ``name``                      | required    | the venue name written into fills      |
| ``connect()``                 | required    | start I/O (thread or loop); non-blocking|
| ``submit(order)``             | required    | enqueue a NEW order; never blocks      |
| ``cancel(order)``             | required    | enqueue a cancel of ``order.order_id`` |
| ``poll_reports()``            | required    | reports received so far; non-blocking  |
| ``health()``                  | required    | a ``VenueHealth``: common figures and  |
|                               |             | the adapter's own in ``details``       |
| ``close()``                   | required    | stop I/O, log out, release resources   |
+-------------------------------+-------------+----------------------------------------+
| ``request_status(order_id)``  | optional    | ask the venue; answer in poll_reports  |
|                               |             | (default: ``NotImplementedError``)     |
| ``open_orders()``             | optional    | the adapter's view of working orders   |
|                               |             | (default: ``NotImplementedError``)     |
| ``on_market(tick)``           | optional    | a tick (a simulated venue matches on   |
|                               |             | it; default: ignored)                  |
| ``snapshot()``                | optional    | JSON-able state for the consumer's     |
|                               |             | recovery snapshot (default: None)      |
| ``restore(state)``            | optional    | resume from a snapshot, before connect |
|                               |             | (default: nothing to restore)          |
| ``poll_findings()``           | optional    | what the adapter found wrong with the  |
|                               |             | venue since the last call, as          |
|                               |             | ``VenueFinding`` (default: none)       |
+-------------------------------+-------------+----------------------------------------+

Adapters never block the caller: their I/O runs on a thread of their own (or an
asyncio loop in a thread), ``submit`` and ``cancel`` only enqueue, and every answer
comes back through ``poll_reports`` as a normalised ``VenueFill``. The paper venue
carries its whole book in ``snapshot``/``restore``, the FIX adapter the offset of its
report outbox.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from schemas import ExecStatus, MarketData, OrderAction, Side, ValidatedOrder, VenueFill


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An adapter's view of one order it knows about (for reconciliation)."""

    order_id: str
    venue: str
    account: str
    symbol: str
    side: Side
    qty: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    avg_px: Decimal
    status: ExecStatus
    venue_order_id: str | None = None
    in_flight: bool = False
    """True while the outcome is unknown (sent, no answer yet, or not confirmed since a
    restart): such an order is asked about, never re-sent."""


@dataclass(frozen=True, slots=True)
class VenueFinding:
    """Something the venue did that must not be trusted blindly: a CRITICAL alarm.

    The execution engine turns each into one CRITICAL ``RiskEvent`` per account (or
    one for the venue when no account is concerned) and, with ``reduce``, moves every
    listed account to REDUCING through the control table until operations reconcile.
    """

    rule: str
    """``VENUE_STATE_LOST``, ``LOGON_REFUSED``, ``UNKNOWN_ORDER``, ``OVERFILL``,
    ``REPORT_MISMATCH``, ``FILLED_ORDER_UNKNOWN``..."""
    message: str
    key: str
    """Makes the event id: the same finding found again gets the same id."""
    accounts: tuple[str, ...] = ()
    order_id: str | None = None
    symbol: str | None = None
    reduce: bool = False
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VenueHealth:
    """What an adapter reports about itself: the figures every venue has, then its own.

    ``details`` holds the adapter's own figures (sequence numbers, queue lengths,
    latencies) under their names; ``figure(name)`` reads either kind.
    """

    venue: str
    session_state: str = "UNKNOWN"
    connected: bool = False
    logons: int = 0
    msgs_sent: int = 0
    msgs_received: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def figure(self, name: str, default: Any = None) -> Any:
        """Return one figure by name: a common field, else one of ``details``."""
        if name in _COMMON:
            return getattr(self, name)
        return self.details.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        """Return every figure in one flat dict (for logs, metrics and error messages)."""
        return {**{name: getattr(self, name) for name in _COMMON}, **self.details}


_COMMON = ("venue", "session_state", "connected", "logons", "msgs_sent", "msgs_received")


class VenueAdapter(ABC):
    """Send validated orders to one venue and bring its execution reports back."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Return the venue name that goes into every ``VenueFill.venue``."""

    @abstractmethod
    def connect(self) -> None:
        """Start the adapter's I/O (connect, log on) without blocking the caller."""

    @abstractmethod
    def submit(self, order: ValidatedOrder) -> None:
        """Enqueue a NEW order; the outcome arrives later through ``poll_reports``."""

    @abstractmethod
    def cancel(self, order: ValidatedOrder) -> None:
        """Enqueue a cancel of the working order ``order.order_id``."""

    @abstractmethod
    def poll_reports(self) -> list[VenueFill]:
        """Return the execution reports received since the last call, oldest first."""

    @abstractmethod
    def health(self) -> VenueHealth:
        """Return the connection state and the adapter's counts and latencies."""

    @abstractmethod
    def close(self) -> None:
        """Stop the adapter's I/O and release its resources."""

    # -- optional ----------------------------------------------------------------------

    def request_status(self, order_id: str) -> None:
        """Ask the venue for the status of an order; the answer comes as a STATUS report."""
        raise NotImplementedError(f"{type(self).__name__} does not support request_status")

    def open_orders(self) -> list[VenueOrder]:
        """Return the orders the adapter believes are working (or in flight)."""
        raise NotImplementedError(f"{type(self).__name__} does not support open_orders")

    def on_market(self, tick: MarketData) -> None:  # noqa: B027 - optional, a no-op by default
        """Take a tick of market data (a simulated venue matches on it); ignored by default."""

    def snapshot(self) -> dict[str, Any] | None:
        """Return JSON-able state for the consumer's recovery snapshot (None: nothing to keep)."""
        return None

    def restore(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional, a no-op by default
        """Resume from a ``snapshot()``, before ``connect()``; nothing to restore by default."""

    def poll_findings(self) -> list[VenueFinding]:
        """Return the alarms raised about the venue since the last call (none by default)."""
        return []

    # -- conveniences built on the required methods ------------------------------------

    def send(self, order: ValidatedOrder) -> None:
        """Route a validated_orders record by its action: NEW to submit, CANCEL to cancel."""
        if order.action is OrderAction.CANCEL:
            self.cancel(order)
        else:
            self.submit(order)

    def __enter__(self) -> VenueAdapter:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
