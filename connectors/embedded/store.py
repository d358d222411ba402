"""The embedded store of the ``local`` profile: one SQLite file per stream, in WAL mode.

Why SQLite: it ships with Python, several processes can read and write one file at
once (WAL: readers never block the writer), a crash never leaves a half-written
batch, and anyone can inspect a stream with the ``sqlite3`` shell.

Layout of ``<data_dir>/<stream>.db``:

- ``log(part, off, key, value)``: the append-only log; ``off`` counts from 0 in each
  partition. A record's partition is ``crc32(key) % partitions``, stable across
  processes and runs.
- ``latest(key, value, part, off)``: for tables, the latest payload per key, updated
  in the same transaction as the log append (so the changelog and the table agree).
- ``meta(k, v)``: the partition count, fixed when the file is created, and whether
  the writer has closed the stream.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from connectors.base import ConnectorError, SourceMessage, StoredRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    part INTEGER NOT NULL,
    off INTEGER NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    at INTEGER,
    PRIMARY KEY (part, off)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    part INTEGER NOT NULL,
    off INTEGER NOT NULL
) WITHOUT ROWID;
"""


LOCK_TIMEOUT_S = 60.0
"""How long a writer waits for another process's write lock before failing."""


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def partition_for(key: str | None, partitions: int) -> int:
    """Return the partition of a key: ``crc32(key) % partitions`` (None goes to 0)."""
    if key is None or partitions == 1:
        return 0
    return zlib.crc32(key.encode()) % partitions


class StoreFile:
    """One stream's SQLite file; safe to use from several processes at once.

    A ``StoreFile`` holds one connection and is meant for one thread (Bytewax runs a
    worker's sources and sinks on the worker's thread); open one per thread.
    """

    def __init__(self, path: Path, *, partitions: int, table: bool) -> None:
        self.path = path
        self.table = table
        self._wal = f"{path}-wal"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._use_wal()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=60000")
        with self._write():
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                self._conn.execute(stmt)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(log)")}
            if "at" not in columns:  # a file from before append times were kept
                self._conn.execute("ALTER TABLE log ADD COLUMN at INTEGER")
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (k, v) VALUES ('partitions', ?)", (str(partitions),)
            )
        row = self._conn.execute("SELECT v FROM meta WHERE k = 'partitions'").fetchone()
        self.partitions = int(row[0])

    def _use_wal(self, deadline_s: float = 60.0) -> None:
        """Switch the file to WAL (persistent: once per file).

        Switching needs the file to itself, and SQLite answers "database is locked" at
        once rather than through the busy timeout when another process opens the same
        new file at that moment (two Job Ds starting together): retry until it is ours.
        """
        give_up = time.monotonic() + deadline_s
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > give_up:
                    raise
                time.sleep(0.01 + random.random() * 0.05)  # noqa: S311 - jitter, not security

    def _write(self) -> _Tx:
        return _Tx(self._conn)

    def append(
        self, items: Sequence[tuple[str | None, bytes]], ids: Sequence[str] | None = None
    ) -> list[tuple[int, int]]:
        """Append (key, payload) pairs in one transaction; return their (part, off).

        With ``ids`` (one per item), an item whose id was appended before is skipped:
        the log keeps each id once, however often a replay writes it.
        """
        if not items:
            return []
        placed: list[tuple[int, int]] = []
        rows: list[tuple[int, int, str | None, bytes]] = []
        now_ms = time.time_ns() // 1_000_000
        with self._write():
            heads: dict[int, int] = {}
            for i, (key, value) in enumerate(items):
                if ids is not None and not self._first_time(ids[i]):
                    continue
                part = partition_for(key, self.partitions)
                off = heads.get(part)
                if off is None:
                    got = self._conn.execute(
                        "SELECT MAX(off) FROM log WHERE part = ?", (part,)
                    ).fetchone()[0]
                    off = 0 if got is None else got + 1
                heads[part] = off + 1
                rows.append((part, off, key, value))
                placed.append((part, off))
            if not rows:
                return placed
            self._conn.executemany(
                "INSERT INTO log (part, off, key, value, at) VALUES (?, ?, ?, ?, ?)",
                [(*row, now_ms) for row in rows],
            )
            if self.table:
                self._conn.executemany(
                    "INSERT INTO latest (key, value, part, off) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                    "part = excluded.part, off = excluded.off",
                    [(k, v, p, o) for p, o, k, v in rows if k is not None],
                )
        return placed

    def _first_time(self, record_id: str) -> bool:
        cur = self._conn.execute("INSERT OR IGNORE INTO ids (id) VALUES (?)", (record_id,))
        return cur.rowcount == 1

    def read(self, part: int, offset: int, limit: int) -> list[StoredRecord]:
        """Return up to ``limit`` records of ``part`` from ``offset`` on, in order."""
        cur = self._conn.execute(
            "SELECT off, key, value, at FROM log WHERE part = ? AND off >= ? ORDER BY off LIMIT ?",
            (part, offset, limit),
        )
        return [StoredRecord(part, off, key, bytes(value), None if at is None else _from_ms(at))
                for off, key, value, at in cur]

    def read_messages(self, stream: str, part: int, offset: int, limit: int) -> list[SourceMessage]:
        """Return up to ``limit`` records of ``part`` from ``offset`` on as a source emits them.

        ``read`` without the append time (a source does not carry it): no datetime and
        no ``StoredRecord`` per record on the jobs' input path.
        """
        cur = self._conn.execute(
            "SELECT off, key, value FROM log WHERE part = ? AND off >= ? ORDER BY off LIMIT ?",
            (part, offset, limit),
        )
        return [SourceMessage(stream, part, off, key, bytes(value)) for off, key, value in cur]

    def wal_signature(self) -> tuple[int, int] | None:
        """Return the size and modification time of the file's write-ahead log (None: no log).

        A commit appends to the log, so a reader that found nothing new can look at this
        (a ``stat``, about a microsecond) instead of querying again. It may miss a commit
        that rewrote a restarted log to the same size within the same clock tick of the
        file system, so a poller still queries now and then (``_StorePartition``).
        """
        try:
            st = os.stat(self._wal)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def end_offsets(self) -> dict[int, int]:
        """Return the next offset per partition."""
        ends = dict.fromkeys(range(self.partitions), 0)
        for part, top in self._conn.execute("SELECT part, MAX(off) FROM log GROUP BY part"):
            ends[part] = top + 1
        return ends

    def end_offset(self, part: int) -> int:
        """Return the next offset of one partition."""
        top = self._conn.execute("SELECT MAX(off) FROM log WHERE part = ?", (part,)).fetchone()[0]
        return 0 if top is None else top + 1

    def latest(self, key: str) -> bytes | None:
        """Return the latest payload for a key (tables only)."""
        row = self._conn.execute("SELECT value FROM latest WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan_latest(self) -> Iterable[tuple[str, bytes]]:
        """Yield (key, latest payload) for every key, ordered by key."""
        for key, value in self._conn.execute("SELECT key, value FROM latest ORDER BY key"):
            yield key, bytes(value)

    def set_closed(self, closed: bool = True) -> None:
        """Mark the stream closed (finished by its writer) or open again."""
        with self._write():
            self._conn.execute(
                "INSERT INTO meta (k, v) VALUES ('closed', ?) "
                "ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                ("1" if closed else "0",),
            )

    def is_closed(self) -> bool:
        """Tell whether the stream was closed by its writer."""
        row = self._conn.execute("SELECT v FROM meta WHERE k = 'closed'").fetchone()
        return row is not None and row[0] == "1"

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _Tx:
    """Run ``BEGIN IMMEDIATE`` ... ``COMMIT`` around a block.

    The write lock is taken up front, so two writers never both read the same
    partition head.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        # SQLite's own busy handler backs off in sleeps of up to 100 ms, which lets a
        # second writer process idle far longer than the lock is held. Take the write
        # lock with a short busy timeout and retry in sub-millisecond steps instead.
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        self._conn.execute("PRAGMA busy_timeout=1")
        try:
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.0001, 0.0008))  # noqa: S311 - jitter only
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={int(LOCK_TIMEOUT_S * 1000)}")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def open_stream(data_dir: Path, name: str, *, partitions: int, table: bool) -> StoreFile:
    """Open (creating if needed) the store file of stream ``name`` under ``data_dir``."""
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ConnectorError(f"stream name {name!r} is not a safe file name")
    return StoreFile(data_dir / f"{name}.db", partitions=partitions, table=table)
