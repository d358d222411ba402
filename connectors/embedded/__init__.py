"""The ``local`` profile: streams in an embedded SQLite store under a data directory."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override

from connectors.base import (
    Backend,
    OffsetPartition,
    Polling,
    PollingSource,
    SourceMessage,
    StoredRecord,
    StreamReader,
    StreamWriter,
)
from connectors.embedded.store import StoreFile, open_stream, partition_for
from connectors.metrics import SOURCE_LAG
from schemas import Kind, Record, StreamSpec, encode


class _StorePartition(OffsetPartition):
    def __init__(self, source: StoreSource, part: int, offset: int) -> None:
        self._src = source
        self._part = part
        self._offset = offset
        self._file = source.open()
        self._awake = None
        self._quiet_at: tuple[int, int] | None = None
        """The store's ``wal_signature`` when a poll last found nothing new."""
        self._query_by = 0.0
        """``time.monotonic()`` by which to query even if the signature did not change."""
        self._lag = SOURCE_LAG.labels(source.name, str(part))

    def next_batch(self) -> list[SourceMessage]:
        signature = self._file.wal_signature()
        if signature == self._quiet_at and time.monotonic() < self._query_by:
            self._rest(self._src.polling)  # nothing committed since the last poll found none
            return []
        size = self._src.polling.batch_size
        rows = self._file.read_messages(self._src.name, self._part, self._offset, size)
        if rows:
            self._offset = rows[-1].offset + 1
            self._quiet_at, self._query_by = None, 0.0
            self._more()
            if len(rows) == size:  # behind: report how far
                end = self._file.end_offset(self._part)
                self._lag.set(end - self._offset)
            else:
                self._lag.set(0)
            return rows
        if not self._src.follow and self._file.is_closed():
            # Re-read after seeing 'closed': records appended just before the close.
            if not self._file.read(self._part, self._offset, 1):
                raise StopIteration
            return []
        self._quiet_at = signature
        self._query_by = time.monotonic() + self._src.polling.interval.total_seconds()
        self._rest(self._src.polling)
        return []

    def close(self) -> None:
        self._file.close()


@dataclass(eq=False)
class StoreSource(PollingSource):
    """A Bytewax source over one stream: one source partition per store partition.

    Snapshots are the next offset to read, so a flow restarted with recovery resumes
    exactly where its last snapshot was taken. With ``follow`` the source waits at the
    end for more records; without it, it stops at the end once the stream is closed.
    """

    data_dir: Path
    name: str
    _: KW_ONLY
    partitions: int
    table: bool

    def _known_partitions(self) -> int:
        # The file fixes the partition count when it is created; ask it (lazily, so
        # building a flow touches no file until it runs).
        probe = self.open(self.partitions)
        try:
            return probe.partitions
        finally:
            probe.close()

    def open(self, partitions: int = 1) -> StoreFile:
        """Open the stream's store file (partition count comes from the file)."""
        return open_stream(self.data_dir, self.name, partitions=partitions, table=self.table)

    @override
    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self._known_partitions())]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _StorePartition:
        part = int(for_part)
        if resume_state is None and self.from_end:
            probe = self.open()
            resume_state = probe.end_offsets()[part]
            probe.close()
        return _StorePartition(self, part, resume_state or 0)


def _append(file: StoreFile, spec: StreamSpec, records: Sequence[Record]) -> None:
    ids = [spec.record_id(r) or "" for r in records] if spec.unique else None
    file.append([(r.key(), encode(r)) for r in records], ids)


class _StoreSinkPartition(StatelessSinkPartition[Record]):
    def __init__(self, file: StoreFile, spec: StreamSpec) -> None:
        self._file = file
        self._spec = spec

    def write_batch(self, items: list[Record]) -> None:
        _append(self._file, self._spec, items)

    def close(self) -> None:
        self._file.close()


class StoreSink(DynamicSink[Record]):
    """A Bytewax sink appending records to a log (and upserting tables) in batches."""

    def __init__(self, data_dir: Path, name: str, spec: StreamSpec, *, partitions: int) -> None:
        self.data_dir = data_dir
        self.name = name
        self.spec = spec
        self.partitions = partitions
        self.table = spec.kind is Kind.TABLE

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StoreSinkPartition:
        return _StoreSinkPartition(
            open_stream(self.data_dir, self.name, partitions=self.partitions, table=self.table),
            self.spec,
        )


class StoreWriter(StreamWriter):
    """Plain writer into the embedded store."""

    def __init__(self, file: StoreFile, spec: StreamSpec) -> None:
        self._file = file
        self._spec = spec

    def write(self, records: Sequence[Record]) -> None:
        """Append records in one transaction (records already written by id are skipped)."""
        _append(self._file, self._spec, records)

    def write_raw(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Append raw payloads in one transaction."""
        self._file.append(items)

    def close_stream(self) -> None:
        """Mark the stream finished."""
        self._file.set_closed(True)

    def reopen_stream(self) -> None:
        """Mark the stream open again (tests and benches that run a flow phase by phase)."""
        self._file.set_closed(False)

    def close(self) -> None:
        """Close the store file."""
        self._file.close()


class StoreReader(StreamReader):
    """Plain reader of the embedded store."""

    def __init__(self, file: StoreFile) -> None:
        self._file = file

    @property
    def partitions(self) -> int:
        """Return the number of partitions."""
        return self._file.partitions

    def read(self, partition: int, offset: int, limit: int) -> list[StoredRecord]:
        """Return records of a partition from an offset on."""
        return self._file.read(partition, offset, limit)

    def end_offsets(self) -> dict[int, int]:
        """Return the next offset per partition."""
        return self._file.end_offsets()

    def latest(self, key: str) -> bytes | None:
        """Return the latest payload of a key."""
        return self._file.latest(key)

    def scan_latest(self) -> Iterable[tuple[str, bytes]]:
        """Yield every key's latest payload."""
        return self._file.scan_latest()

    def is_closed(self) -> bool:
        """Tell whether the stream was closed."""
        return self._file.is_closed()

    def close(self) -> None:
        """Close the store file."""
        self._file.close()


class LocalBackend(Backend):
    """Connectors of the ``local`` profile."""

    keeps_ids = True  # StoreFile.append skips an id it has

    def __init__(self, data_dir: Path, *, partitions: int = 2, polling: Polling = Polling()) -> None:
        self.data_dir = Path(data_dir)
        self.partitions = partitions
        self.polling = polling

    def partition_of(self, key: str, partitions: int) -> int:
        """Return a key's partition: ``crc32(key) % partitions`` (``store.partition_for``)."""
        return partition_for(key, partitions)

    def _open(self, spec: StreamSpec, name: str) -> StoreFile:
        parts = 1 if spec.kind is Kind.TABLE else self.partitions
        return open_stream(self.data_dir, name, partitions=parts, table=spec.kind is Kind.TABLE)

    def source(
        self, spec: StreamSpec, name: str, *, follow: bool, from_end: bool = False
    ) -> StoreSource:
        """Return a source over the stream."""
        table = spec.kind is Kind.TABLE
        return StoreSource(
            self.data_dir, name, partitions=1 if table else self.partitions, table=table,
            follow=follow, polling=self.polling, from_end=from_end,
        )

    def sink(self, spec: StreamSpec, name: str) -> StoreSink:
        """Return a sink into the stream."""
        table = spec.kind is Kind.TABLE
        return StoreSink(self.data_dir, name, spec, partitions=1 if table else self.partitions)

    def writer(self, spec: StreamSpec, name: str) -> StoreWriter:
        """Return a plain writer."""
        return StoreWriter(self._open(spec, name), spec)

    def reader(self, spec: StreamSpec, name: str) -> StoreReader:
        """Return a plain reader."""
        return StoreReader(self._open(spec, name))
