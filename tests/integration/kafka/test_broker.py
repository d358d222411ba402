"""A real Kafka broker: keyed round trip, compaction, and clients surviving a restart."""

from __future__ import annotations

import json
import logging
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.integration.launchers import launcher_up
from tradeflow.infra.common import InfraError, port_open
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration

# librdkafka's connection errors while the broker restarts go to logging, not stderr.
CLIENT_LOG = logging.getLogger("tests.kafka.client")

Record = tuple[int, int, str, str]  # partition, offset, key, value


def to_record(msg: Message) -> Record:
    return (msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode())


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(
    broker: KafkaBroker, name: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers}, logger=CLIENT_LOG)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30,
    )
    futures[name].result(timeout=30)
    # Wait until the new partitions have leaders in the broker's metadata.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {name} has no leaders after 30 s")


def idempotent_producer(broker: KafkaBroker) -> Producer:
    return Producer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 500,
        },
        logger=CLIENT_LOG,
    )


def produce_all(producer: Producer, topic: str, items: list[tuple[str, str]]) -> list[Record]:
    """Produce (key, value) pairs, wait for every delivery report, fail on any error."""
    delivered: list[Record] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(to_record(msg))

    for key, value in items:
        producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert errors == []
    assert len(delivered) == len(items)
    return delivered


def end_offset(consumer: Consumer, topic: str, partition: int) -> int:
    return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])


def read_topic(broker: KafkaBroker, topic: str, timeout: float = 30.0) -> list[Record]:
    """Read every partition of ``topic`` from the beginning up to its high watermark."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,  # short long-polls: other requests queue behind them
        },
        logger=CLIENT_LOG,
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        high = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        position = {p: -1 for p in partitions}
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while any(position[p] + 1 < high[p] for p in partitions):
            assert time.monotonic() < deadline, f"read {len(records)} records, watermarks {high}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            position[msg.partition()] = msg.offset()
            records.append(
                (msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode())
            )
        return records
    finally:
        consumer.close()


def consume_n(consumer: Consumer, n: int, timeout: float = 30.0) -> list[Record]:
    """Poll until ``n`` records arrived, then briefly more to catch any extra ones."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        records.append(to_record(msg))
    extra_deadline = time.monotonic() + 1.0
    while time.monotonic() < extra_deadline:
        msg = consumer.poll(0.2)
        if msg is not None:
            records.append(
                (msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode())
            )
    return records


def test_keyed_messages_round_trip_over_three_partitions(kafka_broker: KafkaBroker) -> None:
    topic = unique_topic("roundtrip")
    create_topic(kafka_broker, topic, partitions=3)
    items = [(f"k{i % 20}", f"v{i}") for i in range(300)]

    producer = idempotent_producer(kafka_broker)
    delivered = produce_all(producer, topic, items)

    # Same key, same partition; the keys spread over all three partitions.
    partition_of: dict[str, set[int]] = defaultdict(set)
    for partition, _, key, _ in delivered:
        partition_of[key].add(partition)
    assert all(len(ps) == 1 for ps in partition_of.values())
    assert {p for ps in partition_of.values() for p in ps} == {0, 1, 2}

    group = f"roundtrip-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,  # short long-polls: other requests queue behind them
            "auto.offset.reset": "earliest",
        },
        logger=CLIENT_LOG,
    )
    try:
        consumer.subscribe([topic])
        consumed = consume_n(consumer, len(items))
        assert sorted(consumed) == sorted(delivered)
        # Per key, values come back in the order they were produced.
        produced_by_key: dict[str, list[str]] = defaultdict(list)
        for key, value in items:
            produced_by_key[key].append(value)
        consumed_by_key: dict[str, list[str]] = defaultdict(list)
        for _, _, key, value in consumed:
            consumed_by_key[key].append(value)
        assert consumed_by_key == produced_by_key

        # Offsets are committed only when asked (no auto commit), and land on the ends.
        tps = [TopicPartition(topic, p) for p in range(3)]
        assert all(tp.offset < 0 for tp in consumer.committed(tps, timeout=10))
        consumer.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(3)
        }
        assert committed == ends
        assert sum(ends.values()) == len(items)
    finally:
        consumer.close()


def test_compacted_topic_keeps_latest_value_per_key(kafka_broker: KafkaBroker) -> None:
    topic = unique_topic("compacted")
    create_topic(
        kafka_broker,
        topic,
        partitions=2,
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
        },
    )
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}, logger=CLIENT_LOG)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(timeout=10)
    assert described["cleanup.policy"].value == "compact"

    producer = idempotent_producer(kafka_broker)
    expected: dict[str, str] = {}
    for version in range(5):
        batch = [(f"instrument-{k}", f"price-{k}-v{version}") for k in range(10)]
        produce_all(producer, topic, batch)
        expected.update(batch)

    latest: dict[str, str] = {}
    for _, _, key, value in sorted(read_topic(kafka_broker, topic)):  # offset order per partition
        latest[key] = value
    assert latest == expected


@pytest.mark.parametrize("hard", [False, True], ids=["stop", "kill"])
def test_clients_survive_broker_restart(kafka_broker: KafkaBroker, hard: bool) -> None:
    topic = unique_topic("restart")
    create_topic(kafka_broker, topic, partitions=3)
    bootstrap = kafka_broker.bootstrap_servers
    producer = idempotent_producer(kafka_broker)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"restart-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,  # short long-polls: other requests queue behind them
            "auto.offset.reset": "earliest",
            "reconnect.backoff.max.ms": 500,
        },
        logger=CLIENT_LOG,
    )
    try:
        consumer.subscribe([topic])
        before = produce_all(producer, topic, [(f"k{i % 7}", f"before-{i}") for i in range(100)])
        assert sorted(consume_n(consumer, len(before))) == sorted(before)
        consumer.commit(asynchronous=False)

        kafka_broker.restart(hard=hard)
        assert kafka_broker.bootstrap_servers == bootstrap

        # Written before the restart: still there.
        assert sorted(read_topic(kafka_broker, topic)) == sorted(before)
        # The producer from before the restart delivers again, without duplicates.
        after = produce_all(producer, topic, [(f"k{i % 7}", f"after-{i}") for i in range(100)])
        # The consumer from before the restart carries on where it was.
        assert sorted(consume_n(consumer, len(after), timeout=60)) == sorted(after)
        assert sorted(read_topic(kafka_broker, topic)) == sorted(before + after)
    finally:
        consumer.close()


def test_broken_config_fails_loudly(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "broken", extra_properties={"node.id": "not-a-number"})
    with pytest.raises(InfraError, match="not-a-number"):
        broker.start()
    assert not broker.running


def test_cli_up_serves_until_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    with launcher_up("tradeflow.infra.kafka", data_dir, "broker.json") as proc:
        assert proc.stdout is not None
        bootstrap = proc.stdout.readline().strip()  # printed once the broker is ready
        assert bootstrap.startswith("127.0.0.1:"), bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap}, logger=CLIENT_LOG)
        assert admin.list_topics(timeout=10).brokers
        state = json.loads((data_dir / "broker.json").read_text())
        assert state["bootstrap_servers"] == bootstrap
        assert state["pid"] is not None
        with pytest.raises(InfraError, match="already runs"):
            KafkaBroker(data_dir).start()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not port_open(int(bootstrap.rsplit(":", 1)[1]))
        assert json.loads((data_dir / "broker.json").read_text())["pid"] is None
