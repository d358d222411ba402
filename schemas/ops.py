"""Operational streams: dead letters and execution metrics."""

from __future__ import annotations

from typing import ClassVar

from schemas.base import Record, UtcDatetime


class DeadLetter(Record):
    """A record a job could not use, with why and where it came from."""

    key_fields: ClassVar[tuple[str, ...]] = ("source_stream",)

    source_stream: str
    partition: int | None = None
    offset: int | None = None
    source_key: str | None = None
    reason: str
    payload: str
    job: str = ""
    ts: UtcDatetime


class ExecutionMetrics(Record):
    """Per-venue execution figures over a rolling window."""

    key_fields: ClassVar[tuple[str, ...]] = ("venue",)

    venue: str
    window_s: float
    orders_sent: int = 0
    acks: int = 0
    fills: int = 0
    rejects: int = 0
    reject_rate: float = 0.0
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None
    fill_p50_ms: float | None = None
    fill_p99_ms: float | None = None
    msgs_sent: int = 0
    msgs_received: int = 0
    session_state: str = "UNKNOWN"
    ts: UtcDatetime
