"""Topics created on first use, and reading a partition between two offsets.

Creating a topic is idempotent and safe when several processes (workers, a feed and
a flow) do it at the same time: ``TOPIC_ALREADY_EXISTS`` counts as success, and
every caller then waits until the broker's metadata shows a leader for each
partition. A topic that already exists keeps its partition count, like a store file
of the local profile does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.base import ConnectorError
from connectors.kafka.config import (
    METADATA_TIMEOUT_S,
    TRANSIENT_ERRORS,
    admin_config,
    is_eos,
    log,
    verify_connection,
)
from connectors.kafka.settings import KafkaSettings

COMPACTED = {"cleanup.policy": "compact"}
"""Topic config of PK tables: Kafka keeps at least the latest record per key."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create on first use: its name, partition count and whether compacted."""

    name: str
    partitions: int
    compact: bool


class TopicAdmin:
    """Create topics on first use and look up their partition counts."""

    def __init__(self, kafka: KafkaSettings, *, timeout: float = METADATA_TIMEOUT_S) -> None:
        verify_connection(kafka)
        self._admin = AdminClient(admin_config(kafka))
        self._kafka = kafka
        self._timeout = timeout
        self._known: dict[str, int] = {}

    def partitions(self, topic: str) -> int | None:
        """Return the partition count of a topic, or None if it does not exist."""
        if topic in self._known:
            return self._known[topic]
        try:
            meta = self._admin.list_topics(topic=topic, timeout=self._timeout).topics.get(topic)
        except KafkaException as exc:
            raise ConnectorError(f"cannot read metadata of topic {topic!r}: {exc}") from exc
        if meta is None:
            return None
        if meta.error is not None:
            if meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            if meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise ConnectorError(
                    f"Kafka principal {self._kafka.sasl_username or 'ANONYMOUS'} may not use topic "
                    f"{topic!r} (no ACL grants it; see docs/security.md)"
                )
            raise ConnectorError(f"metadata of topic {topic!r}: {meta.error}")
        count = len(meta.partitions)
        if count and all(p.leader >= 0 for p in meta.partitions.values()):
            self._known[topic] = count
        return count

    def ensure(self, spec: TopicSpec) -> int:
        """Create the topic unless it exists; return its partition count once it is ready."""
        if spec.name in self._known:
            return self._known[spec.name]
        if self.partitions(spec.name) is None:
            self._create(spec)
        return self._wait_ready(spec.name)

    def existing(self) -> dict[str, int]:
        """Return every topic of the cluster with its partition count (internal ones left out)."""
        try:
            meta = self._admin.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise ConnectorError(f"cannot list topics: {exc}") from exc
        return {
            name: len(t.partitions)
            for name, t in meta.topics.items()
            if t.error is None and not name.startswith("__")
        }

    def _create(self, spec: TopicSpec) -> None:
        new = NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=-1,  # the broker's default.replication.factor
            config=dict(COMPACTED) if spec.compact else {},
        )
        futures = self._admin.create_topics([new], operation_timeout=self._timeout)
        try:
            futures[spec.name].result(timeout=self._timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return  # another process created it first
            raise ConnectorError(f"cannot create topic {spec.name!r}: {exc}") from exc
        log.info(
            "created topic %s (%d partitions%s)",
            spec.name,
            spec.partitions,
            ", compacted" if spec.compact else "",
        )

    def _wait_ready(self, topic: str) -> int:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            self._known.pop(topic, None)
            count = self.partitions(topic)
            if topic in self._known and count:
                return count
            time.sleep(0.05)
        raise ConnectorError(f"topic {topic!r} has no leader for every partition after {self._timeout}s")


def raise_unless_transient(err: KafkaError, what: str) -> None:
    """Raise ``ConnectorError`` for an error a client cannot get over by retrying."""
    if err.fatal() or not (err.retriable() or err.code() in TRANSIENT_ERRORS):
        raise ConnectorError(f"{what}: {err.str()}")
    log.warning("%s (retrying): %s", what, err.str())


def watermarks(
    consumer: Consumer, topic: str, partition: int, timeout: float = METADATA_TIMEOUT_S
) -> tuple[int, int]:
    """Return (low, high) offsets of a partition, asking the broker.

    Transient errors (a leader not elected yet just after the topic was created, a
    broker restarting) are retried until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.1, deadline - time.monotonic())
        try:
            lo, hi = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=left, cached=False
            )
            return int(lo), int(hi)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in TRANSIENT_ERRORS
            )
            if not transient or time.monotonic() >= deadline:
                raise ConnectorError(f"cannot read offsets of {topic}[{partition}]: {exc}") from exc
            time.sleep(0.1)


def scan(
    consumer: Consumer,
    topic: str,
    partition: int,
    start: int,
    stop: int,
    *,
    timeout: float = METADATA_TIMEOUT_S,
) -> Iterator[Message[Any, Any]]:
    """Yield the messages of a partition with ``start <= offset < stop``, markers too.

    The consumer is (re)assigned to the partition; ``stop`` is usually the high
    watermark read just before. Raise ``ConnectorError`` if no progress is made for
    ``timeout`` seconds (e.g. the broker is gone).
    """
    if start >= stop:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    position = start
    idle_since = time.monotonic()
    try:
        while position < stop:
            batch = consumer.consume(min(10_000, stop - position), 0.2)
            if not batch:
                if time.monotonic() - idle_since > timeout:
                    raise ConnectorError(
                        f"reading {topic}[{partition}] stalled at offset {position} (end {stop})"
                    )
                continue
            idle_since = time.monotonic()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return
                    raise_unless_transient(err, f"reading {topic}[{partition}]")
                    continue
                offset = msg.offset()
                assert offset is not None  # noqa: S101 - set on every fetched message
                if offset >= stop:
                    return
                position = offset + 1
                yield msg
    finally:
        consumer.unassign()


def last_is_marker(consumer: Consumer, topic: str, partition: int) -> bool:
    """Tell whether the last record of a partition is an end-of-stream marker."""
    lo, hi = watermarks(consumer, topic, partition)
    if hi <= lo:
        return False
    last = None
    for msg in scan(consumer, topic, partition, hi - 1, hi):
        last = msg
    return last is not None and is_eos(last.headers())
