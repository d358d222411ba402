"""Job A on the kafka profile against a real broker: same rows as the embedded store,
SIGKILL + Bytewax recovery from snapshotted offsets, a broker restart mid-stream, and
malformed records landing in the dead_letters topic with DLQ headers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from connectors.feeds import SyntheticMarket
from connectors.kafka import lag_report, recovery_positions
from connectors.registry import Connectors
from connectors.settings import Settings
from flows.indicators import build_flow
from schemas import DeadLetter, MarketData, Record, SmaWide, decode, encode
from tests.flows.test_indicators_flow import BAD_PAYLOADS, T0
from tests.integration.kafka.profiles import (
    assert_same_by_id,
    by_id,
    feed,
    kafka_env,
    kafka_settings,
    local_settings,
    read_stream,
    run_flow,
    run_on_both,
)
from tests.recovery.procs import init_recovery, kill_when, run, start
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def row_id(rec: Record) -> tuple[str, int]:
    assert isinstance(rec, SmaWide)
    return (rec.symbol, rec.seq)


def reference_rows(tmp_path: Path, ticks: list[MarketData]) -> dict[object, Record]:
    """Job A's rows for ``ticks`` on the embedded store (an uninterrupted run)."""
    settings = local_settings(tmp_path / "reference")
    feed(settings, {"market_data": ticks})
    run_flow(build_flow, settings)
    return by_id(read_stream(settings, "sma_wide"), row_id)


def progress(settings: Settings, stream: str) -> Callable[[], int]:
    """Return a cheap counter of a stream's records (one reader kept open)."""
    reader = Connectors(settings).reader(stream)

    def count() -> int:
        return sum(reader.end_offsets().values())

    return count


@pytest.mark.parametrize("workers", [1, 2])
def test_job_a_on_kafka_writes_the_same_rows_as_on_the_embedded_store(
    kafka_broker: KafkaBroker, tmp_path: Path, workers: int
) -> None:
    ticks = list(SyntheticMarket(symbols=7, ticks=3000, seed=3))
    runs = run_on_both(
        build_flow,
        kafka_broker,
        tmp_path,
        {"market_data": ticks},
        ["sma_wide", "dead_letters"],
        workers=workers,
    )
    assert len(runs.kafka["sma_wide"]) == len(ticks)
    assert_same_by_id(runs, "sma_wide", row_id)
    assert runs.kafka["dead_letters"] == runs.local["dead_letters"] == []


TICKS = 60_000


def feed_paced(settings: Settings, ticks: list[MarketData], errors: list[BaseException]) -> threading.Thread:
    """Start a thread writing ``ticks`` in batches of 1000 every 0.1 s, then closing."""

    def write() -> None:
        try:
            feed_slowly(settings, ticks)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def feed_slowly(settings: Settings, ticks: list[MarketData]) -> None:
    writer = Connectors(settings).writer("market_data")
    try:
        for i in range(0, len(ticks), 1000):
            writer.write(ticks[i : i + 1000])
            time.sleep(0.1)
        writer.close_stream()
    finally:
        writer.close()


def snapshotted(rec: Path) -> bool:
    """Tell whether the recovery store holds a source snapshot past offset 0."""
    return any(p.offset > 0 for p in recovery_positions(rec))


def test_job_a_killed_mid_stream_resumes_from_its_kafka_offsets(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    ticks = list(SyntheticMarket(symbols=12, ticks=TICKS, seed=11))
    want = reference_rows(tmp_path, ticks)
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    env = kafka_env(settings)
    rec = tmp_path / "recovery"
    log = tmp_path / "flow.log"
    init_recovery(rec, env, log)
    cmd = ["-m", "bytewax.run", "flows.indicators:build_flow()", "-r", str(rec), "-s", "1", "-b", "0"]
    written = progress(settings, "sma_wide")
    # The input arrives while the flow runs (~6 s), so the flow cannot finish before
    # the kill, which comes once a snapshot (every second) has recorded progress.
    errors: list[BaseException] = []
    feeder = feed_paced(settings, ticks, errors)
    proc = start(cmd, env, log)
    kill_when(proc, lambda: snapshotted(rec), timeout=180)
    killed_at = written()
    assert 0 < killed_at < TICKS
    feeder.join(120)
    assert not errors, errors
    run(cmd, env, log)

    rows = read_stream(settings, "sma_wide")
    assert by_id(rows, row_id) == want  # nothing lost, replayed rows identical
    assert len(rows) - len(want) < killed_at  # duplicates only from the replayed interval
    assert read_stream(settings, "dead_letters") == []

    # The lag report reads the same snapshots the restart resumed from: all consumed.
    report = [r for r in lag_report(settings, rec) if r["stream"] == "market_data"]
    assert len(report) == settings.kafka.partitions
    for row in report:
        assert row["step_id"] == "indicators.market_data"
        assert row["closed"] is True
        assert row["lag"] == 0
        assert row["position"] == row["end_offset"] - 1  # parked on the end-of-stream marker

    # A bounded run resumed after the end stops at once and writes nothing more.
    run(cmd, env, log)
    assert len(read_stream(settings, "sma_wide")) == len(rows)


@pytest.mark.parametrize("hard", [False, True], ids=["stop", "kill"])
def test_job_a_survives_a_broker_restart_mid_stream(
    kafka_broker: KafkaBroker, tmp_path: Path, hard: bool
) -> None:
    ticks = list(SyntheticMarket(symbols=12, ticks=TICKS, seed=5))
    want = reference_rows(tmp_path, ticks)
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    half = TICKS // 2
    feed(settings, {"market_data": ticks[:half]}, close=False)

    log = tmp_path / "flow.log"
    written = progress(settings, "sma_wide")
    proc = start(["-m", "bytewax.run", "flows.indicators:build_flow()"], kafka_env(settings), log)
    feed_error: list[BaseException] = []
    feeder: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 120
        while written() < TICKS // 5:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the flow made no progress"
            time.sleep(0.05)
        # The second half is written while the broker restarts (a writer reconnects
        # too); the stream is closed only after it, so the flow is mid-stream here.
        feeder = feed_paced(settings, ticks[half:], feed_error)
        kafka_broker.restart(hard=hard)
        rc = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert feeder is not None
    feeder.join(120)
    assert not feed_error, feed_error
    assert rc == 0, log.read_text()[-3000:]

    rows = read_stream(settings, "sma_wide")
    assert by_id(rows, row_id) == want
    # The idempotent producer's retries across the restart duplicate nothing.
    assert len(rows) == len(want)


def test_malformed_records_go_to_the_dead_letters_topic_with_dlq_headers(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    conn = Connectors(settings)
    writer = conn.writer("market_data")  # creates the topic
    topic = settings.kafka.topic_prefix + "market_data"
    good = [
        MarketData(symbol="X", ts=T0.replace(second=i), price=10 + i, volume=5) for i in range(3)
    ]
    payloads = [encode(good[0]), *BAD_PAYLOADS, *(encode(g) for g in good[1:])]
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

    run_flow(build_flow, settings)

    assert [r.price for r in read_stream(settings, "sma_wide")] == [10.0, 11.0, 12.0]  # type: ignore[attr-defined]
    letters = read_stream(settings, "dead_letters")
    assert len(letters) == len(BAD_PAYLOADS)
    for letter in letters:
        assert isinstance(letter, DeadLetter)
        assert letter.source_stream == "market_data"
        assert (letter.partition, letter.offset) == placed[letter.payload.encode()]

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

