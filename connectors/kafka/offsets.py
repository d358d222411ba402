"""Where the flows are in each topic: end offsets, and positions from Bytewax recovery.

A Bytewax recovery directory holds ``part-<n>.sqlite3`` files (``python -m
bytewax.recovery DIR N``). Source positions are in their ``snaps`` table: one row
per ``(step_id, state_key, snap_epoch)``, the value pickled. For our Kafka sources
the state key is ``"<partition>-<topic>"`` and the value an int, the next offset.
A restart resumes each key from its newest snapshot taken *before* the resume
epoch; that epoch is, for the latest execution (``exs``), the smallest over its
workers of the furthest frontier each worker recorded (``fronts``), a worker that
recorded none counting as the execution's own resume epoch. ``recovery_positions``
computes the same, reading the files read-only, so it can run beside a live flow.
"""

from __future__ import annotations

import io
import pickle
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer

from connectors.base import ConnectorError
from connectors.kafka.config import consumer_config, topic_name
from connectors.kafka.topics import TopicAdmin, last_is_marker, watermarks
from connectors.settings import Profile, Settings
from schemas import STREAMS

_SOURCE_KEY = re.compile(r"^(\d+)-(.+)$")


@dataclass(frozen=True, slots=True)
class SnapshotPosition:
    """A source partition's offset as a Bytewax snapshot recorded it."""

    step_id: str
    """The input step, ``<flow id>.<step>`` (e.g. ``indicators.market_data``)."""
    topic: str
    partition: int
    offset: int
    """The next offset the step reads when it resumes from this snapshot."""
    epoch: int
    taken_at: str
    """When the snapshot was written (UTC, as SQLite's CURRENT_TIMESTAMP)."""


class _NoGlobals(pickle.Unpickler):
    """Load plain values only: any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"not a plain value ({module}.{name})")


def _offset(blob: bytes | None) -> int | None:
    if blob is None:
        return None
    try:
        # find_class refuses every global, so nothing but plain values can load.
        value = _NoGlobals(io.BytesIO(blob)).load()  # noqa: S301
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _resume_epoch(
    exs: Iterable[tuple[int, int, int]], fronts: Iterable[tuple[int, int, int]]
) -> int | None:
    latest = max(exs, default=None)
    if latest is None:
        return None
    ex_num, worker_count, resume = latest
    furthest = dict.fromkeys(range(worker_count), resume)
    for ex, worker, frontier in fronts:
        if ex == ex_num and worker in furthest:
            furthest[worker] = max(furthest[worker], frontier)
    return min(furthest.values())


def recovery_positions(recovery_dir: Path) -> list[SnapshotPosition]:
    """Return, per Kafka source partition, the offset a restart would resume from."""
    files = sorted(Path(recovery_dir).glob("part-*.sqlite3"))
    if not files:
        raise ConnectorError(f"no Bytewax recovery partitions (part-*.sqlite3) in {recovery_dir}")
    exs: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    snaps: list[tuple[str, str, int, bytes | None, str]] = []
    for path in files:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            exs += conn.execute("SELECT ex_num, worker_count, resume_epoch FROM exs").fetchall()
            fronts += conn.execute(
                "SELECT ex_num, worker_index, worker_frontier FROM fronts"
            ).fetchall()
            snaps += conn.execute(
                "SELECT step_id, state_key, snap_epoch, ser_change, created_at FROM snaps "
                "WHERE state_key GLOB '[0-9]*-?*'"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConnectorError(f"cannot read Bytewax recovery partition {path}: {exc}") from exc
        finally:
            conn.close()
    resume = _resume_epoch(exs, fronts)
    if resume is None:
        return []
    newest: dict[tuple[str, str], tuple[int, bytes | None, str]] = {}
    for step_id, key, epoch, blob, taken_at in snaps:
        seen = newest.get((step_id, key))
        if epoch < resume and (seen is None or epoch > seen[0]):
            newest[(step_id, key)] = (epoch, blob, taken_at)
    out = []
    for (step_id, key), (epoch, blob, taken_at) in sorted(newest.items()):
        match = _SOURCE_KEY.match(key)
        offset = _offset(blob)
        if match is None or offset is None:
            continue  # some other operator's state, or a discarded one
        out.append(
            SnapshotPosition(step_id, match[2], int(match[1]), offset, epoch, taken_at)
        )
    return out


def lag_report(
    settings: Settings, recovery_dir: Path | None = None
) -> list[dict[str, object]]:
    """Return one row per topic partition (and per input step reading it).

    Every row has ``stream`` (logical name, None for a topic only the recovery store
    knows), ``topic``, ``partition``, ``start_offset``, ``end_offset`` (high
    watermark) and ``closed`` (the partition ends with an end-of-stream marker).
    Given a recovery directory, rows also carry ``step_id``, ``position`` (the
    offset a restart resumes from), ``lag`` (records between it and the end, a
    closing marker not counted), ``snapshot_epoch`` and ``snapshot_at``; a partition
    no snapshot mentions gets one row with those set to None. Topics not created yet
    are left out.
    """
    admin = TopicAdmin(settings.kafka)
    existing = admin.existing()
    topics: dict[str, str | None] = {}
    for logical in STREAMS:
        if settings.profile_for(logical) is Profile.KAFKA:
            topic = topic_name(settings.kafka, settings.physical_name(logical))
            if topic in existing:
                topics[topic] = logical
    positions = recovery_positions(recovery_dir) if recovery_dir is not None else []
    for pos in positions:
        if pos.topic in existing:
            topics.setdefault(pos.topic, None)
    consumer = Consumer(consumer_config(settings.kafka, "lag-report", eof=True))
    rows: list[dict[str, object]] = []
    try:
        for topic, stream in sorted(topics.items()):
            for part in range(existing[topic]):
                lo, hi = watermarks(consumer, topic, part)
                closed = last_is_marker(consumer, topic, part)
                base: dict[str, object] = {
                    "stream": stream,
                    "topic": topic,
                    "partition": part,
                    "start_offset": lo,
                    "end_offset": hi,
                    "closed": closed,
                }
                mine = [p for p in positions if p.topic == topic and p.partition == part]
                if recovery_dir is None:
                    rows.append(base)
                    continue
                if not mine:
                    rows.append(base | dict.fromkeys(
                        ("step_id", "position", "lag", "snapshot_epoch", "snapshot_at")
                    ))
                for pos in mine:
                    last = hi - 1 if closed else hi
                    rows.append(
                        base
                        | {
                            "step_id": pos.step_id,
                            "position": pos.offset,
                            "lag": max(0, last - pos.offset),
                            "snapshot_epoch": pos.epoch,
                            "snapshot_at": pos.taken_at,
                        }
                    )
    finally:
        consumer.close()
    return rows
