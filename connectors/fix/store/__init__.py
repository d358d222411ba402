"""The on-disk store of one FIX session: what must survive a restart.

Modules: ``files`` (atomic writes, journals, grouped fsyncs), ``session_store``
(sequence numbers and sent messages), ``outbox`` (the report outbox) and
``order_journal`` (the order map and the ExecIDs seen).

Layout, one directory per CompID pair (``FixSettings.session_dir``)::

    seqnums.log     one JSON line per save, the last one counts:
                    {"next_sender": 12, "next_target": 9, "created": "...Z"}
                    (appended in the sync group; rewritten to its last line every
                    10,000 saves; a seqnums.json of older versions is read if no log)
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
                    {"o": 12, "r": {<VenueFill as the streams' JSON>}}
                    {"start": 40}      (after compaction: the first offset kept)
                    {"base": "<order_id>", "qty": "...", "notional": "..."}
                                       (fills of that order compacted away)

Appends are one ``write`` of a whole line, flushed at once (a killed process loses
nothing) and fsynced unless disabled, before the caller puts bytes on the wire, so the
store is always ahead of the venue. With a ``SyncGroup`` the fsyncs are grouped: the
files written since the last commit, the sequence numbers' line among them, are
fsynced together when the session saves (``SessionStore.save``), which the session does
before any bytes go out and after the application handled what came in. Inside a
session batch (``FixSession.batch``, which holds the group) the lines are not even
flushed per append: the commit writes each file once, then fsyncs, and only then are the
batch's reports handed on (``ReportLog``) and its bytes sent. A process killed inside a
batch loses that batch's lines and nothing else: nothing of the batch had left it.
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

from connectors.fix.store.files import SyncGroup, atomic_write
from connectors.fix.store.order_journal import OrderEntry, OrderJournal, OrderPhase
from connectors.fix.store.outbox import Reported, ReportLog
from connectors.fix.store.session_store import SessionStore, read_seqnums

__all__ = [
    "OrderEntry",
    "OrderJournal",
    "OrderPhase",
    "ReportLog",
    "Reported",
    "SessionStore",
    "SyncGroup",
    "atomic_write",
    "read_seqnums",
]
