"""Job A on the kafka profile against a real broker: same rows as the embedded store,
SIGKILL + Bytewax recovery from snapshotted offsets, a broker restart mid-stream, and
malformed records landing in the dead_letters topic with DLQ headers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from connectors.kafka import lag_report
from connectors.registry import Connectors
from schemas import DeadLetter, decode
from tests.flows.test_indicators_flow import BAD_PAYLOADS
from tests.integration import scenarios
from tests.integration.kafka.profiles import kafka_env, kafka_settings, run_on_both
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workers", [1, 2])
def test_job_a_on_kafka_writes_the_same_rows_as_on_the_embedded_store(
    kafka_broker: KafkaBroker, tmp_path: Path, workers: int
) -> None:
    scenarios.job_a_matches_local(run_on_both, kafka_broker, tmp_path, workers)


def test_job_a_killed_mid_stream_resumes_from_its_kafka_offsets(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    killed = scenarios.kill_and_resume(settings, kafka_env(settings), tmp_path, seed=11)

    # The lag report reads the same snapshots the restart resumed from: all consumed.
    report = [r for r in lag_report(settings, killed.recovery) if r["stream"] == "market_data"]
    assert len(report) == settings.kafka.partitions
    for row in report:
        assert row["step_id"] == "indicators.market_data"
        assert row["closed"] is True
        assert row["lag"] == 0
        assert row["position"] == row["end_offset"] - 1  # parked on the end-of-stream marker

    killed.assert_a_run_after_the_end_writes_nothing()


@pytest.mark.parametrize("hard", [False, True], ids=["stop", "kill"])
def test_job_a_survives_a_broker_restart_mid_stream(
    kafka_broker: KafkaBroker, tmp_path: Path, hard: bool
) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    scenarios.run_through_a_restart(
        settings, kafka_env(settings), tmp_path, lambda: kafka_broker.restart(hard=hard), seed=5
    )


def test_malformed_records_go_to_the_dead_letters_topic_with_dlq_headers(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    conn = Connectors(settings)
    writer = conn.writer("market_data")  # creates the topic
    topic = settings.kafka.topic_prefix + "market_data"
    payloads = scenarios.malformed_market_data()
    placed: dict[bytes, tuple[int, int]] = {}

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        placed[msg.value()] = (msg.partition(), msg.offset())

    raw = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for value in payloads:
        raw.produce(topic, key=b"X", value=value, on_delivery=delivered)
    assert raw.flush(30) == 0
    writer.close_stream()
    writer.close()

    scenarios.assert_job_a_letters_point_back(settings, placed)

    # The same facts, as Kafka headers, for tools that do not parse the value.
    dlq_topic = settings.kafka.topic_prefix + "dead_letters"
    consumer = Consumer(
        {"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": "dlq-check"}
    )
    consumer.assign([TopicPartition(dlq_topic, p, 0) for p in range(settings.kafka.partitions)])
    got: list[Message] = []
    deadline = time.monotonic() + 30
    while len(got) < len(BAD_PAYLOADS) and time.monotonic() < deadline:
        got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
    consumer.close()
    assert len(got) == len(BAD_PAYLOADS)
    for msg, (payload, why) in zip(
        sorted(got, key=lambda m: placed[decode(DeadLetter, m.value()).payload.encode()]),
        BAD_PAYLOADS.items(),
        strict=True,
    ):
        headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
        part, offset = placed[payload]
        assert headers["dlq.source.topic"] == topic
        assert headers["dlq.source.partition"] == str(part)
        assert headers["dlq.source.offset"] == str(offset)
        assert why in headers["dlq.reason"], headers["dlq.reason"]
        assert headers["dlq.job"] == "indicators"
        assert headers["schema_version"] == "1"
        assert msg.key() == b"market_data"

