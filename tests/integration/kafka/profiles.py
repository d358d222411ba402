"""Run one job on the local and on the kafka profile with the same input; compare.

Adding "job X on kafka equals job X on local" is one small test::

    def test_job_x_on_kafka_matches_local(kafka_broker, tmp_path):
        inputs = {"trade_signals": signals, "accounts": accounts}
        runs = run_on_both(flows.portfolio.build_flow, kafka_broker, tmp_path, inputs,
                           outputs=["validated_orders", "dead_letters"])
        assert_same_by_id(runs, "validated_orders", lambda r: r.order_id)

Each kafka run gets its own topic prefix (fresh topics on the shared broker) and each
local run its own data directory. Inputs are written with the profile's writer and
then closed, so bounded flows stop at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from schemas import Record, decode, spec
from tradeflow.infra.kafka import KafkaBroker

FlowBuilder = Callable[[Settings], Dataflow]


def unique_prefix(label: str = "t") -> str:
    """Return a fresh topic prefix such as ``t3f9a1c.``."""
    return f"{label}{uuid.uuid4().hex[:8]}."


def kafka_settings(
    broker: KafkaBroker, data_dir: Path, *, prefix: str | None = None, **overrides: object
) -> Settings:
    """Settings of the kafka profile on ``broker`` with fresh topics."""
    kafka: dict[str, object] = {
        "bootstrap": broker.bootstrap_servers,
        "topic_prefix": prefix or unique_prefix(),
    }
    extra = overrides.pop("kafka", None)
    if isinstance(extra, Mapping):
        kafka.update(extra)
    return load_settings(profile="kafka", kafka=kafka, data_dir=data_dir, **overrides)


def local_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings of the local profile on a fresh embedded store."""
    return load_settings(profile="local", data_dir=data_dir, **overrides)


def feed(settings: Settings, inputs: Mapping[str, Sequence[Record]], *, close: bool = True) -> None:
    """Write each stream's records (in order, one batch per 1000) and close the streams."""
    conn = Connectors(settings)
    for stream, records in inputs.items():
        writer = conn.writer(stream)
        try:
            for i in range(0, len(records), 1000):
                writer.write(records[i : i + 1000])
            if close:
                writer.close_stream()
        finally:
            writer.close()


def read_stream(settings: Settings, stream: str) -> list[Record]:
    """Return every record of a stream, partition by partition, in offset order."""
    model = spec(stream).model
    reader = Connectors(settings).reader(stream)
    out: list[Record] = []
    try:
        for part in range(reader.partitions):
            offset = 0
            while batch := reader.read(part, offset, 10_000):
                out.extend(decode(model, r.value) for r in batch)
                offset = batch[-1].offset + 1
    finally:
        reader.close()
    return out


def count_records(settings: Settings, stream: str) -> int:
    """Return how many records a stream holds (end-of-stream markers not counted)."""
    reader = Connectors(settings).reader(stream)
    try:
        ends = reader.end_offsets()
        return sum(ends.values()) - (reader.partitions if reader.is_closed() else 0)
    finally:
        reader.close()


def run_flow(build: FlowBuilder, settings: Settings, *, workers: int = 1) -> None:
    """Build the flow with ``settings`` and run it in this process until its inputs end."""
    flow = build(settings)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


@dataclass(frozen=True)
class ProfileRuns:
    """What a job wrote on each profile, per output stream."""

    local: dict[str, list[Record]]
    kafka: dict[str, list[Record]]
    local_settings: Settings
    kafka_settings: Settings


def run_on_both(
    build: FlowBuilder,
    broker: KafkaBroker,
    tmp_path: Path,
    inputs: Mapping[str, Sequence[Record]],
    outputs: Sequence[str],
    *,
    workers: int = 1,
    **overrides: object,
) -> ProfileRuns:
    """Feed the same inputs to the job on both profiles, run it, read its outputs."""
    loc = local_settings(tmp_path / "local", **overrides)
    kaf = kafka_settings(broker, tmp_path / "kafka", **overrides)
    result: dict[str, dict[str, list[Record]]] = {}
    for name, settings in (("local", loc), ("kafka", kaf)):
        feed(settings, inputs)
        run_flow(build, settings, workers=workers)
        result[name] = {stream: read_stream(settings, stream) for stream in outputs}
    return ProfileRuns(result["local"], result["kafka"], loc, kaf)


def by_id(records: Sequence[Record], key: Callable[[Record], Hashable]) -> dict[Hashable, Record]:
    """Index records by id; fail if one id has two different records."""
    out: dict[Hashable, Record] = {}
    for rec in records:
        rid = key(rec)
        assert out.get(rid, rec) == rec, f"two different records with id {rid!r}"
        out[rid] = rec
    return out


def assert_same_by_id(
    runs: ProfileRuns, stream: str, key: Callable[[Record], Hashable], *, exact_count: bool = True
) -> None:
    """Assert both profiles wrote the same records to ``stream``, compared by id."""
    local, kafka = runs.local[stream], runs.kafka[stream]
    assert by_id(kafka, key) == by_id(local, key)
    if exact_count:
        assert len(kafka) == len(local), f"{stream}: {len(kafka)} on kafka, {len(local)} local"


def kafka_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (``python -m bytewax.run ...``) with these settings."""
    env = dict(os.environ)
    env.update(
        {
            "TRADEFLOW_PROFILE": "kafka",
            "TRADEFLOW_DATA_DIR": str(settings.data_dir),
            "TRADEFLOW_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
            "TRADEFLOW_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "TRADEFLOW_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "TRADEFLOW_BATCH_SIZE": str(settings.batch_size),
            "TRADEFLOW_FOLLOW": "true" if settings.follow else "false",
        }
    )
    env.update(extra)
    return env
