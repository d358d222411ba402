"""librdkafka configuration, topic names and the header names the profile uses.

Every client config is built here from ``KafkaSettings``, so connection and security
settings live in one place. librdkafka's own log lines go to the
``connectors.kafka.librdkafka`` logger rather than stderr.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError

from connectors.kafka.settings import KafkaSettings

log = logging.getLogger("connectors.kafka")
CLIENT_LOG = logging.getLogger("connectors.kafka.librdkafka")

SCHEMA_VERSION_HEADER = "schema_version"
"""Header carrying the schema version of a record's JSON value (also in its ``_v``)."""

EOS_HEADER = "tradeflow-eos"
"""Header of an end-of-stream marker (value ``b"1"``); see ``KafkaWriter.close_stream``."""

EOS_KEY = b"tradeflow-eos"
"""Key of end-of-stream markers (compacted topics refuse records without a key)."""

DLQ_SOURCE_TOPIC = "dlq.source.topic"
DLQ_SOURCE_PARTITION = "dlq.source.partition"
DLQ_SOURCE_OFFSET = "dlq.source.offset"
DLQ_REASON = "dlq.reason"
DLQ_JOB = "dlq.job"

DLQ_REASON_MAX_BYTES = 1000
"""A dead letter's ``dlq.reason`` header is cut to this many bytes (the full reason is
in the record's value)."""

PARTITIONER = "murmur2_random"
"""Key to partition: the Java client's murmur2 hash, so records written by Java or
Kafka Streams producers with the same key land in the same partition as ours."""

DELIVERY_TIMEOUT_MS = 120_000
"""How long a producer retries a record (e.g. while the broker restarts) before the
delivery fails and the sink raises."""

METADATA_TIMEOUT_S = 30.0
"""Admin and metadata calls (topic creation, watermarks) give up after this long."""

# Errors a client reports while a broker restarts or a leader moves: librdkafka
# retries them on its own, so a source logs them and goes on.
TRANSIENT_ERRORS = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)


def topic_name(kafka: KafkaSettings, physical_name: str) -> str:
    """Return the topic of a stream: the prefix followed by its physical name."""
    return f"{kafka.topic_prefix}{physical_name}"


def common_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the settings every client shares: brokers, security, logging."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap,
        "client.id": "tradeflow",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "logger": CLIENT_LOG,
    }
    if kafka.sasl_username is not None:
        conf.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "PLAIN",
                "sasl.username": kafka.sasl_username,
                "sasl.password": (
                    kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
                ),
            }
        )
    return conf


def admin_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the configuration of an ``AdminClient``."""
    return common_config(kafka)


def consumer_config(kafka: KafkaSettings, topic: str, *, eof: bool) -> dict[str, Any]:
    """Return the configuration of an assign-only consumer that never commits.

    Positions live in Bytewax snapshots, not in a consumer group: ``group.id`` is set
    only because librdkafka requires one, and nothing is ever committed to it. An
    offset that is no longer on the broker (retention) is an error, never a silent
    jump to the start or the end.
    """
    return {
        **common_config(kafka),
        "group.id": f"tradeflow-unused-{topic}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": eof,
        "auto.offset.reset": "error",
        "queued.max.messages.kbytes": 16384,
        "fetch.wait.max.ms": 100,
    }


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the configuration of an idempotent producer (no duplicates on retry)."""
    return {
        **common_config(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "partitioner": PARTITIONER,
        "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
    }


Headers = (
    list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None
)
"""Message headers as confluent-kafka hands them out (a list of pairs, or a dict)."""


def header(headers: Headers, name: str) -> bytes | None:
    """Return the value of the first header called ``name`` (None if absent)."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in pairs:
        if key == name:
            return value.encode() if isinstance(value, str) else (value or b"")
    return None


def is_eos(headers: Headers) -> bool:
    """Tell whether a message with these headers is an end-of-stream marker."""
    return header(headers, EOS_HEADER) is not None
