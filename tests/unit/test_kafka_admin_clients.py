"""A process keeps one admin client per Kafka settings (``connectors.kafka.topics``).

A job builds a ``TopicAdmin`` for each of its sources and sinks; each used to open its
own connection. Building clients touches no broker (the bootstrap here is closed).
"""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from connectors.kafka import topics
from connectors.kafka.config import CLIENT_LOG, shared_admin_config
from connectors.kafka.settings import KafkaSettings


def settings(n: int) -> KafkaSettings:
    return KafkaSettings(bootstrap=f"127.0.0.1:{n}")


@pytest.fixture(autouse=True)
def no_clients_kept() -> None:
    topics._admins.clear()


def test_the_same_settings_share_one_client_and_others_get_their_own() -> None:
    first = topics._admin_client(settings(1))
    assert topics._admin_client(settings(1)) is first
    assert topics._admin_client(KafkaSettings(bootstrap="127.0.0.1:1")) is first  # equal settings
    assert topics._admin_client(settings(2)) is not first


def test_only_the_most_recently_used_clients_are_kept() -> None:
    kept = [topics._admin_client(settings(n)) for n in range(1, topics.ADMINS_KEPT + 1)]
    topics._admin_client(settings(1))  # used again: now the newest
    topics._admin_client(settings(99))  # one too many: the least recently used goes
    assert list(topics._admins) == [settings(n) for n in range(3, topics.ADMINS_KEPT + 1)] + [
        settings(1), settings(99)
    ]
    assert topics._admin_client(settings(1)) is kept[0]
    assert topics._admin_client(settings(2)) is not kept[1]  # let go, then made anew


def test_a_kept_client_logs_errors_instead_of_raising_them(caplog: pytest.LogCaptureFixture) -> None:
    """librdkafka may call it from its own thread: a raise there breaks another call."""
    on_error = shared_admin_config(settings(1))["error_cb"]
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOG.name):
        on_error(KafkaError(KafkaError._AUTHENTICATION, "refused"))
        on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "refused" in caplog.records[0].getMessage()
