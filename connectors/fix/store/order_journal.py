"""The order map journal: every order sent, its ClOrdIDs, venue id and phase; the ExecIDs seen."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from connectors.fix.store.files import StoreFiles, SyncGroup, read_lines
from connectors.fix.store.outbox import ReportLog
from operators.venue import VenueOrder
from schemas import ExecStatus, Side, VenueFill

log = logging.getLogger(__name__)


class OrderPhase(StrEnum):
    """Where an order stands as far as the FIX layer knows."""

    IN_FLIGHT = "IN_FLIGHT"
    """Sent, outcome unknown (no report yet, or not confirmed since a restart)."""
    WORKING = "WORKING"
    """Acknowledged by the venue and not finished."""
    DONE = "DONE"
    """Filled, canceled, rejected or expired at the venue."""
    NOT_SENT = "NOT_SENT"
    """Rejected locally (timed out waiting for a session) or canceled before sending;
    it must never go out later."""


@dataclass(slots=True)
class OrderEntry:
    """One order of the map: internal id, ClOrdIDs, venue OrderID and what it was."""

    order_id: str
    cl_ord_id: str
    account: str
    symbol: str
    side: str
    qty: str
    order_type: str
    limit_px: str | None
    tif: str
    venue_order_id: str | None = None
    cancel_ids: list[str] = field(default_factory=list)
    phase: OrderPhase = OrderPhase.IN_FLIGHT
    reason: str = ""
    local_status: str = ""
    """For NOT_SENT orders: the status reported locally (REJECTED or CANCELED)."""
    # in memory only: last known figures and the cancel awaiting an answer
    cum_qty: Decimal = Decimal(0)
    avg_px: Decimal = Decimal(0)
    leaves_qty: Decimal | None = None
    pending_cancel: str | None = None

    def persisted(self) -> dict[str, Any]:
        """Return the fields that are journaled (all but the in-memory ones)."""
        return {
            "order_id": self.order_id, "cl_ord_id": self.cl_ord_id, "account": self.account,
            "symbol": self.symbol, "side": self.side, "qty": self.qty, "order_type": self.order_type,
            "limit_px": self.limit_px, "tif": self.tif, "venue_order_id": self.venue_order_id,
            "cancel_ids": list(self.cancel_ids), "phase": self.phase.value, "reason": self.reason,
            "local_status": self.local_status,
        }


class OrderJournal(StoreFiles):
    """The order map (order_id, ClOrdIDs, venue OrderID, phase), seen ExecIDs and the outbox."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        max_seen: int = 100_000,
        group: SyncGroup | None = None,
    ) -> None:
        super().__init__(directory, fsync=fsync, group=group)
        self._max_seen = max_seen
        self._orders: dict[str, OrderEntry] = {}
        self._by_cl_ord_id: dict[str, str] = {}
        self._by_venue_id: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._orders_log = self._open_journal("orders.jsonl")
        self._exec_log = self._open_journal("execids.log")
        self._exec_lines = 0
        self.reports = ReportLog(self._dir, fsync=fsync, group=group)
        """The outbox of reports handed to the layers above (see ``ReportLog``)."""
        self._load()

    def _load(self) -> None:
        lines = read_lines(self._dir / "orders.jsonl")
        for line in lines:
            self._apply(json.loads(line))
        if len(lines) > 2 * len(self._orders) + 64:
            self._orders_log.rewrite(
                [json.dumps({"e": "snap", **o.persisted()}) for o in self._orders.values()]
            )
        exec_lines = read_lines(self._dir / "execids.log")
        for line in exec_lines[-self._max_seen :]:
            self._seen[json.loads(line)] = None
        self._exec_lines = len(exec_lines)
        for exec_id in self.reports.exec_ids():  # a logged report's ExecID is seen
            self._remember(exec_id)
        if self._exec_lines > 2 * self._max_seen:
            self._compact_exec_ids()
        for order_id, rep in self.reports.reported_orders().items():
            known = self._orders.get(order_id)
            if known is not None:  # last known figures, from the fills logged
                known.cum_qty, known.avg_px = rep.qty, rep.avg_px
        for entry in self._orders.values():
            entry.pending_cancel = None  # its answer, if any, shows in the status reply
            if entry.phase is OrderPhase.WORKING:
                entry.phase = OrderPhase.IN_FLIGHT  # unconfirmed since the restart

    def _apply(self, ev: dict[str, Any]) -> None:
        kind = ev.pop("e")
        if kind in ("sent", "snap"):
            ev["phase"] = OrderPhase(ev.get("phase", OrderPhase.IN_FLIGHT))
            entry = OrderEntry(**ev)
            self._orders[entry.order_id] = entry
            self._by_cl_ord_id[entry.cl_ord_id] = entry.order_id
            for cid in entry.cancel_ids:
                self._by_cl_ord_id[cid] = entry.order_id
            if entry.venue_order_id:
                self._by_venue_id[entry.venue_order_id] = entry.order_id
            return
        entry_ = self._orders.get(ev["order_id"])
        if entry_ is None:
            log.warning("fix store: journal event for unknown order %s", ev)
            return
        if kind == "cancel":
            entry_.cancel_ids.append(ev["cl_ord_id"])
            entry_.pending_cancel = ev["cl_ord_id"]
            self._by_cl_ord_id[ev["cl_ord_id"]] = entry_.order_id
        elif kind == "venue_id":
            entry_.venue_order_id = ev["venue_order_id"]
            self._by_venue_id[ev["venue_order_id"]] = entry_.order_id
        elif kind == "state":
            entry_.phase = OrderPhase(ev["state"])
            entry_.reason = ev.get("reason", "")

    def _write(self, ev: dict[str, Any]) -> None:
        self._orders_log.append_json(ev)
        self._apply(dict(ev))

    # -- the order map -----------------------------------------------------------------

    def get(self, order_id: str) -> OrderEntry | None:
        """Return the entry of an order, or None if it was never recorded."""
        return self._orders.get(order_id)

    def by_cl_ord_id(self, cl_ord_id: str) -> OrderEntry | None:
        """Return the entry a ClOrdID (of the order or of one of its cancels) belongs to."""
        order_id = self._by_cl_ord_id.get(cl_ord_id)
        return None if order_id is None else self._orders.get(order_id)

    def by_venue_order_id(self, venue_order_id: str) -> OrderEntry | None:
        """Return the entry the venue's OrderID (37) belongs to."""
        order_id = self._by_venue_id.get(venue_order_id)
        return None if order_id is None else self._orders.get(order_id)

    def entries(self) -> Iterator[OrderEntry]:
        """Yield every recorded order."""
        yield from self._orders.values()

    def open_orders(self, venue: str, in_flight_status: ExecStatus) -> list[VenueOrder]:
        """Return the orders sent and not done, as far as the reports tell (IN_FLIGHT ones flagged).

        A WORKING order's status is NEW; an IN_FLIGHT one's is ``in_flight_status`` (the
        adapter's choice: the FIX adapter says STATUS, its outcome being asked about).
        """
        out = []
        for e in self._orders.values():
            if e.phase not in (OrderPhase.IN_FLIGHT, OrderPhase.WORKING):
                continue
            qty = Decimal(e.qty)
            in_flight = e.phase is OrderPhase.IN_FLIGHT
            out.append(
                VenueOrder(
                    order_id=e.order_id,
                    venue=venue,
                    account=e.account,
                    symbol=e.symbol,
                    side=Side(e.side),
                    qty=qty,
                    cum_qty=e.cum_qty,
                    leaves_qty=e.leaves_qty if e.leaves_qty is not None else qty - e.cum_qty,
                    avg_px=e.avg_px,
                    status=in_flight_status if in_flight else ExecStatus.NEW,
                    venue_order_id=e.venue_order_id,
                    in_flight=in_flight,
                )
            )
        return out

    def record_order(self, entry: OrderEntry) -> None:
        """Record a new order: IN_FLIGHT before its NewOrderSingle goes out, or NOT_SENT."""
        if entry.order_id in self._orders:
            raise ValueError(f"order {entry.order_id} is already in the store")
        self._write({"e": "sent", **entry.persisted()})

    def record_cancel(self, order_id: str, cl_ord_id: str) -> None:
        """Record a cancel ClOrdID before its OrderCancelRequest goes out."""
        self._write({"e": "cancel", "order_id": order_id, "cl_ord_id": cl_ord_id})

    def record_venue_id(self, order_id: str, venue_order_id: str) -> None:
        """Record the venue's OrderID (37) the first time it is seen."""
        entry = self._orders.get(order_id)
        if entry is not None and entry.venue_order_id != venue_order_id:
            self._write({"e": "venue_id", "order_id": order_id, "venue_order_id": venue_order_id})

    def record_phase(self, order_id: str, phase: OrderPhase, reason: str = "") -> None:
        """Record a change of phase (WORKING, DONE, NOT_SENT); repeats are not written."""
        entry = self._orders.get(order_id)
        if entry is not None and entry.phase is phase:
            return
        self._write({"e": "state", "order_id": order_id, "state": phase.value, "reason": reason})

    # -- exec ids ----------------------------------------------------------------------

    def seen(self, exec_id: str) -> bool:
        """Tell whether a report with this ExecID was already turned into a fill."""
        return exec_id in self._seen

    def mark_seen(self, exec_id: str) -> None:
        """Remember an ExecID (on disk too), forgetting the oldest beyond the bound."""
        if exec_id in self._seen:
            return
        self._remember(exec_id)
        self._exec_log.append_json(exec_id)
        self._exec_lines += 1
        if self._exec_lines > 2 * self._max_seen:
            self._compact_exec_ids()

    def _remember(self, exec_id: str) -> None:
        self._seen[exec_id] = None
        while len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)

    # -- the outbox --------------------------------------------------------------------

    def log_report(self, fill: VenueFill) -> int:
        """Append a report to the outbox (its ExecID counts as seen from now on)."""
        offset = self.reports.append(fill)
        self._remember(fill.exec_id)
        return offset

    def replay_reports(self, offset: int) -> int:
        """Queue the outbox from ``offset`` on again (see ``ReportLog.replay``)."""
        start = self.reports.start
        resume = self.reports.replay(offset)
        if self.reports.start > start:
            self._compact_exec_ids()  # ExecIDs of compacted reports stay seen
        return resume

    def _compact_exec_ids(self) -> None:
        self._exec_log.rewrite([json.dumps(x) for x in self._seen])
        self._exec_lines = len(self._seen)

    def close(self) -> None:
        """Close the journal files, then the outbox."""
        super().close()
        self.reports.close()
