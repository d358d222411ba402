"""The venue adapter interface and the recovery hand-over of the journaling adapters.

The interface itself (``VenueAdapter``, ``VenueOrder``, ``VenueHealth``) is defined in
``operators.venue``, next to the execution engine written against it; see its table of
required and optional methods. ``JournalingVenue`` is what the FIX and REST adapters
share: the outbox offset and the orders not journaled yet, kept in ``snapshot()``.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from operators.stats import percentile
from operators.venue import VenueAdapter, VenueFinding, VenueHealth, VenueOrder
from schemas import ValidatedOrder, VenueFill

if TYPE_CHECKING:
    from connectors.fix.store import OrderJournal

S = TypeVar("S")

LATENCY_SAMPLES = 1000
"""Ack and fill latencies an adapter keeps for the percentiles in ``health``."""


class VenueError(RuntimeError):
    """A venue adapter is misconfigured or was used out of order."""


class JournalingVenue(VenueAdapter, Generic[S]):
    """A venue adapter that keeps an order journal and a numbered report outbox.

    What it hands over to the consumer's recovery state (``snapshot()``) is the same for
    every such adapter: the offset of the next report not yet taken by ``poll_reports``
    and the orders and cancels handed to ``submit``/``cancel`` that are not in the order
    journal yet. ``restore()`` (before ``connect()``) takes both back: the outbox is
    replayed from that offset, and the orders are handed in again once connected.

    A subclass calls ``_open_outbox`` when it opens its journal in ``connect()``,
    ``_hand_back_restored`` when it is ready to send, ``_hand_in`` as an order arrives and
    ``_journaled`` once the journal holds it; ``_journal_if_open`` says where the journal is.
    Ack and fill latencies go into ``_ack_ms``/``_fill_ms`` (each adapter decides which
    report answers what) and ``_latency_figures`` gives their percentiles for ``health``.
    """

    def __init__(self, settings: S, name: str) -> None:
        self._settings = settings
        self._name = name
        self._replay_from = 0
        self._next_report = 0
        self._unsent: dict[str, ValidatedOrder] = {}
        """Orders and cancels handed in, not yet in the order journal (by ``id:action``)."""
        self._unsent_lock = threading.Lock()
        self._restored: list[ValidatedOrder] = []
        self._sent_at: dict[str, float] = {}
        """When each order was handed in (monotonic), until its latencies are measured."""
        self._ack_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._fill_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    @abstractmethod
    def _journal_if_open(self) -> OrderJournal | None:
        """Return the order journal once ``connect()`` opened it, else None."""

    @property
    def name(self) -> str:
        """Return the venue name written into fills."""
        return self._name

    @property
    def settings(self) -> S:
        """Return the adapter's settings."""
        return self._settings

    def poll_reports(self) -> list[VenueFill]:
        """Return the reports received since the last call (never blocks on I/O)."""
        journal = self._journal_if_open()
        if journal is None:
            return []
        taken = journal.reports.take()
        if taken:
            self._next_report = taken[-1][0] + 1
        return [fill for _, fill in taken]

    def snapshot(self) -> dict[str, Any]:
        """Return the outbox offset and the orders handed in but not journaled yet."""
        with self._unsent_lock:
            unsent = [o.model_dump(mode="json") for o in self._unsent.values()]
        return {"next_report": self._next_report, "unsent": unsent}

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from a ``snapshot()`` (before connect): replay reports, hand orders in again."""
        if self._journal_if_open() is not None:
            raise VenueError(f"{type(self).__name__}.restore must come before connect()")
        self._replay_from = self._next_report = int(state.get("next_report", 0))
        self._restored = [ValidatedOrder.model_validate(o) for o in state.get("unsent", ())]

    def _latency_figures(self) -> dict[str, float | None]:
        return {
            "ack_p50_ms": percentile(self._ack_ms, 50),
            "ack_p99_ms": percentile(self._ack_ms, 99),
            "fill_p50_ms": percentile(self._fill_ms, 50),
            "fill_p99_ms": percentile(self._fill_ms, 99),
        }

    def _open_outbox(self, journal: OrderJournal) -> None:
        """Replay the journal's outbox from the restored offset (in ``connect()``)."""
        self._next_report = journal.replay_reports(self._replay_from)

    def _hand_back_restored(self) -> None:
        """Send again the orders of the restored snapshot (once connected)."""
        restored, self._restored = self._restored, []
        for order in restored:  # handed in before the crash, maybe never journaled
            self.send(order)

    def _hand_in(self, order: ValidatedOrder) -> None:
        with self._unsent_lock:
            self._unsent[_unsent_key(order)] = order

    def _journaled(self, order: ValidatedOrder) -> None:
        with self._unsent_lock:
            self._unsent.pop(_unsent_key(order), None)


def _unsent_key(order: ValidatedOrder) -> str:
    return f"{order.order_id}:{order.action.value}"


__all__ = [
    "JournalingVenue",
    "VenueAdapter",
    "VenueError",
    "VenueFinding",
    "VenueHealth",
    "VenueOrder",
]
