"""The report outbox: every execution report handed to the layers above, numbered, fsynced."""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from connectors.fix.store.files import StoreFiles, SyncGroup, read_lines
from schemas import VenueFill
from schemas.fast import fast_encode

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Reported:
    """The fills of one order in the report log: total quantity and notional."""

    qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)

    @property
    def avg_px(self) -> Decimal:
        """Return the average price of the logged fills (0 when there are none)."""
        return self.notional / self.qty if self.qty else Decimal(0)


def _fill_of(data: dict[str, object]) -> VenueFill:
    """Read a logged report.

    It is the streams' JSON (``"_v"`` first), or a bare ``model_dump`` as written before.
    """
    data.pop("_v", None)
    return VenueFill.model_validate(data)


class ReportLog(StoreFiles):
    """The numbered outbox of reports (``reports.jsonl``, see the module doc).

    ``append`` (I/O thread) writes a report and queues it (while the sync group is held,
    at its commit: a report is never handed on before it is durable); ``take``
    (consumer thread) hands the queued ones on with their offsets. ``replay(offset)``, called once
    before the first append, queues the logged reports from ``offset`` on again and
    compacts the ones before it away: the consumer restored a snapshot that already
    covers them.
    """

    def __init__(self, directory: Path, *, fsync: bool = True, group: SyncGroup | None = None) -> None:
        super().__init__(directory, fsync=fsync, group=group)
        self._path = self._dir / "reports.jsonl"
        self._journal = self._open_journal(self._path.name)
        self._start = 0
        self._end = 0
        self._kept: list[tuple[int, str]] = []
        self._reported: dict[str, Reported] = {}
        self._queue: deque[tuple[int, VenueFill]] = deque()
        self._unpublished: list[tuple[int, VenueFill]] = []
        """Written while the group is held, queued at its commit (I/O thread only)."""
        self._replayed = False
        for line in read_lines(self._path):
            rec = json.loads(line)
            if "o" in rec:
                fill = _fill_of(rec["r"])
                self._count(fill)
                self._kept.append((int(rec["o"]), line))
                self._end = int(rec["o"]) + 1
            elif "start" in rec:
                self._start = self._end = max(self._end, int(rec["start"]))
            elif "base" in rec:
                self._reported[rec["base"]] = Reported(Decimal(rec["qty"]), Decimal(rec["notional"]))

    @property
    def start(self) -> int:
        """Return the first offset still on disk."""
        return self._start

    @property
    def end(self) -> int:
        """Return the offset the next report gets."""
        return self._end

    def exec_ids(self) -> list[str]:
        """Return the ExecIDs of the reports on disk at open, oldest first."""
        return [json.loads(line)["r"]["exec_id"] for _, line in self._kept]

    def reported(self, order_id: str) -> Reported:
        """Return the totals of the fills logged for an order (zero if none)."""
        return self._reported.get(order_id) or Reported()

    def reported_orders(self) -> dict[str, Reported]:
        """Return a copy of the per-order totals of logged fills."""
        return {k: Reported(v.qty, v.notional) for k, v in self._reported.items()}

    def append(self, fill: VenueFill) -> int:
        """Write a report and queue it for ``take``; return its offset.

        The line is flushed and fsynced as its journal's appends are; while the sync group
        is held the report is queued at the group's commit, once it is durable.
        """
        offset = self._end
        # {"o": offset, "r": the report as the streams carry it}, written without pydantic
        self._journal.append_bytes(b'{"o":%d,"r":%s}' % (offset, fast_encode(fill)))
        self._end = offset + 1
        self._count(fill)
        group = self._group
        if group is not None and group.held:  # handed on once durable: at the group's commit
            self._unpublished.append((offset, fill))
            group.after_commit(self._publish)
        else:
            self._queue.append((offset, fill))
        return offset

    def _publish(self) -> None:
        """Queue the reports written in the held group, now that its commit made them durable."""
        self._queue.extend(self._unpublished)
        self._unpublished.clear()

    def take(self) -> list[tuple[int, VenueFill]]:
        """Return the queued reports with their offsets, oldest first (never blocks)."""
        out: list[tuple[int, VenueFill]] = []
        while True:
            try:
                out.append(self._queue.popleft())
            except IndexError:
                return out

    @property
    def queued(self) -> int:
        """Return how many reports wait for ``take`` (or for the commit that queues them)."""
        return len(self._queue) + len(self._unpublished)

    def replay(self, offset: int) -> int:
        """Queue the logged reports from ``offset`` on, compact the older ones away.

        Return the offset the consumer continues from (``offset``, or the log's start
        if that is later: those reports are gone). Call it once, before any append.
        """
        if self._replayed or self._queue or self._unpublished:
            raise RuntimeError("ReportLog.replay may run once, before any append")
        self._replayed = True
        if offset < self._start:
            log.warning("fix store: replay from %d asked; reports before %d are gone", offset, self._start)
        kept = [(o, line) for o, line in self._kept if o >= offset]
        self._kept = []
        base = self.reported_orders()
        for o, line in kept:
            fill = _fill_of(json.loads(line)["r"])
            self._queue.append((o, fill))
            if fill.last_qty > 0:  # counted again when the compacted file is read
                base[fill.order_id].qty -= fill.last_qty
                base[fill.order_id].notional -= fill.last_qty * fill.last_px
        if offset > self._end:
            log.warning("fix store: consumer is at report %d, the log ends at %d; numbering goes on from %d",
                        offset, self._end, offset)
            self._end = offset
        if offset > self._start:
            self._start = offset
            lines = [json.dumps({"start": offset})]
            lines += [
                json.dumps({"base": k, "qty": str(v.qty), "notional": str(v.notional)})
                for k, v in base.items()
                if v.qty
            ]
            self._journal.rewrite(lines + [line for _, line in kept])
        return max(offset, self._start)

    def _count(self, fill: VenueFill) -> None:
        if fill.last_qty > 0:
            r = self._reported.setdefault(fill.order_id, Reported())
            r.qty += fill.last_qty
            r.notional += fill.last_qty * fill.last_px
