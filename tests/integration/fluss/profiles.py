"""Run one job on the local and on the fluss profile with the same input; compare.

"Job X on fluss equals job X on local" is one small test::

    def test_job_x_on_fluss_matches_local(fluss_cluster, tmp_path):
        runs = run_on_both(flows.x.build_flow, fluss_cluster, tmp_path, inputs, outputs=[...])
        assert_same_by_id(runs, "validated_orders", lambda r: r.order_id)

Each fluss run gets its own database (fresh tables on the shared cluster) and each
local run its own data directory. Inputs are written with the profile's writer and
then closed, so bounded flows stop at the end. The profile-neutral helpers (``feed``,
``read_stream``, ``run_flow``, ``by_id``) are the Kafka tests' own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from schemas import Record, decode, spec
from tests.integration.kafka.profiles import (
    FlowBuilder,
    by_id,
    feed,
    local_settings,
    read_stream,
    run_flow,
)
from tradeflow.infra.fluss import FlussCluster

__all__ = [
    "ProfileRuns",
    "assert_same_by_id",
    "by_id",
    "feed",
    "fluss_env",
    "fluss_settings",
    "latest_rows",
    "local_settings",
    "read_stream",
    "run_flow",
    "run_on_both",
    "run_phases_on_both",
    "unique_database",
]


def unique_database(label: str = "t") -> str:
    """Return a fresh database name such as ``t3f9a1c``."""
    return f"{label}{uuid.uuid4().hex[:8]}"


def fluss_settings(
    cluster: FlussCluster, data_dir: Path, *, database: str | None = None, **overrides: object
) -> Settings:
    """Settings of the fluss profile on ``cluster`` with a fresh database."""
    fluss: dict[str, object] = {
        "bootstrap": cluster.bootstrap_servers,
        "database": database or unique_database(),
    }
    extra = overrides.pop("fluss", None)
    if isinstance(extra, Mapping):
        fluss.update(extra)
    return load_settings(profile="fluss", fluss=fluss, data_dir=data_dir, **overrides)


def fluss_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (``python -m bytewax.run ...``) with these settings."""
    env = dict(os.environ)
    env.update(
        {
            "TRADEFLOW_PROFILE": "fluss",
            "TRADEFLOW_DATA_DIR": str(settings.data_dir),
            "TRADEFLOW_FLUSS__BOOTSTRAP": settings.fluss.bootstrap,
            "TRADEFLOW_FLUSS__DATABASE": settings.fluss.database,
            "TRADEFLOW_FLUSS__BUCKETS": str(settings.fluss.buckets),
            "TRADEFLOW_BATCH_SIZE": str(settings.batch_size),
            "TRADEFLOW_FOLLOW": "true" if settings.follow else "false",
        }
    )
    env.update(extra)
    return env


def latest_rows(settings: Settings, stream: str) -> dict[str, Record]:
    """Return the current row per key of a PK table, decoded (the reader's ``scan_latest``)."""
    model = spec(stream).model
    reader = Connectors(settings).reader(stream)
    try:
        return {key: decode(model, value) for key, value in reader.scan_latest()}
    finally:
        reader.close()


@dataclass(frozen=True)
class ProfileRuns:
    """What a job wrote on each profile, per output stream."""

    local: dict[str, list[Record]]
    fluss: dict[str, list[Record]]
    local_settings: Settings
    fluss_settings: Settings


def run_on_both(
    build: FlowBuilder,
    cluster: FlussCluster,
    tmp_path: Path,
    inputs: Mapping[str, Sequence[Record]],
    outputs: Sequence[str],
    *,
    workers: int = 1,
    **overrides: object,
) -> ProfileRuns:
    """Feed the same inputs to the job on both profiles, run it, read its outputs."""
    loc = local_settings(tmp_path / "local", **overrides)
    flu = fluss_settings(cluster, tmp_path / "fluss", **overrides)
    result: dict[str, dict[str, list[Record]]] = {}
    for name, settings in (("local", loc), ("fluss", flu)):
        feed(settings, inputs)
        run_flow(build, settings, workers=workers)
        result[name] = {stream: read_stream(settings, stream) for stream in outputs}
    return ProfileRuns(result["local"], result["fluss"], loc, flu)


def run_phases_on_both(
    build: FlowBuilder,
    cluster: FlussCluster,
    tmp_path: Path,
    phases: Sequence[Mapping[str, Sequence[Record]]],
    outputs: Sequence[str],
    **overrides: object,
) -> ProfileRuns:
    """Run a job once per phase on both profiles, resuming from Bytewax recovery each time.

    Every stream named in any phase is written (possibly with nothing) and closed
    before each run, so a phase's inputs are all read before the next phase's are
    written: what a job decides does not depend on how its separate input streams
    happen to interleave. Streams are closed per run and written again afterwards
    (the local store is reopened explicitly; on Fluss a write after a close reopens).
    """
    streams = sorted({name for phase in phases for name in phase})
    loc = local_settings(tmp_path / "local", **overrides)
    flu = fluss_settings(cluster, tmp_path / "fluss", **overrides)
    result: dict[str, dict[str, list[Record]]] = {}
    for name, settings in (("local", loc), ("fluss", flu)):
        recovery = tmp_path / f"recovery-{name}"
        recovery.mkdir()
        init_db_dir(recovery, 1)
        conn = Connectors(settings)
        for phase in phases:
            for stream in streams:
                writer = conn.writer(stream)
                try:
                    writer.write(list(phase.get(stream, [])))
                    writer.close_stream()
                finally:
                    writer.close()
            run_main(
                build(settings),
                epoch_interval=timedelta(seconds=0.2),
                recovery_config=RecoveryConfig(str(recovery)),
            )
            if name == "local":
                for stream in streams:
                    writer = conn.writer(stream)
                    writer._file.set_closed(False)  # type: ignore[attr-defined]
                    writer.close()
        result[name] = {stream: read_stream(settings, stream) for stream in outputs}
    return ProfileRuns(result["local"], result["fluss"], loc, flu)


def assert_same_by_id(
    runs: ProfileRuns, stream: str, key: Callable[[Record], Hashable], *, exact_count: bool = True
) -> None:
    """Assert both profiles wrote the same records to ``stream``, compared by id."""
    local, fluss = by_id(runs.local[stream], key), by_id(runs.fluss[stream], key)
    for rid in sorted(set(local) | set(fluss), key=repr):
        got, want = fluss.get(rid), local.get(rid)
        assert got == want, f"{stream} {rid!r}:\n fluss {got!r}\n local {want!r}"
    local_n, fluss_n = len(runs.local[stream]), len(runs.fluss[stream])
    if exact_count:
        assert fluss_n == local_n, f"{stream}: {fluss_n} on fluss, {local_n} local"
