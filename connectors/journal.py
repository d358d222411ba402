"""Job C's input journal on the active profile (``risk_journal``): append, find a tail.

The journal is written ahead: a book appends the inputs it is about to apply (one
write per batch, flushed before the flow emits a single output of them), so after a
crash every input that may have had an effect is in the journal, in the order it was
applied. A book that resumes first applies its journal entries past its snapshot (or,
for a book that has none, every entry of its account), then drops re-read inputs it
journaled already (``operators.sequencing.InputPositions``).

Finding an account's entries reads every partition of the journal once per process
(the first time a book asks) and keeps each account's entries by seq; a journal with
long history makes that first read slow (checkpointing it is a known next step).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from connectors.base import StreamWriter
from connectors.registry import Connectors
from schemas import DecodeError, JournalEntry, decode

STREAM = "risk_journal"
READ_BATCH = 5_000


class JournalError(RuntimeError):
    """The journal cannot be read back (a corrupt entry): Job C cannot resume from it."""


class InputJournal:
    """Append Job C's journal entries and read an account's entries back (thread-safe)."""

    def __init__(self, conn: Connectors, stream: str = STREAM) -> None:
        self._conn = conn
        self._stream = stream
        self._lock = threading.Lock()
        self._writer: StreamWriter | None = None
        self._index: dict[str, list[JournalEntry]] | None = None

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Write entries durably (returns once the backend has them)."""
        if not entries:
            return
        with self._lock:
            if self._writer is None:
                self._writer = self._conn.writer(self._stream)
            self._writer.write(entries)

    def after(self, account: str, seq: int) -> list[JournalEntry]:
        """Return the account's entries with a seq above ``seq``, in seq order."""
        with self._lock:
            if self._index is None:
                self._index = self._load()
            return [e for e in self._index.get(account, ()) if e.seq > seq]

    def _load(self) -> dict[str, list[JournalEntry]]:
        by_seq: dict[str, dict[int, JournalEntry]] = {}
        for stored in self._conn.scan(self._stream, READ_BATCH):
            try:
                entry = decode(JournalEntry, stored.value)
            except DecodeError as exc:
                raise JournalError(
                    f"{self._stream} partition {stored.partition} offset {stored.offset} "
                    f"does not decode: {exc}"
                ) from None
            by_seq.setdefault(entry.account, {})[entry.seq] = entry
        return {acct: [d[s] for s in sorted(d)] for acct, d in by_seq.items()}

    def close(self) -> None:
        """Release the writer."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
