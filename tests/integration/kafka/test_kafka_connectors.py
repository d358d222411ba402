"""The kafka profile's connectors on a real broker: topics, headers, writer/reader,
tables, end-of-stream markers in bounded and follow sources, resume from snapshots,
delivery errors and the lag command."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from connectors.base import ConnectorError, SourceMessage
from connectors.kafka import KafkaBackend, KafkaSource, TopicAdmin, TopicSpec, backend_from_settings
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from schemas import Control, MarketData, TradingState, decode, encode, spec
from tests.integration.kafka.profiles import kafka_env, kafka_settings, unique_prefix
from tests.recovery.procs import ROOT
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def tick(symbol: str, i: int) -> MarketData:
    return MarketData(symbol=symbol, ts=T0 + timedelta(seconds=i), price=100 + i, volume=1)


@pytest.fixture
def settings(kafka_broker: KafkaBroker, tmp_path: Path) -> Settings:
    """Kafka settings with fresh topics and a short poll interval."""
    return kafka_settings(kafka_broker, tmp_path, poll_interval_ms=10)


@pytest.fixture
def one_partition(kafka_broker: KafkaBroker, tmp_path: Path) -> Settings:
    """Kafka settings whose log topics have one partition (simple offset arithmetic)."""
    return kafka_settings(kafka_broker, tmp_path, poll_interval_ms=10, kafka={"partitions": 1})


def source_of(settings: Settings, stream: str, *, follow: bool, from_end: bool = False) -> KafkaSource:
    backend = backend_from_settings(settings)
    return backend.source(spec(stream), stream, follow=follow, from_end=from_end)


def drain(
    src: KafkaSource, resume: int | None = None, *, part: int = 0, wait: float = 10.0
) -> tuple[list[SourceMessage], int, bool]:
    """Run one source partition until it stops or is idle for ``wait`` s.

    Return (messages, snapshot, stopped).
    """
    partition = src.build_part("test", f"{part}-{src.topic}", resume)
    got: list[SourceMessage] = []
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < wait:
            try:
                batch = partition.next_batch()
            except StopIteration:
                return got, partition.snapshot(), True
            if batch:
                got.extend(batch)
                idle_since = time.monotonic()
                continue
            awake = partition.next_awake()
            if awake is not None:
                time.sleep(max(0.0, (awake - datetime.now(UTC)).total_seconds()))
        return got, partition.snapshot(), False
    finally:
        partition.close()


def raw_messages(broker: KafkaBroker, topic: str, partitions: int, count: int) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "raw"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[Message] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
    consumer.close()
    return got


# --- topics -----------------------------------------------------------------------------


def test_log_topics_get_the_configured_partitions_and_tables_a_compacted_topic(
    kafka_broker: KafkaBroker, settings: Settings
) -> None:
    conn = Connectors(settings)
    conn.writer("market_data").close()
    conn.writer("control").close()
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    prefix = settings.kafka.topic_prefix
    meta = admin.list_topics(timeout=10).topics
    assert len(meta[prefix + "market_data"].partitions) == settings.kafka.partitions == 3
    assert len(meta[prefix + "control"].partitions) == 1
    configs = {
        name: admin.describe_configs([ConfigResource("topic", prefix + name)])
        for name in ("market_data", "control")
    }
    policy = {
        name: next(iter(futs.values())).result(10)["cleanup.policy"].value
        for name, futs in configs.items()
    }
    assert policy == {"market_data": "delete", "control": "compact"}


def test_concurrent_creators_of_one_topic_all_succeed(kafka_broker: KafkaBroker, settings: Settings) -> None:
    topic = unique_prefix() + "race"
    results: list[int | BaseException] = []

    def create() -> None:
        try:
            results.append(TopicAdmin(settings.kafka).ensure(TopicSpec(topic, 4, False)))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [4] * 8
    # A topic that exists keeps its partition count, whatever a later caller asks for.
    assert TopicAdmin(settings.kafka).ensure(TopicSpec(topic, 9, False)) == 4


def test_building_a_backend_source_or_sink_touches_no_broker() -> None:
    settings = load_settings(profile="kafka", kafka={"bootstrap": "127.0.0.1:1", "topic_prefix": ""})
    backend = backend_from_settings(settings)
    assert isinstance(backend, KafkaBackend)
    assert backend.source(spec("market_data"), "market_data", follow=False).topic == "market_data"
    assert backend.sink(spec("control"), "control").table


# --- records, writer and reader -----------------------------------------------------------


def test_records_are_keyed_json_with_the_schema_version_in_a_header(
    kafka_broker: KafkaBroker, settings: Settings
) -> None:
    writer = Connectors(settings).writer("market_data")
    writer.write([tick("AAA", 0), tick("BBB", 1)])
    writer.close()
    msgs = raw_messages(kafka_broker, settings.kafka.topic_prefix + "market_data", 3, 2)
    assert sorted(m.key() for m in msgs) == [b"AAA", b"BBB"]
    for msg in msgs:
        assert msg.headers() == [("schema_version", b"1")]
        assert decode(MarketData, msg.value()).symbol == msg.key().decode()


def test_reader_reads_by_partition_and_offset_and_skips_end_of_stream_markers(
    one_partition: Settings,
) -> None:
    conn = Connectors(one_partition)
    writer = conn.writer("market_data")
    reader = conn.reader("market_data")
    writer.write([tick("X", i) for i in range(5)])
    assert not reader.is_closed()
    writer.close_stream()
    writer.write([tick("X", 5)])  # written again after the close
    assert not reader.is_closed()
    writer.close_stream()
    assert reader.is_closed()
    assert reader.end_offsets() == {0: 8}  # 6 records + 2 markers
    assert [r.offset for r in reader.read(0, 0, 100)] == [0, 1, 2, 3, 4, 6]
    assert [r.offset for r in reader.read(0, 2, 2)] == [2, 3]
    assert [r.offset for r in reader.read(0, 5, 100)] == [6]
    assert reader.read(0, 7, 100) == []
    assert reader.read(0, 8, 100) == []
    rec = reader.read(0, 6, 1)[0]
    assert rec.key == "X"
    assert decode(MarketData, rec.value) == tick("X", 5)
    writer.close()
    reader.close()


def test_tables_keep_the_latest_row_per_key(settings: Settings) -> None:
    conn = Connectors(settings)
    writer = conn.writer("control")
    rows = [
        Control(scope="global", state=TradingState.ACTIVE, ts=T0),
        Control(scope="account:A1", state=TradingState.ACTIVE, ts=T0),
        Control(scope="global", state=TradingState.HALTED, reason="kill switch", ts=T0),
    ]
    writer.write(rows)
    writer.close_stream()  # markers are not rows
    reader = conn.reader("control")
    assert reader.partitions == 1
    assert reader.latest("global") == encode(rows[2])
    assert reader.latest("account:B2") is None
    assert list(reader.scan_latest()) == [("account:A1", encode(rows[1])), ("global", encode(rows[2]))]
    writer.close()
    reader.close()


# --- sources: bounded, follow, resume, from the end ----------------------------------------


def test_bounded_source_stops_at_the_marker_and_a_resumed_one_stops_at_once(
    one_partition: Settings,
) -> None:
    writer = Connectors(one_partition).writer("market_data")
    writer.write([tick("X", i) for i in range(3)])
    writer.close_stream()
    src = source_of(one_partition, "market_data", follow=False)
    got, snap, stopped = drain(src)
    assert stopped
    assert [(m.stream, m.partition, m.offset, m.key) for m in got] == [
        ("market_data", 0, i, "X") for i in range(3)
    ]
    assert snap == 3  # parked on the marker
    again, snap2, stopped2 = drain(src, resume=snap)
    assert (again, snap2, stopped2) == ([], 3, True)
    writer.close()


def test_a_workers_partitions_share_one_consumer_and_each_reads_its_own_in_order(
    settings: Settings,
) -> None:
    conn = Connectors(settings)
    writer = conn.writer("market_data")
    writer.write([tick(f"S{i % 40}", i) for i in range(600)])
    writer.close_stream()
    reader = conn.reader("market_data")
    want = {p: [r.offset for r in reader.read(p, 0, 10_000)] for p in range(reader.partitions)}
    reader.close()
    assert all(want.values()), "every partition holds records"
    src = source_of(settings, "market_data", follow=False)
    parts = {p: src.build_part("test", f"{p}-{src.topic}", None) for p in want}
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(src.build_part("test", f"0-{src.topic}", None)))
    thread.start()
    thread.join()
    shared = {id(part._shared) for part in parts.values()}  # type: ignore[attr-defined]
    assert len(shared) == 1  # one consumer for the worker's three partitions
    assert id(other[0]._shared) not in shared  # type: ignore[attr-defined]  # another worker's own
    other[0].close()  # type: ignore[attr-defined]
    got: dict[int, list[int]] = {p: [] for p in parts}
    live = dict(parts)
    deadline = time.monotonic() + 30
    while live and time.monotonic() < deadline:
        for p, part in list(live.items()):
            try:
                batch = part.next_batch()
                assert {m.partition for m in batch} <= {p}, "a record of another partition"
                got[p] += [m.offset for m in batch]
            except StopIteration:
                part.close()
                del live[p]
    assert not live, "every partition stopped at its marker"
    assert got == want
    from connectors.kafka.source import _WorkerConsumer

    assert not [k for k in _WorkerConsumer._open if k[1] == src.topic]  # the last close closed it
    writer.close()


def test_bounded_source_reads_on_past_a_marker_that_is_not_the_last_record(
    one_partition: Settings,
) -> None:
    writer = Connectors(one_partition).writer("market_data")
    writer.write([tick("X", 0)])
    writer.close_stream()
    writer.write([tick("X", 1)])
    src = source_of(one_partition, "market_data", follow=False)
    got, snap, stopped = drain(src, wait=2.0)
    assert not stopped  # reopened and not closed again: waits like the local profile
    assert [m.offset for m in got] == [0, 2]
    writer.close_stream()
    rest, snap, stopped = drain(src, resume=snap)
    assert stopped
    assert rest == []
    assert snap == 3
    writer.close()


def test_follow_source_ignores_markers_and_waits_for_more(one_partition: Settings) -> None:
    writer = Connectors(one_partition).writer("market_data")
    writer.write([tick("X", 0)])
    writer.close_stream()
    writer.write([tick("X", 1)])
    writer.close_stream()
    src = source_of(one_partition, "market_data", follow=True)
    got, snap, stopped = drain(src, wait=1.5)
    assert not stopped
    assert [m.offset for m in got] == [0, 2]
    assert snap == 4  # past the last marker
    writer.close()


def test_source_from_the_end_sees_only_new_records(one_partition: Settings) -> None:
    writer = Connectors(one_partition).writer("market_data")
    writer.write([tick("X", i) for i in range(3)])
    src = source_of(one_partition, "market_data", follow=True, from_end=True)
    part = src.build_part("test", f"0-{src.topic}", None)
    assert part.snapshot() == 3
    writer.write([tick("X", 3)])
    got: list[SourceMessage] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = part.next_batch()
        time.sleep(0.01)
    part.close()
    assert [m.offset for m in got] == [3]
    # Bounded from the end of a closed stream: nothing to read, stops at once.
    writer.close_stream()
    bounded = source_of(one_partition, "market_data", follow=False, from_end=True)
    assert drain(bounded) == ([], 4, True)  # parked on the marker (offset 4)
    writer.close()


def test_source_parts_are_named_after_partition_and_topic(settings: Settings) -> None:
    src = source_of(settings, "market_data", follow=False)
    topic = settings.kafka.topic_prefix + "market_data"
    assert src.list_parts() == [f"{p}-{topic}" for p in range(3)]
    with pytest.raises(ConnectorError, match="not of topic"):
        src.build_part("test", "0-some.other.topic", None)


# --- sink ------------------------------------------------------------------------------------


def test_sink_raises_when_the_broker_refuses_a_record(
    kafka_broker: KafkaBroker, settings: Settings
) -> None:
    topic = settings.kafka.topic_prefix + "market_data"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    admin.create_topics(
        [NewTopic(topic, 1, 1, config={"max.message.bytes": "600"})]
    )[topic].result(30)
    sink = backend_from_settings(settings).sink(spec("market_data"), "market_data")
    part = sink.build("out", 0, 1)
    part.write_batch([tick("X", 0)])  # small enough
    # a valid record bigger than the topic allows (a symbol of 2,000 characters is refused
    # by the schema, so the record is built without validation: the broker must refuse it)
    big = MarketData.model_construct(symbol="X" * 2000, ts=T0, price=Decimal(1), volume=Decimal(1))
    with pytest.raises(ConnectorError, match="not delivered"):
        part.write_batch([big])
    part.close()


# --- lag command -------------------------------------------------------------------------------


def test_lag_command_prints_end_offsets_as_json(one_partition: Settings) -> None:
    writer = Connectors(one_partition).writer("market_data")
    writer.write([tick("X", i) for i in range(4)])
    writer.close_stream()
    writer.close()
    out = subprocess.run(
        [sys.executable, "-m", "connectors.kafka.lag", "--json"],
        cwd=ROOT, env=kafka_env(one_partition), capture_output=True, text=True, timeout=60, check=True,
    )
    rows = json.loads(out.stdout)
    assert rows == [
        {
            "stream": "market_data",
            "topic": one_partition.kafka.topic_prefix + "market_data",
            "partition": 0,
            "start_offset": 0,
            "end_offset": 5,
            "closed": True,
        }
    ]


def test_lag_command_fails_clearly_without_a_recovery_store(
    one_partition: Settings, tmp_path: Path
) -> None:
    Connectors(one_partition).writer("market_data").close()
    out = subprocess.run(
        [sys.executable, "-m", "connectors.kafka.lag", "--recovery", str(tmp_path / "none")],
        cwd=ROOT, env=kafka_env(one_partition), capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 1
    assert "no Bytewax recovery partitions" in out.stderr
