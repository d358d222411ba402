"""A Bytewax source over one topic: one source partition per topic partition.

The partitions one worker reads share one assign-only consumer (no consumer group,
nothing committed; ``_WorkerConsumer``): a process reading four partitions of a topic
keeps one client, one set of broker connections and fetch threads, not four. Each
partition's snapshot is the next offset it reads, and a flow restarted with recovery
is assigned exactly there. ``next_batch`` never blocks: it takes what the consumer has
already fetched in the background for its partition and, when there is nothing, asks
Bytewax to come back after the poll interval (``next_awake``).

End of stream (bounded mode): a writer closes a stream by appending a marker record
(header ``tradeflow-eos``) to every partition. A bounded source partition stops when
the marker is the last record of its partition, and its position stays *on* the
marker, so a bounded run resumed from that snapshot stops at once too. A marker
followed by more records (the stream was written again after it was closed) is
skipped. In follow mode markers are skipped and the source keeps waiting. Markers
are never emitted into the flow.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.base import ConnectorError, OffsetPartition, PollingSource, SourceMessage
from connectors.kafka.config import consumer_config, is_eos, log
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.topics import TopicAdmin, TopicSpec, raise_unless_transient, watermarks
from connectors.metrics import SOURCE_LAG


class _WorkerConsumer:
    """The one consumer a worker reads a topic's partitions with, and what it fetched for each.

    Bytewax builds and polls a worker's source partitions on that worker's thread, so a
    consumer is shared by the partitions of one step and topic on one thread. A partition
    that finds nothing of its own fetches for all; records of the others wait in their
    queues (at most ``backlog`` each before the consumer stops fetching for a while).
    The last partition to close closes the consumer.
    """

    _open: ClassVar[dict[tuple[str, str, int], _WorkerConsumer]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def of(cls, source: KafkaSource, step_id: str) -> _WorkerConsumer:
        """Return this thread's consumer of ``source`` for ``step_id`` (opened if none)."""
        key = (step_id, source.topic, threading.get_ident())
        with cls._lock:
            shared = cls._open.get(key)
            if shared is None:
                shared = cls._open[key] = cls(source, key)
            return shared

    def __init__(self, source: KafkaSource, key: tuple[str, str, int]) -> None:
        self.consumer = Consumer(consumer_config(source.kafka, source.topic, eof=not source.follow))
        self.last_record = float("-inf")
        """``time.monotonic()`` when any of its partitions last had records."""
        self._topic = source.topic
        self._key = key
        self._backlog = 4 * source.polling.batch_size
        self._queues: dict[int, deque[Message]] = {}

    def add(self, part: int, offset: int) -> None:
        """Start reading ``part`` at ``offset``."""
        self._queues[part] = deque()
        self.consumer.incremental_assign([TopicPartition(self._topic, part, offset)])

    def take(self, part: int, limit: int) -> list[Message]:
        """Return up to ``limit`` fetched messages of ``part`` (records, EOF and errors).

        With none queued, take what the consumer has fetched for every partition (never
        waiting); an error that names no partition goes to ``part``.
        """
        queue = self._queues[part]
        if not queue and all(len(q) < self._backlog for q in self._queues.values()):
            for msg in self.consumer.consume(limit, 0):
                p = msg.partition()
                target = self._queues.get(p) if p is not None else None
                if target is not None:
                    target.append(msg)
                elif msg.error() is not None and (p is None or p < 0):
                    queue.append(msg)
                # else: a partition no longer read here; its owner reads it from its offset
        got = [queue.popleft() for _ in range(min(limit, len(queue)))]
        if got:
            self.last_record = time.monotonic()
        return got

    def remove(self, part: int) -> None:
        """Stop reading ``part``; close the consumer when it was the last."""
        del self._queues[part]
        if self._queues:
            self.consumer.incremental_unassign([TopicPartition(self._topic, part)])
        self.close_if_unused()

    def close_if_unused(self) -> None:
        """Close the consumer if it reads no partition (also when adding the first failed)."""
        if self._queues:
            return
        with self._lock:
            self._open.pop(self._key, None)
        self.consumer.close()


class _TopicPartitionSource(OffsetPartition):
    def __init__(self, source: KafkaSource, step_id: str, part: int, resume_state: int | None) -> None:
        self._src = source
        self._part = part
        self._tp = TopicPartition(source.topic, part)
        self._shared = _WorkerConsumer.of(source, step_id)
        self._consumer = self._shared.consumer
        self._skip_before = -1
        self._pending_eos: int | None = None
        self._done = False
        self._awake = None
        try:
            self._offset = self._start_offset(resume_state)
            self._shared.add(part, self._offset)
        except BaseException:
            self._shared.close_if_unused()
            raise
        self._lag = SOURCE_LAG.labels(source.name, str(part))

    def _start_offset(self, resume_state: int | None) -> int:
        if resume_state is not None:
            return resume_state
        lo, hi = watermarks(self._consumer, self._src.topic, self._part)
        if not self._src.from_end:
            return lo
        if self._src.follow or hi <= lo:
            return hi
        # Bounded from the end: step back one record so a closing marker that is
        # already there is seen (and the partition stops); anything else before
        # ``hi`` is skipped.
        self._skip_before = hi
        return hi - 1

    def next_batch(self) -> list[SourceMessage]:
        if self._done:
            raise StopIteration
        msgs = self._shared.take(self._part, self._src.polling.batch_size)
        out = [m for m in (self._accept(msg) for msg in msgs) if m is not None]
        if msgs:
            # the high watermark librdkafka cached from this fetch: no broker round trip
            _, hi = self._consumer.get_watermark_offsets(self._tp, cached=True)
            if hi >= 0:
                self._lag.set(max(0, hi - self._offset))
        if self._pending_eos is not None and self._at_end_after_marker():
            self._done = True
            if not out:
                raise StopIteration
        if msgs:
            self._more()
        else:
            # A sibling partition's records keep this one polled often too: the shared
            # consumer may already hold this partition's next ones.
            self._last_record = max(self._last_record, self._shared.last_record)
            self._rest(self._src.polling)
        return out

    def _accept(self, msg: Message) -> SourceMessage | None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if self._pending_eos is not None and msg.offset() == self._pending_eos + 1:
                    self._done = True
                return None
            if err.code() == KafkaError._AUTO_OFFSET_RESET:
                raise ConnectorError(
                    f"offset {self._offset} of {self._src.topic}[{self._part}] is no longer "
                    f"on the broker (retention?): {err.str()}"
                )
            raise_unless_transient(err, f"consuming {self._src.topic}[{self._part}]")
            return None
        offset = msg.offset()
        assert offset is not None  # noqa: S101 - set on every fetched message
        if is_eos(msg.headers()):
            if self._src.follow:
                self._offset = offset + 1
            else:
                # Stay on the marker until we know whether it is the last record.
                self._pending_eos = offset
                self._offset = offset
            return None
        self._pending_eos = None
        self._offset = offset + 1
        if offset < self._skip_before:
            return None
        key = msg.key()
        return SourceMessage(
            self._src.name,
            self._part,
            offset,
            None if key is None else key.decode("utf-8", errors="replace"),
            msg.value() or b"",
        )

    def _at_end_after_marker(self) -> bool:
        if self._done:
            return True
        # The high watermark librdkafka cached from the fetch that brought the
        # marker (or a later one): equal to marker + 1 means nothing follows it.
        _, hi = self._consumer.get_watermark_offsets(self._tp, cached=True)
        return self._pending_eos is not None and hi == self._pending_eos + 1

    def close(self) -> None:
        self._shared.remove(self._part)


@dataclass(eq=False)
class KafkaSource(PollingSource):
    """A Bytewax source over one topic: a source partition per topic partition.

    Partition names are ``"<partition>-<topic>"`` (like Bytewax's own Kafka source),
    so the recovery store says which topic each snapshotted offset belongs to. The
    topic is created on first use. Snapshots are the next offset to read; without
    one a partition starts at its first offset, or with ``from_end`` at its high
    watermark. With ``follow`` the source waits for more records forever; without
    it, each partition stops at the stream's end-of-stream marker (see the module
    docstring). Records are emitted as ``SourceMessage`` with the stream's physical
    name (without the topic prefix), like the local profile.
    """

    kafka: KafkaSettings
    name: str
    spec: TopicSpec

    @property
    def topic(self) -> str:
        """Return the topic's name."""
        return self.spec.name

    def list_parts(self) -> list[str]:
        """Create the topic if needed; return one part per topic partition."""
        count = TopicAdmin(self.kafka).ensure(self.spec)
        return [f"{p}-{self.topic}" for p in range(count)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _TopicPartitionSource:
        """Open a consumer on one partition, at its snapshot if there is one."""
        idx, _, topic = for_part.partition("-")
        if topic != self.topic:
            raise ConnectorError(
                f"step {step_id}: partition {for_part!r} is not of topic {self.topic!r}"
            )
        log.debug("step %s: %s from %s", step_id, for_part, resume_state)
        return _TopicPartitionSource(self, step_id, int(idx), resume_state)
