"""One registry maps a logical stream name to its connectors for the active profile.

Flows ask ``Connectors(settings).source("market_data")`` and never name a profile:
the profile (``local``, ``kafka``, ``fluss``) is one setting, and a single stream can
be overridden (``stream_profiles``). A backend is imported only when a stream uses
it, so the local profile needs nothing installed beyond the base packages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.outputs import DynamicSink, Sink

from connectors.base import (
    Backend,
    ConnectorError,
    Polling,
    SourceMessage,
    StoredRecord,
    StreamReader,
    StreamWriter,
    partition_number,
)
from connectors.replays import ReplayFilterSink
from connectors.settings import Profile, Settings
from connectors.sharding import KeyOwnership, ShardedSource, ShardError, ShardGuard, UntilNow
from schemas import DecodeError, Kind, Record, StreamSpec, decode, spec

R = TypeVar("R", bound=Record)

BackendFactory = Callable[[Settings], Backend]


def _local(settings: Settings) -> Backend:
    from connectors.embedded import LocalBackend

    return LocalBackend(settings.data_dir, partitions=settings.partitions, polling=Polling.of(settings))


def _lazy(module: str, factory: str) -> BackendFactory:
    def build(settings: Settings) -> Backend:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise ConnectorError(
                f"the connectors for this profile ({module}) are not available: {exc}"
            ) from exc
        backend: Backend = getattr(mod, factory)(settings)
        return backend

    return build


BACKENDS: dict[Profile, BackendFactory] = {
    Profile.LOCAL: _local,
    Profile.KAFKA: _lazy("connectors.kafka.backend", "backend_from_settings"),
    Profile.FLUSS: _lazy("connectors.fluss.backend", "backend_from_settings"),
}
"""Factories per profile; tests may register their own."""


class OnlyPartitions(FixedPartitionedSource[SourceMessage, Any]):
    """A partitioned source restricted to some of its partitions (``source_partitions``)."""

    def __init__(self, inner: FixedPartitionedSource[SourceMessage, Any], keep: frozenset[int]) -> None:
        self._inner = inner
        self._keep = keep

    def list_parts(self) -> list[str]:
        """List the inner source's partitions that are kept."""
        return [p for p in self._inner.list_parts() if partition_number(p) in self._keep]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any | None
    ) -> StatefulSourcePartition[SourceMessage, Any]:
        """Build one kept partition of the inner source."""
        return self._inner.build_part(step_id, for_part, resume_state)


class Connectors:
    """Sources, sinks, writers and readers for every stream, per the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backends: dict[Profile, Backend] = {}

    def backend(self, stream: str) -> Backend:
        """Return the backend the stream lives on."""
        profile = self.settings.profile_for(stream)
        if profile not in self._backends:
            self._backends[profile] = BACKENDS[profile](self.settings)
        return self._backends[profile]

    def _resolve(self, stream: str) -> tuple[Backend, StreamSpec, str]:
        return self.backend(stream), spec(stream), self.settings.physical_name(stream)

    def source(
        self, stream: str, *, follow: bool | None = None, from_end: bool = False, sharded: bool = False,
        until_now: bool = False, for_keys: Iterable[str] | None = None,
    ) -> Source[SourceMessage]:
        """Return a Bytewax source of raw messages of ``stream``.

        With ``settings.shard`` set, a ``sharded`` log source reads only the partitions the
        shard owns (``connectors.sharding``); every other source is read whole. With
        ``until_now``, a bounded run (not following) reads each partition only up to
        where it ends when the run starts (for streams nobody closes, like tables). With
        ``for_keys``, only the partitions those record keys are written to are read, where
        the profile says which they are (else every partition: the reader filters).
        """
        backend, sp, name = self._resolve(stream)
        follow = self.settings.follow if follow is None else follow
        src = backend.source(sp, name, follow=follow, from_end=from_end)
        if self.settings.until_end or (until_now and not follow):
            if not isinstance(src, FixedPartitionedSource):
                raise ConnectorError(f"a bounded run needs a partitioned source for {stream}")
            data = self.settings.until_end
            src = UntilNow(src, lambda: self._ends(stream, data=data))
        if for_keys is not None and isinstance(src, FixedPartitionedSource):
            keep = self._partitions_of(stream, for_keys)
            if keep is not None:
                src = OnlyPartitions(src, keep)
        if self.settings.shard is not None:
            if not sharded or sp.kind is Kind.TABLE:
                return src
            if not isinstance(src, FixedPartitionedSource):
                raise ConnectorError(f"a shard needs a partitioned source for {stream}")
            return ShardedSource(src, self.settings.shard_of_job, stream)
        subset = self.settings.source_partitions
        if subset is None or sp.kind is Kind.TABLE:
            return src
        if not isinstance(src, FixedPartitionedSource):
            raise ConnectorError(f"source_partitions needs a partitioned source for {stream}")
        return OnlyPartitions(src, frozenset(subset))

    def _partitions_of(self, stream: str, keys: Iterable[str]) -> frozenset[int] | None:
        """Return the partitions records with these keys are written to (None: unknown here)."""
        count = self.partitions(stream)
        try:
            return frozenset(self.backend(stream).partition_of(k, count) for k in keys)
        except ConnectorError:
            return None

    def _ends(self, stream: str, *, data: bool) -> dict[int, int]:
        """Return where each partition of ``stream`` ends now: its ``data_ends`` or ``end_offsets``."""
        reader = self.reader(stream)
        try:
            return reader.data_ends() if data else reader.end_offsets()
        finally:
            reader.close()

    def partitions(self, stream: str) -> int:
        """Return the partition count of a stream (creating it, like a reader, if new)."""
        reader = self.reader(stream)
        try:
            return reader.partitions
        finally:
            reader.close()

    def key_ownership(self, stream: str, *, placed_like: str | None = None) -> KeyOwnership:
        """Return which keys of ``stream`` this process's shard owns (its profile's hash).

        The partition count is looked up on first use. With ``placed_like``, that
        stream must place keys the same way (same profile, as many partitions), or a
        key's records in it would reach another shard: ``ShardError`` otherwise.
        """
        profile = self.settings.profile_for
        if placed_like is not None and profile(stream) != profile(placed_like):
            raise ShardError(f"a sharded job needs {stream} and {placed_like} on one profile")

        def partitions() -> int:
            count = self.partitions(stream)
            if placed_like is not None and (other := self.partitions(placed_like)) != count:
                raise ShardError(
                    f"a sharded job needs as many partitions of {placed_like} ({other}) as of "
                    f"{stream} ({count}): both are placed by the same key"
                )
            return count

        return KeyOwnership(self.settings.shard_of_job, self.backend(stream).partition_of, partitions, stream)

    def scan(self, stream: str, batch: int = 5000) -> Iterator[StoredRecord]:
        """Yield every record of ``stream``, partition by partition, in offset order."""
        reader = self.reader(stream)
        try:
            yield from reader.scan(batch)
        finally:
            reader.close()

    def table(self, stream: str, model: type[R]) -> dict[str, R]:
        """Return the latest row of every key of the table ``stream``, decoded as ``model``.

        A row that does not decode is left out (the flows reading the table's changelog
        dead-letter it).
        """
        rows: dict[str, R] = {}
        reader = self.reader(stream)
        try:
            for key, raw in reader.scan_latest():
                try:
                    rows[key] = decode(model, raw)
                except DecodeError:
                    continue
        finally:
            reader.close()
        return rows

    def write_all(
        self,
        streams: Mapping[str, Sequence[Record]],
        names: Iterable[str],
        *,
        batch: int = 5000,
        keep_open: str | None = None,
    ) -> None:
        """Write each of ``names``' records from ``streams`` (none where absent) in batches of ``batch``.

        Every stream but ``keep_open`` is closed afterwards, so bounded sources stop at its end.
        """
        for name in names:
            writer = self.writer(name)
            try:
                records = streams.get(name, [])
                for i in range(0, len(records), batch):
                    writer.write(records[i : i + batch])
                if name != keep_open:
                    writer.close_stream()
            finally:
                writer.close()

    def reopen_all(self, names: Iterable[str]) -> None:
        """Mark each of ``names`` open again after ``write_all`` closed it (embedded store only)."""
        for name in names:
            writer = self.writer(name)
            try:
                writer.reopen_stream()
            finally:
                writer.close()

    def shard_guard(self, job: str) -> ShardGuard:
        """Return the source that keeps this shard's ``I/N`` in the recovery store (and checks it)."""
        return ShardGuard(self.settings.shard_of_job, job)

    def sink(self, stream: str) -> Sink[Record]:
        """Return a Bytewax sink of records into ``stream``."""
        backend, sp, name = self._resolve(stream)
        sink = backend.sink(sp, name)
        window = self.settings.replay_window
        if not sp.unique or backend.keeps_ids or window <= 0 or not isinstance(sink, DynamicSink):
            return sink
        return ReplayFilterSink(sink, sp, lambda: backend.reader(sp, name), window)

    def writer(self, stream: str) -> StreamWriter:
        """Return a plain writer into ``stream``."""
        backend, sp, name = self._resolve(stream)
        return backend.writer(sp, name)

    def reader(self, stream: str) -> StreamReader:
        """Return a plain reader of ``stream``."""
        backend, sp, name = self._resolve(stream)
        return backend.reader(sp, name)

    def size(self, stream: str) -> int:
        """Return the sum of the end offsets of ``stream``'s partitions (its records and markers)."""
        reader = self.reader(stream)
        try:
            return sum(reader.end_offsets().values())
        finally:
            reader.close()
