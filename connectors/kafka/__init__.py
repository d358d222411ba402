"""The ``kafka`` profile: every stream on an Apache Kafka broker (see docs/kafka.md).

Log streams are topics keyed by the record key; PK tables are compacted topics.
Sources are partitioned Bytewax sources whose snapshots are offsets; sinks produce
with an idempotent producer and flush per batch; dead letters carry where the bad
record came from in headers. ``lag_report`` (and ``python -m connectors.kafka.lag``)
shows end offsets and the positions flows would resume from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.lazy import lazy_exports

# The names below load on first use (PEP 562), so that importing the package for its
# settings model alone (``connectors.kafka.settings``, composed by ``connectors.settings``)
# does not import the confluent-kafka client: the other profiles never load it.
_EXPORTS: dict[str, str] = {
    "KafkaBackend": "connectors.kafka.backend",
    "backend_from_settings": "connectors.kafka.backend",
    "DLQ_JOB": "connectors.kafka.config",
    "DLQ_REASON": "connectors.kafka.config",
    "DLQ_SOURCE_OFFSET": "connectors.kafka.config",
    "DLQ_SOURCE_PARTITION": "connectors.kafka.config",
    "DLQ_SOURCE_TOPIC": "connectors.kafka.config",
    "EOS_HEADER": "connectors.kafka.config",
    "SCHEMA_VERSION_HEADER": "connectors.kafka.config",
    "topic_name": "connectors.kafka.config",
    "SnapshotPosition": "connectors.kafka.offsets",
    "lag_report": "connectors.kafka.offsets",
    "recovery_positions": "connectors.kafka.offsets",
    "KafkaSink": "connectors.kafka.sink",
    "record_headers": "connectors.kafka.sink",
    "KafkaSource": "connectors.kafka.source",
    "KafkaReader": "connectors.kafka.streams",
    "KafkaWriter": "connectors.kafka.streams",
    "TopicAdmin": "connectors.kafka.topics",
    "TopicSpec": "connectors.kafka.topics",
}

if TYPE_CHECKING:
    from connectors.kafka.backend import KafkaBackend, backend_from_settings
    from connectors.kafka.config import (
        DLQ_JOB,
        DLQ_REASON,
        DLQ_SOURCE_OFFSET,
        DLQ_SOURCE_PARTITION,
        DLQ_SOURCE_TOPIC,
        EOS_HEADER,
        SCHEMA_VERSION_HEADER,
        topic_name,
    )
    from connectors.kafka.offsets import SnapshotPosition, lag_report, recovery_positions
    from connectors.kafka.sink import KafkaSink, record_headers
    from connectors.kafka.source import KafkaSource
    from connectors.kafka.streams import KafkaReader, KafkaWriter
    from connectors.kafka.topics import TopicAdmin, TopicSpec


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = sorted(_EXPORTS)
