"""Durable files of the FIX store: atomic replacement, fsynced line journals, grouped fsyncs.

A torn last line (a crash mid-write) is cut off when a journal is read again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO

import msgspec

log = logging.getLogger(__name__)

_JSON_LINE = msgspec.json.Encoder().encode
"""Compact JSON of plain values (what ``json.dumps`` writes, without its spaces), in C."""


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
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Fsync a directory, so a rename or a new file in it is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str]:
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


_FSYNCERS: ThreadPoolExecutor | None = None
_FSYNCERS_LOCK = threading.Lock()


def _forget_fsyncers() -> None:
    """In a forked child: the parent's pool threads do not exist there; make a new pool."""
    global _FSYNCERS, _FSYNCERS_LOCK  # noqa: PLW0603
    _FSYNCERS, _FSYNCERS_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_fsyncers)


def _fsyncers() -> ThreadPoolExecutor:
    global _FSYNCERS  # noqa: PLW0603 - one small pool per process, made on first use
    with _FSYNCERS_LOCK:
        if _FSYNCERS is None:
            _FSYNCERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fsync")
        return _FSYNCERS


class SyncGroup:
    """Files written since the last ``commit``, fsynced together then (group commit).

    Shared by the journals of one session: many appends (a burst of orders, a chunk
    of execution reports) cost one fsync per file instead of one per line, and the
    files of one commit are fsynced at the same time (a small thread pool; the call
    returns when all are durable), which a journaling file system serves with about
    one disk flush instead of one per file.

    While the group is held (``hold``: the FIX session's batch), appends are not even
    flushed: the lines wait in the files' buffers and ``commit`` writes each file once,
    then fsyncs. A process killed inside a batch loses that batch's lines, and only
    them: nothing the batch did has left the process yet (its outbound bytes go after
    the commit, its reports are handed on after it, see ``after_commit``, and its
    inbound sequence numbers were not saved either, so the venue sends them again).
    """

    def __init__(self) -> None:
        self._dirty: dict[int, tuple[IO[bytes], bool]] = {}
        self._holds = 0
        self._after: list[Callable[[], None]] = []

    @property
    def held(self) -> bool:
        """Tell whether appends wait for the commit (a batch is open)."""
        return self._holds > 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Let appends wait for ``commit`` while inside (nests); the caller commits after."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def note(self, fh: IO[bytes], fsync: bool = True) -> None:
        """Remember a file that was written but not fsynced (nor flushed, while held)."""
        self._dirty[id(fh)] = (fh, fsync)

    def after_commit(self, publish: Callable[[], None]) -> None:
        """Run ``publish`` once at the end of the next commit, when what it shows is durable."""
        if publish not in self._after:
            self._after.append(publish)

    def commit(self) -> None:
        """Write and fsync every file noted since the last commit; return when all are durable."""
        # a closed one was rewritten atomically (fsynced) or closed after a commit
        fhs = [(fh, fsync) for fh, fsync in self._dirty.values() if not fh.closed]
        self._dirty.clear()
        for fh, _ in fhs:
            fh.flush()
        fds = [fh.fileno() for fh, fsync in fhs if fsync]
        if len(fds) == 1:
            os.fsync(fds[0])
        elif fds:
            for done in [_fsyncers().submit(os.fsync, fd) for fd in fds]:
                done.result()  # raises the first failure
        after, self._after = self._after, []
        for publish in after:
            publish()


class Journal:
    """An append-only file of lines, fsynced per append or per group commit.

    Each line is written (flushed) as it is appended, or at the commit while its group is
    held.
    """

    def __init__(self, path: Path, fsync: bool, group: SyncGroup | None = None) -> None:
        self._path = path
        self._fsync = fsync
        self._group = group
        self._fh: IO[bytes] | None = None

    def append(self, line: str) -> None:
        """Append one line in one write, fsynced at once or noted in the group.

        It is flushed at once, or at the commit while the group is held.
        """
        self.append_bytes(line.encode("utf-8"))

    def append_json(self, value: object) -> None:
        """Append ``value`` as one line of compact JSON (``append``)."""
        self.append_bytes(_JSON_LINE(value))

    def append_bytes(self, line: bytes) -> None:
        """Append one line given as UTF-8 bytes without its newline (``append``)."""
        fh = self._fh
        if fh is None:
            fh = self._fh = open(self._path, "ab")  # kept open across appends  # noqa: SIM115
        fh.write(line + b"\n")
        group = self._group
        if group is not None and group.held:
            group.note(fh, self._fsync)
            return
        fh.flush()
        if self._fsync:
            if group is not None:
                group.note(fh)
            else:
                os.fsync(fh.fileno())

    def rewrite(self, lines: list[str]) -> None:
        """Replace the journal with ``lines`` atomically (compaction)."""
        self.close()
        atomic_write(self._path, "".join(f"{x}\n" for x in lines).encode(), fsync=self._fsync)

    def close(self) -> None:
        """Close the file (written, and fsynced first when grouped)."""
        if self._fh is not None:
            if self._fsync and self._group is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


class StoreFiles:
    """One part of a session's store: its directory (made on open) and the journals it keeps.

    The base of ``SessionStore``, ``ReportLog`` and ``OrderJournal``: they open their
    journals with ``_open_journal`` (all with the store's fsync setting and sync group)
    and ``close`` closes every one of them.
    """

    def __init__(self, directory: Path, *, fsync: bool = True, group: SyncGroup | None = None) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._group = group
        self._journals: list[Journal] = []

    @property
    def directory(self) -> Path:
        """Return the store directory."""
        return self._dir

    def hold_writes(self) -> AbstractContextManager[None]:
        """Let the group's appends wait for its commit while inside (``SyncGroup.hold``)."""
        return nullcontext() if self._group is None else self._group.hold()

    def _open_journal(self, name: str) -> Journal:
        """Return the journal ``name`` of the store directory, closed with the store."""
        journal = Journal(self._dir / name, self._fsync, self._group)
        self._journals.append(journal)
        return journal

    def close(self) -> None:
        """Close the files."""
        for journal in self._journals:
            journal.close()
