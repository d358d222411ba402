"""Plain writer and reader of one topic, for feeds, tools and tests.

Reading a table (``latest``, ``scan_latest``) reads its compacted topic from the
start and keeps the last value per key. Compaction bounds that to roughly one record
per key plus the not-yet-compacted tail, which is small for the tables of this
project (accounts, limits, config, order/position state); a service that looks up
keys at a high rate should keep its own view (a flow over the table) instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer

from connectors.base import StoredRecord, StreamReader, StreamWriter
from connectors.kafka.config import EOS_HEADER, EOS_KEY, consumer_config, is_eos
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.sink import DeliveringProducer, write_records
from connectors.kafka.topics import last_is_marker, scan, watermarks
from schemas import Record


class KafkaWriter(StreamWriter):
    """Produce records to one topic and flush them per call."""

    def __init__(self, kafka: KafkaSettings, topic: str, partitions: int) -> None:
        self._kafka = kafka
        self.topic = topic
        self.partitions = partitions
        self._out = DeliveringProducer(kafka, topic)

    def write(self, records: Sequence[Record]) -> None:
        """Append (log) or upsert (table) records, keyed by their key; wait for the acks."""
        write_records(self._out, records, self._kafka)
        self._out.flush()

    def write_raw(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Append raw (key, payload) pairs without validation or headers; wait for the acks."""
        for key, value in items:
            self._out.send(None if key is None else key.encode(), value)
        self._out.flush()

    def close_stream(self) -> None:
        """Append an end-of-stream marker to every partition.

        A marker is a record with key ``tradeflow-eos``, an empty value and the header
        ``tradeflow-eos: 1``. Bounded sources stop at it; readers and follow-mode
        sources skip it. It goes after everything this writer wrote, since the
        idempotent producer keeps each partition's order.
        """
        for part in range(self.partitions):
            self._out.send(EOS_KEY, b"", [(EOS_HEADER, b"1")], partition=part)
        self._out.flush()

    def close(self) -> None:
        """Flush and release the producer."""
        self._out.close()


class KafkaReader(StreamReader):
    """Read one topic by partition and offset (markers left out), or latest per key."""

    def __init__(self, kafka: KafkaSettings, topic: str, partitions: int) -> None:
        self.topic = topic
        self._partitions = partitions
        self._consumer = Consumer(consumer_config(kafka, topic, eof=True))

    @property
    def partitions(self) -> int:
        """Return the number of partitions."""
        return self._partitions

    def read(self, partition: int, offset: int, limit: int) -> list[StoredRecord]:
        """Return up to ``limit`` records of a partition from ``offset`` on.

        Offsets may have gaps (end-of-stream markers, compaction); an empty list means
        nothing more up to the end of the partition as it was when called.
        """
        lo, hi = watermarks(self._consumer, self.topic, partition)
        out: list[StoredRecord] = []
        for msg in scan(self._consumer, self.topic, partition, max(offset, lo), hi):
            if is_eos(msg.headers()):
                continue
            key = msg.key()
            kind, ms = msg.timestamp()
            out.append(
                StoredRecord(
                    partition,
                    msg.offset() or 0,
                    None if key is None else key.decode("utf-8", errors="replace"),
                    msg.value() or b"",
                    None if kind == TIMESTAMP_NOT_AVAILABLE else datetime.fromtimestamp(ms / 1000, UTC),
                )
            )
            if len(out) >= limit:
                break
        return out

    def end_offsets(self) -> dict[int, int]:
        """Return the high watermark (next offset to be written) per partition.

        End-of-stream markers count: a closed stream's end is one past its marker.
        """
        return {p: watermarks(self._consumer, self.topic, p)[1] for p in range(self._partitions)}

    def data_ends(self) -> dict[int, int]:
        """Return one past the last record that is not an end-of-stream marker, per partition."""
        out: dict[int, int] = {}
        for part in range(self._partitions):
            lo, hi = watermarks(self._consumer, self.topic, part)
            last, window = -1, 16
            while last < 0:
                start = max(lo, hi - window)
                for msg in scan(self._consumer, self.topic, part, start, hi):
                    if not is_eos(msg.headers()):
                        last = max(last, msg.offset() or 0)
                if start == lo:
                    break
                window *= 4
            out[part] = last + 1
        return out

    def _table(self) -> dict[str, bytes]:
        latest: dict[str, bytes] = {}
        for part in range(self._partitions):
            lo, hi = watermarks(self._consumer, self.topic, part)
            for msg in scan(self._consumer, self.topic, part, lo, hi):
                key = msg.key()
                if key is None or is_eos(msg.headers()):
                    continue
                value = msg.value()
                name = key.decode("utf-8", errors="replace")
                if value is None:  # a tombstone deletes the key
                    latest.pop(name, None)
                else:
                    latest[name] = value
        return latest

    def latest(self, key: str) -> bytes | None:
        """Return the latest payload of a key (reads the whole compacted topic)."""
        return self._table().get(key)

    def scan_latest(self) -> Iterable[tuple[str, bytes]]:
        """Yield (key, latest payload) for every key, ordered by key."""
        return sorted(self._table().items())

    def is_closed(self) -> bool:
        """Tell whether every partition ends with an end-of-stream marker."""
        return all(
            last_is_marker(self._consumer, self.topic, p) for p in range(self._partitions)
        )

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
