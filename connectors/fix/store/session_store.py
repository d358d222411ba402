"""The session's sequence numbers and the application messages it sent (for resends)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from connectors.fix.store.files import StoreFiles, SyncGroup, read_lines

log = logging.getLogger(__name__)


COMPACT_SEQNUMS_AT = 10_000
"""Lines in seqnums.log after which the next save rewrites it to one line."""


def read_seqnums(directory: Path) -> dict[str, str | int] | None:
    """Return the last saved sequence numbers of the store in ``directory`` (None: none saved).

    ``{"next_sender": 12, "next_target": 9, "created": "..."}``: the last complete line of
    ``seqnums.log``, else the ``seqnums.json`` an older version replaced atomically.
    """
    lines = read_lines(directory / "seqnums.log")
    if lines:
        return json.loads(lines[-1])
    legacy = directory / "seqnums.json"
    return json.loads(legacy.read_text()) if legacy.exists() else None


class _Seqnum:
    """A sequence number of the store: setting it marks the store dirty, for ``save``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = "_" + name

    def __get__(self, store: SessionStore, owner: type | None = None) -> int:
        value: int = getattr(store, self._attr)
        return value

    def __set__(self, store: SessionStore, value: int) -> None:
        setattr(store, self._attr, value)
        store._dirty = True


class SessionStore(StoreFiles):
    """Sequence numbers and the application messages we sent, kept for resends."""

    def __init__(self, directory: Path, *, fsync: bool = True, group: SyncGroup | None = None) -> None:
        super().__init__(directory, fsync=fsync, group=group)
        self._messages: dict[int, bytes] = {}
        self._journal = self._open_journal("messages.log")
        self._seq_journal = self._open_journal("seqnums.log")
        self._seq_lines = len(read_lines(self._dir / "seqnums.log"))
        self._next_sender_seq = 1
        self._next_target_seq = 1
        self._created = datetime.now(UTC)
        self._dirty = False
        self._load()

    def _load(self) -> None:
        data = read_seqnums(self._dir)
        if data is not None:
            self._next_sender_seq = int(data["next_sender"])
            self._next_target_seq = int(data["next_target"])
            self._created = datetime.fromisoformat(str(data["created"]))
        for line in read_lines(self._dir / "messages.log"):
            rec = json.loads(line)
            self._messages[int(rec["seq"])] = rec["raw"].encode("latin-1")
        if self._messages:
            # A message on disk was (maybe) on the wire: never reuse its number.
            highest = max(self._messages)
            if highest >= self._next_sender_seq:
                log.warning("fix store: seqnums behind messages.log; next sender %d", highest + 1)
                self._next_sender_seq = highest + 1
                self._dirty = True
                self.save()

    next_sender_seq = _Seqnum()
    """The MsgSeqNum our next message gets."""
    next_target_seq = _Seqnum()
    """The MsgSeqNum we expect next from the venue."""

    @property
    def created(self) -> datetime:
        """Return when the current sequence numbering started."""
        return self._created

    def save(self) -> None:
        """Append the sequence numbers if they changed, then commit the sync group.

        One line appended to ``seqnums.log`` (fsynced with the other files of the group,
        not a file replaced with two fsyncs and a rename); every ``COMPACT_SEQNUMS_AT``
        lines the log is rewritten atomically to its last line.
        """
        if self._dirty:
            line = json.dumps({
                "next_sender": self._next_sender_seq,
                "next_target": self._next_target_seq,
                "created": self._created.isoformat(),
            })
            if self._seq_lines >= COMPACT_SEQNUMS_AT:
                self._seq_journal.rewrite([line])
                self._seq_lines = 1
            else:
                self._seq_journal.append(line)
                self._seq_lines += 1
            self._dirty = False
        if self._group is not None:
            self._group.commit()

    def store_message(self, seq: int, raw: bytes) -> None:
        """Keep a sent application message for resends (appended before it is sent)."""
        self._messages[seq] = raw
        self._journal.append_json({"seq": seq, "raw": raw.decode("latin-1")})

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
        self._next_sender_seq = 1
        self._next_target_seq = 1
        self._created = now
        self._dirty = True
        self.save()

    def close(self) -> None:
        """Save and close the files."""
        self.save()
        super().close()
