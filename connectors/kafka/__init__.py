"""The ``kafka`` profile: every stream on an Apache Kafka broker (see docs/kafka.md).

Log streams are topics keyed by the record key; PK tables are compacted topics.
Sources are partitioned Bytewax sources whose snapshots are offsets; sinks produce
with an idempotent producer and flush per batch; dead letters carry where the bad
record came from in headers. ``lag_report`` (and ``python -m connectors.kafka.lag``)
shows end offsets and the positions flows would resume from.
"""

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

__all__ = [
    "DLQ_JOB",
    "DLQ_REASON",
    "DLQ_SOURCE_OFFSET",
    "DLQ_SOURCE_PARTITION",
    "DLQ_SOURCE_TOPIC",
    "EOS_HEADER",
    "SCHEMA_VERSION_HEADER",
    "KafkaBackend",
    "KafkaReader",
    "KafkaSink",
    "KafkaSource",
    "KafkaWriter",
    "SnapshotPosition",
    "TopicAdmin",
    "TopicSpec",
    "backend_from_settings",
    "lag_report",
    "record_headers",
    "recovery_positions",
    "topic_name",
]
