"""A Bytewax sink producing records to one topic with an idempotent producer.

Why a ``DynamicSink`` (one producer per worker) rather than a
``FixedPartitionedSink``: the producer already places each record by its key
(murmur2, like the Java client), and a partitioned sink would shuffle every record
to the worker owning its Kafka partition only to snapshot a state this sink does not
have (no transactions). Per-key order is kept because a key's records come from the
one worker that owns the key upstream, and the idempotent producer never reorders or
duplicates within a partition when it retries.

``write_batch`` flushes before it returns and raises if any record of the batch was
not acknowledged by all in-sync replicas. Bytewax snapshots after the epoch's
writes, so a snapshot never covers output that is not on the broker; a failed
delivery crashes the flow, and recovery replays from the last snapshot (output is
at-least-once; consumers drop duplicates by id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from connectors.base import ConnectorError
from connectors.kafka.config import (
    DELIVERY_TIMEOUT_MS,
    DLQ_JOB,
    DLQ_REASON,
    DLQ_REASON_MAX_BYTES,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    SCHEMA_VERSION_HEADER,
    producer_config,
    topic_name,
)
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.topics import TopicAdmin, TopicSpec
from schemas import SCHEMA_VERSION, DeadLetter, Record, encode

HeaderList = list[tuple[str, str | bytes | None]]

_VERSION = str(SCHEMA_VERSION).encode()


def record_headers(record: Record, kafka: KafkaSettings) -> HeaderList:
    """Return the headers of a record: its schema version, plus DLQ headers for dead letters.

    A dead letter says where the bad record was read (``dlq.source.topic``,
    ``dlq.source.partition``, ``dlq.source.offset``), why it was refused
    (``dlq.reason``, cut to 1000 bytes) and by which job (``dlq.job``), so ops can
    filter and re-drive dead letters without parsing their JSON.
    """
    headers: HeaderList = [(SCHEMA_VERSION_HEADER, _VERSION)]
    if isinstance(record, DeadLetter):
        headers.append((DLQ_SOURCE_TOPIC, topic_name(kafka, record.source_stream).encode()))
        if record.partition is not None:
            headers.append((DLQ_SOURCE_PARTITION, str(record.partition).encode()))
        if record.offset is not None:
            headers.append((DLQ_SOURCE_OFFSET, str(record.offset).encode()))
        reason = record.reason.encode()[:DLQ_REASON_MAX_BYTES]
        headers.append((DLQ_REASON, reason.decode("utf-8", errors="ignore").encode()))
        if record.job:
            headers.append((DLQ_JOB, record.job.encode()))
    return headers


class DeliveringProducer:
    """An idempotent producer that raises when a record was not delivered.

    ``send`` queues a record (waiting while the local queue is full); ``flush``
    waits until every queued record is acknowledged and raises ``ConnectorError``
    with the first delivery error, if any.
    """

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(producer_config(kafka))
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message[Any, Any]) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def send(
        self,
        key: bytes | None,
        value: bytes,
        headers: HeaderList | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (to ``partition``, or by its key when None)."""
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=value,
                    key=key,
                    partition=-1 if partition is None else partition,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve deliveries, retry
        self._producer.poll(0)

    def flush(self) -> None:
        """Wait until every queued record is acknowledged; raise on any failure."""
        left = self._producer.flush(DELIVERY_TIMEOUT_MS / 1000 + 10)
        if self._errors:
            first, count = self._errors[0], len(self._errors)
            self._errors.clear()
            raise ConnectorError(f"{count} record(s) not delivered to {self.topic}: {first}")
        if left:
            raise ConnectorError(f"{left} record(s) still unacknowledged by {self.topic}")

    def close(self) -> None:
        """Flush what is left."""
        self.flush()


class _KafkaSinkPartition(StatelessSinkPartition[Record]):
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._kafka = kafka
        self._out = DeliveringProducer(kafka, topic)

    def write_batch(self, items: list[Record]) -> None:
        write_records(self._out, items, self._kafka)
        self._out.flush()

    def close(self) -> None:
        self._out.close()


def write_records(out: DeliveringProducer, records: Sequence[Record], kafka: KafkaSettings) -> None:
    """Queue records keyed by their key, with their headers."""
    for rec in records:
        out.send(rec.key().encode(), encode(rec), record_headers(rec, kafka))


class KafkaSink(DynamicSink[Record]):
    """A Bytewax sink producing records to one topic (created on first use).

    Log records are appended; table records are upserts by key into a compacted
    topic. Every batch is flushed and acknowledged before ``write_batch`` returns.
    """

    def __init__(self, kafka: KafkaSettings, *, topic: str, partitions: int, table: bool) -> None:
        self.kafka = kafka
        self.topic = topic
        self.partitions = partitions
        self.table = table

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaSinkPartition:
        """Create the topic if needed and open this worker's producer."""
        TopicAdmin(self.kafka).ensure(TopicSpec(self.topic, self.partitions, self.table))
        return _KafkaSinkPartition(self.kafka, self.topic)
