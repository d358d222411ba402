"""Run one job on the local profile and on a server profile with the same input; compare.

The profile-neutral half of ``tests/integration/kafka/profiles.py`` and
``tests/integration/fluss/profiles.py``: settings of the local profile, feeding and
reading streams, running a flow in this process, running a job on both profiles
(once, or in phases resumed from Bytewax recovery) and comparing what each wrote.
Each server profile module adds its settings (fresh topics / a fresh database per
run), its subprocess environment and a ``ProfileRuns`` subclass that names its side.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main

from connectors.kafka.settings import kafka_env
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from schemas import Record
from tests.helpers import read_all

FlowBuilder = Callable[[Settings], Dataflow]
ServerSettings = Callable[..., Settings]
"""``make(server, data_dir, **overrides)``: settings of a server profile with fresh streams
(``kafka_settings``, ``fluss_settings``)."""


def unique_name(label: str = "t", suffix: str = "") -> str:
    """Return a fresh name such as ``t3f9a1c`` (topic prefix, database)."""
    return f"{label}{uuid.uuid4().hex[:8]}{suffix}"


SERVER_NAMESPACES: dict[str, tuple[str, str]] = {"kafka": ("topic_prefix", "."), "fluss": ("database", "")}
"""Per server profile: the settings field that keeps one run's streams apart from the
others' on the shared server (a topic prefix, a database), and how a fresh one ends."""


class Bootstrapped(Protocol):
    """A running server (``KafkaBroker``, ``FlussCluster``) clients reach at ``bootstrap_servers``."""

    @property
    def bootstrap_servers(self) -> str: ...


def fresh_namespace(profile: str, label: str = "t") -> str:
    """Return a fresh topic prefix (``t3f9a1c.``) or database (``t3f9a1c``) for ``profile``."""
    return unique_name(label, SERVER_NAMESPACES[profile][1])


def server_settings(
    profile: str, server: Bootstrapped, data_dir: Path, *, namespace: str | None = None, **overrides: object
) -> Settings:
    """Settings of a server profile on ``server``, its streams under ``namespace`` (default: fresh)."""
    field = SERVER_NAMESPACES[profile][0]
    section = {"bootstrap": server.bootstrap_servers, field: namespace or fresh_namespace(profile)}
    return profile_settings(profile, section, data_dir, **overrides)


def local_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings of the local profile on a fresh embedded store."""
    return load_settings(profile="local", data_dir=data_dir, **overrides)


def profile_settings(
    profile: str, section: Mapping[str, object], data_dir: Path, **overrides: object
) -> Settings:
    """Settings of ``profile`` whose backend section (``kafka``, ``fluss``) is ``section``.

    A ``kafka=`` / ``fluss=`` mapping among ``overrides`` is merged over ``section``.
    """
    merged = dict(section)
    extra = overrides.pop(profile, None)
    if isinstance(extra, Mapping):
        merged.update(extra)
    return load_settings(profile=profile, data_dir=data_dir, **{profile: merged}, **overrides)


def profile_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (``python -m bytewax.run ...``) with these settings.

    The profile, data directory, batch size, follow flag and both server sections
    (``TRADEFLOW_KAFKA``, ``TRADEFLOW_FLUSS`` as JSON, as ``tradeflow.pipeline`` passes
    them), then ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLOW_KAFKA")}
    env.update(kafka_env(settings.kafka))
    env.update(
        {
            "TRADEFLOW_PROFILE": settings.profile.value,
            "TRADEFLOW_DATA_DIR": str(settings.data_dir),
            "TRADEFLOW_BATCH_SIZE": str(settings.batch_size),
            "TRADEFLOW_FOLLOW": "true" if settings.follow else "false",
            "TRADEFLOW_FLUSS": settings.fluss.model_dump_json(),
        }
    )
    env.update(extra)
    return env


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
    return read_all(Connectors(settings), stream)


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
    """What a job wrote on each profile, per output stream.

    The server profile's side is ``remote`` / ``remote_settings``, also reachable by the
    profile's name: ``runs.kafka``, ``runs.kafka_settings`` (or ``fluss``).
    """

    local: dict[str, list[Record]]
    remote: dict[str, list[Record]]
    local_settings: Settings
    remote_settings: Settings
    profile: str = "remote"

    def __getattr__(self, name: str) -> Any:
        profile = self.__dict__.get("profile")
        if profile is not None and name == profile:
            return self.remote
        if profile is not None and name == f"{profile}_settings":
            return self.remote_settings
        raise AttributeError(name)


def run_on_both(
    profile: str,
    make_settings: ServerSettings,
    build: FlowBuilder,
    server: object,
    tmp_path: Path,
    inputs: Mapping[str, Sequence[Record]],
    outputs: Sequence[str],
    *,
    workers: int = 1,
    **overrides: object,
) -> ProfileRuns:
    """Feed the same inputs to the job on both profiles, run it, read its outputs."""
    loc = local_settings(tmp_path / "local", **overrides)
    rem = make_settings(server, tmp_path / profile, **overrides)
    result: list[dict[str, list[Record]]] = []
    for settings in (loc, rem):
        feed(settings, inputs)
        run_flow(build, settings, workers=workers)
        result.append({stream: read_stream(settings, stream) for stream in outputs})
    return ProfileRuns(result[0], result[1], loc, rem, profile)


def run_phases_on_both(
    profile: str,
    make_settings: ServerSettings,
    build: FlowBuilder,
    server: object,
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
    (the local store is reopened explicitly; a server profile reopens on a write).
    """
    streams = sorted({name for phase in phases for name in phase})
    loc = local_settings(tmp_path / "local", **overrides)
    rem = make_settings(server, tmp_path / profile, **overrides)
    result: list[dict[str, list[Record]]] = []
    for name, settings in (("local", loc), (profile, rem)):
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
                conn.reopen_all(streams)
        result.append({stream: read_stream(settings, stream) for stream in outputs})
    return ProfileRuns(result[0], result[1], loc, rem, profile)


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
    local, remote = by_id(runs.local[stream], key), by_id(runs.remote[stream], key)
    for rid in sorted(set(local) | set(remote), key=repr):
        got, want = remote.get(rid), local.get(rid)
        assert got == want, f"{stream} {rid!r}:\n {runs.profile} {got!r}\n local {want!r}"
    local_n, remote_n = len(runs.local[stream]), len(runs.remote[stream])
    if exact_count:
        assert remote_n == local_n, f"{stream}: {remote_n} on {runs.profile}, {local_n} local"
