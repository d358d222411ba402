"""Fixtures for tests against a real single-node Kafka broker (see tradeflow.infra.kafka)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tradeflow.infra.kafka import KafkaBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One real broker for the whole session; its data and log stay under pytest's tmp dir.

    If the broker cannot start this fixture raises (the tests error), it never skips:
    a missing Java/Maven or a broken pom must be seen, not hidden.
    """
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One secured broker (TLS + SASL + ACLs, see docs/security.md) for the session.

    Its test CA and certificates are generated at start; like ``kafka_broker`` it
    raises, never skips, when it cannot start.
    """
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-secure"), secure=True)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
