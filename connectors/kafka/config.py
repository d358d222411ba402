"""librdkafka configuration, topic names and the header names the profile uses.

Every client config is built here from ``KafkaSettings``, so connection and security
settings live in one place. librdkafka's own log lines go to the
``connectors.kafka.librdkafka`` logger rather than stderr.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

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


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Return librdkafka's TLS and SASL settings (secrets in clear: never log this dict).

    TLS always verifies the broker: its certificate against ``ssl_ca_location`` (or the
    system's CAs) and its host name (``ssl.endpoint.identification.algorithm=https``).
    """
    protocol = kafka.effective_protocol
    conf: dict[str, Any] = {"security.protocol": protocol.lower()}
    if protocol in ("SSL", "SASL_SSL"):
        conf["enable.ssl.certificate.verification"] = True
        conf["ssl.endpoint.identification.algorithm"] = "https"
        if kafka.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(kafka.ssl_ca_location)
        if kafka.ssl_certificate_location is not None:
            conf["ssl.certificate.location"] = str(kafka.ssl_certificate_location)
        if kafka.ssl_key_location is not None:
            conf["ssl.key.location"] = str(kafka.ssl_key_location)
        if kafka.ssl_key_password is not None:
            conf["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
        if kafka.ssl_keystore_location is not None:
            conf["ssl.keystore.location"] = str(kafka.ssl_keystore_location)
        if kafka.ssl_keystore_password is not None:
            conf["ssl.keystore.password"] = kafka.ssl_keystore_password.get_secret_value()
    if protocol.startswith("SASL"):
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        # KafkaSettings makes sure a SASL user has a password.
        conf["sasl.password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return conf


def common_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Return the settings every client shares: brokers, security, logging.

    A client that cannot authenticate or is refused (a wrong password, a broker
    certificate that does not verify) fails at once with ``KafkaAuthError`` raised from
    the error callback, instead of retrying the connection until a timeout.
    """
    return {
        "bootstrap.servers": kafka.bootstrap,
        "client.id": "tradeflow",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "logger": CLIENT_LOG,
        "error_cb": _raise_on_auth_error(kafka),
        **security_config(kafka),
    }


class KafkaAuthError(Exception):
    """The broker refused our credentials or our TLS handshake (no secret in the message)."""


AUTH_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})
"""Client errors that no retry fixes: authentication failed, TLS handshake failed."""


def _raise_on_auth_error(kafka: KafkaSettings) -> Any:
    who = kafka.sasl_username or "(no SASL user)"

    def on_error(err: KafkaError) -> None:
        if err.code() in AUTH_ERRORS:
            raise KafkaAuthError(
                f"Kafka at {kafka.bootstrap} refused the connection of {who} "
                f"({kafka.effective_protocol}): {err.str()}"
            )
        if err.fatal():
            CLIENT_LOG.error("fatal Kafka client error: %s", err)
        else:
            CLIENT_LOG.warning("Kafka client error: %s", err)

    return on_error


_verified: set[KafkaSettings] = set()
_verify_lock = threading.Lock()


def verify_connection(kafka: KafkaSettings, timeout: float = METADATA_TIMEOUT_S) -> None:
    """Connect once and wait for metadata; fail fast and clearly if the broker refuses us.

    Done once per process and settings (``TopicAdmin`` calls it before any client of a
    stream is made): a wrong password or a broker certificate that does not verify
    raises ``KafkaAuthError`` within one connection attempt instead of a retry loop in
    every source and sink; a broker that never answers (down, or a plaintext client on
    a TLS port) raises ``KafkaAuthError`` too after ``timeout``, naming the protocol.
    """
    with _verify_lock:
        if kafka in _verified:
            return
        probe = Producer({**common_config(kafka), "logger": CLIENT_LOG})
        deadline = time.monotonic() + timeout
        try:
            while True:
                probe.poll(0.1)  # serves error_cb: raises KafkaAuthError on a refusal
                try:
                    probe.list_topics(timeout=0.5)
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise KafkaAuthError(
                            f"no answer from Kafka at {kafka.bootstrap} within {timeout:.0f}s "
                            f"({kafka.effective_protocol}); is the broker up and does it speak "
                            "this protocol?"
                        ) from None
        finally:
            probe.flush(0)
        _verified.add(kafka)


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
