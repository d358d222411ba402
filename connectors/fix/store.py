"""The on-disk store of one FIX session: what must survive a restart.

Layout, one directory per CompID pair (``FixSettings.session_dir``)::

    seqnums.json    {"next_sender": 12, "next_target": 9, "created": "...Z"}
                    replaced atomically (write temp, fsync, rename, fsync dir)
    messages.log    one JSON line per application message we sent:
                    {"seq": 7, "raw": "<the wire bytes, latin-1>"}  (for resends)
    orders.jsonl    the order map journal, one JSON event per line:
                    {"e": "sent", "order_id", "cl_ord_id", "account", "symbol", "side",
                     "qty", "order_type", "limit_px", "tif"}
                    {"e": "cancel", "order_id", "cl_ord_id"}
                    {"e": "venue_id", "order_id", "venue_order_id"}
                    {"e": "state", "order_id", "state", "reason"}
    execids.log     one JSON string per line: ExecIDs already turned into fills,
                    the newest ``max_seen`` kept
    reports.jsonl   the outbox: every report handed to the layers above, numbered
                    from 0 (``ReportLog``), kept until a consumer restores past it:
                    {"o": 12, "r": {<VenueFill as JSON>}}
                    {"start": 40}      (after compaction: the first offset kept)
                    {"base": "<order_id>", "qty": "...", "notional": "..."}
                                       (fills of that order compacted away)

Appends are one ``write`` of a whole line, flushed at once (a killed process loses
nothing) and fsynced unless disabled, before the caller puts bytes on the wire, so the
store is always ahead of the venue. With a ``SyncGroup`` the fsyncs are grouped: the
files written since the last commit are fsynced together when the session saves its
sequence numbers (``SessionStore.save``), which the session does before any bytes go
out and after the application handled what came in.
A torn last line (a crash mid-write) is cut off when the file is opened again. The
journals are compacted on open.

Why the outbox: the session persists the inbound MsgSeqNum as soon as a message is
read, so the venue never sends it again; an ExecutionReport taken off the wire but
not yet written downstream when the process dies would be lost. Every report is
appended to ``reports.jsonl`` (and fsynced) before its ExecID is remembered or the
order's phase moves, and the consumer (Job D) keeps the offset it has handed on in
its own recovery snapshot (``FixVenue.snapshot``): after a crash it asks for
everything from that offset again, with the original ExecIDs, so downstream de-dup
by ExecID makes the replay harmless. The per-order totals of the logged fills
(``Reported``) let the application tell a venue's CumQty that went beyond what was
ever logged, and turn the difference into one synthetic fill.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from schemas import VenueFill

log = logging.getLogger(__name__)


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> list[str]:
    """Return the complete lines of a journal, cutting off a torn last line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        log.warning("fix store: %s ends in a torn line (%d bytes); cut off", path, len(data) - cut)
        data = data[:cut]
        with open(path, "r+b") as fh:
            fh.truncate(cut)
    return data.decode("utf-8").splitlines()


class SyncGroup:
    """Files written since the last ``commit``, fsynced together then (group commit).

    Shared by the journals of one session: many appends (a burst of orders, a chunk
    of execution reports) cost one fsync per file instead of one per line.
    """

    def __init__(self) -> None:
        self._dirty: dict[int, IO[bytes]] = {}

    def note(self, fh: IO[bytes]) -> None:
        """Remember a file that was written (and flushed) but not fsynced."""
        self._dirty[id(fh)] = fh

    def commit(self) -> None:
        """Fsync every file written since the last commit."""
        for fh in self._dirty.values():
            if not fh.closed:  # a closed one was rewritten atomically (fsynced) or closed after a commit
                os.fsync(fh.fileno())
        self._dirty.clear()


class _Journal:
    """An append-only file of lines, flushed per append, fsynced per append or per group commit."""

    def __init__(self, path: Path, fsync: bool, group: SyncGroup | None = None) -> None:
        self._path = path
        self._fsync = fsync
        self._group = group
        self._fh: IO[bytes] | None = None

    def append(self, line: str) -> None:
        if self._fh is None:
            self._fh = open(self._path, "ab")  # kept open across appends
        self._fh.write(line.encode("utf-8") + b"\n")
        self._fh.flush()
        if self._fsync:
            if self._group is not None:
                self._group.note(self._fh)
            else:
                os.fsync(self._fh.fileno())

    def rewrite(self, lines: list[str]) -> None:
        self.close()
        atomic_write(self._path, "".join(f"{x}\n" for x in lines).encode(), fsync=self._fsync)

    def close(self) -> None:
        if self._fh is not None:
            if self._fsync and self._group is not None:
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


class SessionStore:
    """Sequence numbers and the application messages we sent, kept for resends."""

    def __init__(self, directory: Path, *, fsync: bool = True, group: SyncGroup | None = None) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._group = group
        self._seq_path = self._dir / "seqnums.json"
        self._messages: dict[int, bytes] = {}
        self._journal = _Journal(self._dir / "messages.log", fsync, group)
        self._next_sender = 1
        self._next_target = 1
        self._created = datetime.now(UTC)
        self._dirty = False
        self._load()

    def _load(self) -> None:
        if self._seq_path.exists():
            data = json.loads(self._seq_path.read_text())
            self._next_sender = int(data["next_sender"])
            self._next_target = int(data["next_target"])
            self._created = datetime.fromisoformat(data["created"])
        for line in _read_lines(self._dir / "messages.log"):
            rec = json.loads(line)
            self._messages[int(rec["seq"])] = rec["raw"].encode("latin-1")
        if self._messages:
            # A message on disk was (maybe) on the wire: never reuse its number.
            highest = max(self._messages)
            if highest >= self._next_sender:
                log.warning("fix store: seqnums behind messages.log; next sender %d", highest + 1)
                self._next_sender = highest + 1
                self._dirty = True
                self.save()

    @property
    def directory(self) -> Path:
        """Return the store directory."""
        return self._dir

    @property
    def next_sender_seq(self) -> int:
        """Return the MsgSeqNum our next message gets."""
        return self._next_sender

    @next_sender_seq.setter
    def next_sender_seq(self, value: int) -> None:
        self._next_sender = value
        self._dirty = True

    @property
    def next_target_seq(self) -> int:
        """Return the MsgSeqNum we expect next from the venue."""
        return self._next_target

    @next_target_seq.setter
    def next_target_seq(self, value: int) -> None:
        self._next_target = value
        self._dirty = True

    @property
    def created(self) -> datetime:
        """Return when the current sequence numbering started."""
        return self._created

    def save(self) -> None:
        """Commit the sync group, then write the sequence numbers (atomically) if they changed."""
        if self._group is not None:
            self._group.commit()
        if not self._dirty:
            return
        data = {
            "next_sender": self._next_sender,
            "next_target": self._next_target,
            "created": self._created.isoformat(),
        }
        atomic_write(self._seq_path, json.dumps(data).encode(), fsync=self._fsync)
        self._dirty = False

    def store_message(self, seq: int, raw: bytes) -> None:
        """Keep a sent application message for resends (appended before it is sent)."""
        self._messages[seq] = raw
        self._journal.append(json.dumps({"seq": seq, "raw": raw.decode("latin-1")}))

    def message(self, seq: int) -> bytes | None:
        """Return the sent application message with this MsgSeqNum, if kept."""
        return self._messages.get(seq)

    def messages(self, begin: int, end: int) -> dict[int, bytes]:
        """Return the kept messages with ``begin <= seq <= end``."""
        return {s: m for s, m in self._messages.items() if begin <= s <= end}

    def reset(self, now: datetime) -> None:
        """Start both sequences at 1 and forget sent messages (ResetSeqNumFlag)."""
        self._messages.clear()
        self._journal.rewrite([])
        self._next_sender = 1
        self._next_target = 1
        self._created = now
        self._dirty = True
        self.save()

    def close(self) -> None:
        """Save and close the files."""
        self.save()
        self._journal.close()


@dataclass(slots=True)
class Reported:
    """The fills of one order in the report log: total quantity and notional."""

    qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)

    @property
    def avg_px(self) -> Decimal:
        """Return the average price of the logged fills (0 when there are none)."""
        return self.notional / self.qty if self.qty else Decimal(0)


class ReportLog:
    """The numbered outbox of reports (``reports.jsonl``, see the module doc).

    ``append`` (I/O thread) writes a report and queues it; ``take`` (consumer thread)
    hands the queued ones on with their offsets. ``replay(offset)``, called once
    before the first append, queues the logged reports from ``offset`` on again and
    compacts the ones before it away: the consumer restored a snapshot that already
    covers them.
    """

    def __init__(self, directory: Path, *, fsync: bool = True, group: SyncGroup | None = None) -> None:
        self._path = Path(directory) / "reports.jsonl"
        self._journal = _Journal(self._path, fsync, group)
        self._start = 0
        self._end = 0
        self._kept: list[tuple[int, str]] = []
        self._reported: dict[str, Reported] = {}
        self._queue: deque[tuple[int, VenueFill]] = deque()
        self._replayed = False
        for line in _read_lines(self._path):
            rec = json.loads(line)
            if "o" in rec:
                fill = VenueFill.model_validate(rec["r"])
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
        """Write a report (flushed, fsynced) and queue it for ``take``; return its offset."""
        offset = self._end
        line = json.dumps({"o": offset, "r": fill.model_dump(mode="json")})
        self._journal.append(line)
        self._end = offset + 1
        self._count(fill)
        self._queue.append((offset, fill))
        return offset

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
        """Return how many reports wait for ``take``."""
        return len(self._queue)

    def replay(self, offset: int) -> int:
        """Queue the logged reports from ``offset`` on, compact the older ones away.

        Return the offset the consumer continues from (``offset``, or the log's start
        if that is later: those reports are gone). Call it once, before any append.
        """
        if self._replayed or self._queue:
            raise RuntimeError("ReportLog.replay may run once, before any append")
        self._replayed = True
        if offset < self._start:
            log.warning("fix store: replay from %d asked; reports before %d are gone", offset, self._start)
        kept = [(o, line) for o, line in self._kept if o >= offset]
        self._kept = []
        base = self.reported_orders()
        for o, line in kept:
            fill = VenueFill.model_validate(json.loads(line)["r"])
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

    def close(self) -> None:
        """Close the file."""
        self._journal.close()


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
        """Return the fields that are journaled."""
        data = asdict(self)
        for k in ("cum_qty", "avg_px", "leaves_qty", "pending_cancel"):
            data.pop(k)
        data["phase"] = self.phase.value
        return data


class OrderJournal:
    """The order map (order_id, ClOrdIDs, venue OrderID, phase), seen ExecIDs and the outbox."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        max_seen: int = 100_000,
        group: SyncGroup | None = None,
    ) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._max_seen = max_seen
        self._orders: dict[str, OrderEntry] = {}
        self._by_cl_ord_id: dict[str, str] = {}
        self._by_venue_id: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._orders_log = _Journal(self._dir / "orders.jsonl", fsync, group)
        self._exec_log = _Journal(self._dir / "execids.log", fsync, group)
        self._exec_lines = 0
        self.reports = ReportLog(self._dir, fsync=fsync, group=group)
        """The outbox of reports handed to the layers above (see ``ReportLog``)."""
        self._load()

    def _load(self) -> None:
        lines = _read_lines(self._dir / "orders.jsonl")
        for line in lines:
            self._apply(json.loads(line))
        if len(lines) > 2 * len(self._orders) + 64:
            self._orders_log.rewrite(
                [json.dumps({"e": "snap", **o.persisted()}) for o in self._orders.values()]
            )
        exec_lines = _read_lines(self._dir / "execids.log")
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
        self._orders_log.append(json.dumps(ev))
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
        self._exec_log.append(json.dumps(exec_id))
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
        """Close the journal files."""
        self._orders_log.close()
        self._exec_log.close()
        self.reports.close()
