"""Sinks that write a replayed record once: a restarted job's output is not written twice.

A job that crashes resumes from its last Bytewax snapshot and emits again what it had
emitted since (deterministic ids, identical records). The embedded store keeps an id
once by itself (``StoreFile.append``); Kafka topics and Fluss log tables keep
whatever they are sent, so the replay would leave every such record twice in the
stream (consumers drop the copy by id, but the stream is not "once").

``ReplayFilterSink`` wraps their sinks for the streams that have ids
(``StreamSpec.unique``). When a worker's sink partition is built, which is when the
job starts or restarts, it reads back the last ``window`` records of every partition
of the stream and remembers their ids; a record whose id is among them is not sent
again (counted in ``tradeflow_replays_skipped``). Records written later are added, so
a job that replays twice in one process life is covered too. Why this and not Kafka
transactions: it works on every backend the same way, adds no round trip on the hot
path (a set lookup per record), and needs no read_committed consumers; its bound is
the window: a replay reaching further back than ``window`` records of a partition
(``TRADEFLOW_REPLAY_WINDOW``) is written again, and consumers still drop it by id.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from prometheus_client import Counter

from connectors.base import StreamReader
from schemas import DecodeError, Record, fast_decode
from schemas.streams import StreamSpec

log = logging.getLogger(__name__)

REPLAYS_SKIPPED = Counter(
    "tradeflow_replays_skipped", "Records a restarted sink did not write again (already in the stream)",
    ["stream"],
)


class RecentIds:
    """The ids of a stream's newest records, at most ``limit`` (the oldest forgotten first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, record_id: str) -> None:
        """Remember an id (as the newest)."""
        self._ids[record_id] = None
        self._ids.move_to_end(record_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)


def read_tail_ids(reader: StreamReader, spec: StreamSpec, window: int) -> RecentIds:
    """Return the ids of the last ``window`` records of each partition of a stream.

    A record that does not decode has no id here (it was dead-lettered by its readers).
    """
    ids = RecentIds(max(1, window) * max(1, reader.partitions))
    for part, end in sorted(reader.data_ends().items()):
        offset = max(0, end - window)
        while offset < end and (batch := reader.read(part, offset, min(5000, end - offset))):
            for stored in batch:
                if stored.offset >= end:
                    break
                try:
                    rid = spec.record_id(fast_decode(spec.model, stored.value))
                except DecodeError:
                    continue
                if rid is not None:
                    ids.add(rid)
            offset = batch[-1].offset + 1
    return ids


class _ReplayFilterPartition(StatelessSinkPartition[Record]):
    def __init__(self, inner: StatelessSinkPartition[Record], spec: StreamSpec, ids: RecentIds) -> None:
        self._inner = inner
        self._spec = spec
        self._ids = ids
        self._skipped = REPLAYS_SKIPPED.labels(spec.name)

    def write_batch(self, items: list[Record]) -> None:
        fresh: list[Record] = []
        record_id = self._spec.record_id
        for rec in items:
            rid = record_id(rec)
            if rid is None:
                fresh.append(rec)
            elif rid in self._ids:
                self._skipped.inc()
            else:
                self._ids.add(rid)
                fresh.append(rec)
        if fresh:
            self._inner.write_batch(fresh)

    def close(self) -> None:
        self._inner.close()


class ReplayFilterSink(DynamicSink[Record]):
    """Wrap a sink of a stream with ids: a record already among the stream's last ids is not sent."""

    def __init__(
        self, inner: DynamicSink[Record], spec: StreamSpec, reader: Callable[[], StreamReader], window: int,
    ) -> None:
        if not spec.unique:
            raise ValueError(f"{spec.name} has no record ids: nothing to filter replays by")
        self._inner = inner
        self._spec = spec
        self._reader = reader
        self._window = window

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReplayFilterPartition:
        """Build the inner partition, then read back the ids the stream ends with."""
        inner = self._inner.build(step_id, worker_index, worker_count)
        reader = self._reader()
        try:
            ids = read_tail_ids(reader, self._spec, self._window)
        finally:
            reader.close()
        log.debug("%s: %d ids at the end of the stream, not written again", self._spec.name, len(ids))
        return _ReplayFilterPartition(inner, self._spec, ids)
