"""What every profile's connectors have in common.

The message a source emits and the small interfaces the registry hands out: a
Bytewax source and sink per stream, plus a plain writer and reader for feeds, tools
and tests.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.outputs import Sink

from schemas import MarketData, Record, StreamSpec
from schemas.base import utc_ms

if TYPE_CHECKING:
    from connectors.settings import Settings


class ConnectorError(RuntimeError):
    """A connector is misconfigured or its data plane cannot be reached."""


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One raw record read from a stream, not yet decoded.

    Flows decode it into the stream's model; a payload that does not decode goes to
    dead_letters with ``stream``, ``partition`` and ``offset`` so it can be found.
    """

    stream: str
    partition: int
    offset: int
    key: str | None
    value: bytes


@dataclass(frozen=True)
class Polling:
    """How a source polls: at most ``batch_size`` records a poll, and how long it waits at the end.

    A partition with more records is polled again at once. At the end of its stream it
    waits ``busy_interval`` while records keep coming (the last one arrived less than
    ``busy_for`` ago), so a record written to a live stream is picked up within about
    a millisecond; a partition quiet for longer waits ``interval`` between polls, so an
    idle job costs next to no CPU (the first record after a quiet spell waits up to
    ``interval``).
    """

    batch_size: int = 500
    interval: timedelta = timedelta(milliseconds=50)
    busy_interval: timedelta = timedelta(milliseconds=1)
    busy_for: timedelta = timedelta(seconds=1)

    @classmethod
    def of(cls, settings: Settings) -> Polling:
        """Return the polling the settings ask for (``batch_size`` and the ``poll_*`` settings)."""
        return cls(
            settings.batch_size,
            timedelta(milliseconds=settings.poll_interval_ms),
            timedelta(milliseconds=settings.poll_busy_ms),
            timedelta(milliseconds=settings.poll_busy_for_ms),
        )

    def wait(self, quiet_s: float) -> timedelta:
        """Return how long a partition at its end waits, ``quiet_s`` after its last record."""
        return self.busy_interval if quiet_s < self.busy_for.total_seconds() else self.interval


@dataclass(eq=False, kw_only=True)
class PollingSource(FixedPartitionedSource[SourceMessage, int]):
    """The options every backend's source takes (each adds where its stream lives).

    With ``follow`` the source waits at the end for more records; without it, it stops
    at the end once the stream is closed. Without a snapshot a partition starts at its
    first record, or with ``from_end`` at its end.
    """

    follow: bool
    polling: Polling = Polling()
    from_end: bool = False


class OffsetPartition(StatefulSourcePartition[SourceMessage, int]):
    """A polled source partition whose snapshot is the next offset it reads.

    A backend's partition keeps that offset in ``_offset`` and sets ``_awake`` to when
    it wants to be polled again (``None``: at once).
    """

    _offset: int
    _awake: datetime | None = None
    _last_record: float = float("-inf")
    """``time.monotonic()`` when the partition last had records."""

    def _more(self) -> None:
        """Note that records came: poll again at once."""
        self._awake = None
        self._last_record = time.monotonic()

    def _rest(self, polling: Polling) -> None:
        """At the end of the stream: poll again after ``polling.wait`` (see ``Polling``)."""
        self._awake = datetime.now(UTC) + polling.wait(time.monotonic() - self._last_record)

    def next_awake(self) -> datetime | None:
        """Return when Bytewax should call ``next_batch`` again (``None``: at once)."""
        return self._awake

    def snapshot(self) -> int:
        """Return the offset to resume from: the next one this partition reads."""
        return self._offset


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as a reader sees it: where it is and its raw payload."""

    partition: int
    offset: int
    key: str | None
    value: bytes
    written_at: datetime | None = None
    """When the store took the record (UTC; None where the backend does not say): the
    embedded store's append time, Kafka's message timestamp (set by the producer)."""


def stamp_entered(ticks: Sequence[MarketData], at: datetime) -> list[MarketData]:
    """Return ticks stamped ``entered_at`` = ``at`` (UTC ms); a tick that has one keeps it.

    Every feed calls it with its (injected) clock as it writes a batch to market_data:
    the time the ticks entered the system, which every job carries on.
    """
    stamp = {"entered_at": utc_ms(at)}
    return [t if t.entered_at is not None else t.model_copy(update=stamp) for t in ticks]


class StreamWriter(ABC):
    """Append records to one stream outside a dataflow (feeds, tools, tests)."""

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None:
        """Append records (logs) or upsert them (tables), as one batch."""

    def write_raw(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Append raw (key, payload) pairs, bypassing validation (tests of bad input)."""
        raise NotImplementedError(f"{type(self).__name__} cannot write raw payloads")

    @abstractmethod
    def close_stream(self) -> None:
        """Mark the stream finished: bounded readers stop once they reach its end."""

    def finished(self) -> None:  # noqa: B027 - optional hook
        """Tell readers this writer will write nothing more, without closing the stream."""

    def reopen_stream(self) -> None:
        """Mark a finished stream open again, so a bounded run over it can follow another phase."""
        raise NotImplementedError(f"{type(self).__name__} cannot reopen a closed stream")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the writer."""


class StreamReader(ABC):
    """Read one stream outside a dataflow: by partition and offset, or latest per key."""

    @property
    @abstractmethod
    def partitions(self) -> int:
        """Return the number of partitions."""

    @abstractmethod
    def read(self, partition: int, offset: int, limit: int) -> list[StoredRecord]:
        """Return up to ``limit`` records of a partition from ``offset`` on."""

    @abstractmethod
    def end_offsets(self) -> dict[int, int]:
        """Return the next offset to be written, per partition."""

    def data_ends(self) -> dict[int, int]:
        """Return, per partition, one past the offset of its last data record.

        Differs from ``end_offsets`` where a backend writes records that sources never
        deliver (Kafka's end-of-stream markers).
        """
        return self.end_offsets()

    def scan(self, batch: int = 5000) -> Iterator[StoredRecord]:
        """Yield every record, partition by partition, in offset order (``batch`` per read)."""
        for part in range(self.partitions):
            offset = 0
            while records := self.read(part, offset, batch):
                yield from records
                offset = records[-1].offset + 1

    def latest(self, key: str) -> bytes | None:
        """Return the latest payload for a key of a table (None if absent)."""
        raise NotImplementedError(f"{type(self).__name__} has no point lookups")

    def scan_latest(self) -> Iterable[tuple[str, bytes]]:
        """Yield (key, latest payload) for every key of a table."""
        raise NotImplementedError(f"{type(self).__name__} has no table scans")

    def is_closed(self) -> bool:
        """Tell whether the writer marked the stream finished."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the reader."""


def partition_number(part_name: str) -> int:
    """Return the stream partition of a source partition's name.

    Every backend names its Bytewax source partitions ``"<n>"`` or ``"<n>-<more>"``
    (Kafka: ``"<n>-<topic>"``), with ``n`` the partition of ``end_offsets()``.
    """
    return int(part_name.split("-", 1)[0])


class Backend(ABC):
    """A profile's connectors: everything the registry needs for one data plane."""

    keeps_ids: bool = False
    """Its sinks write a record id once by themselves (``StreamSpec.unique``); otherwise the
    registry wraps them in ``connectors.replays.ReplayFilterSink``."""

    def partition_of(self, key: str, partitions: int) -> int:
        """Return the partition this profile's writers put a record key in (``connectors.sharding``)."""
        raise ConnectorError(
            f"{type(self).__name__} does not say which partition a key goes to; a shard that filters "
            f"rows by key (Job C) cannot run on it"
        )

    @abstractmethod
    def source(
        self, spec: StreamSpec, name: str, *, follow: bool, from_end: bool = False
    ) -> Source[SourceMessage]:
        """Return a partitioned Bytewax source whose snapshots are offsets."""

    @abstractmethod
    def sink(self, spec: StreamSpec, name: str) -> Sink[Record]:
        """Return a Bytewax sink that appends (log) or upserts (table) records."""

    @abstractmethod
    def writer(self, spec: StreamSpec, name: str) -> StreamWriter:
        """Return a plain writer."""

    @abstractmethod
    def reader(self, spec: StreamSpec, name: str) -> StreamReader:
        """Return a plain reader."""
