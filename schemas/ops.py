"""Operational streams: dead letters and execution metrics."""

from __future__ import annotations

from typing import ClassVar

from pydantic import FiniteFloat

from schemas.base import FreeText, Name, Payload, Record, UtcDatetime


class DeadLetter(Record):
    """A record a job could not use, with why and where it came from."""

    key_fields: ClassVar[tuple[str, ...]] = ("source_stream",)
    max_record_bytes: ClassVar[int] = 512 * 1024
    """Room for a payload of 64 Ki characters even when every one is JSON-escaped."""

    source_stream: Name
    partition: int | None = None
    offset: int | None = None
    source_key: FreeText | None = None
    reason: FreeText
    payload: Payload
    job: FreeText = ""
    ts: UtcDatetime


class ExecutionMetrics(Record):
    """Per-venue execution figures over a rolling window."""

    key_fields: ClassVar[tuple[str, ...]] = ("venue",)

    venue: Name
    window_s: FiniteFloat
    orders_sent: int = 0
    acks: int = 0
    fills: int = 0
    rejects: int = 0
    reject_rate: FiniteFloat = 0.0
    ack_p50_ms: FiniteFloat | None = None
    ack_p99_ms: FiniteFloat | None = None
    fill_p50_ms: FiniteFloat | None = None
    fill_p99_ms: FiniteFloat | None = None
    msgs_sent: int = 0
    msgs_received: int = 0
    session_state: str = "UNKNOWN"
    ts: UtcDatetime


class Progress(Record):
    """A producer's promise about what it has written (event-time mode, ``deterministic``).

    Written by a job after the data it covers is flushed: for each symbol in
    ``symbols``, everything the producer will ever write from its input up to that
    event time is in ``stream`` at offsets below ``ends`` (per partition). Job D adds
    ``orders``: how many distinct validated orders of each account it has taken. Job C
    counts a progress row only once it has read ``stream`` up to ``ends``
    (``operators.sequencing.EventClock``).

    ``run`` names the producer's process: a job restarted from its snapshot starts over
    from where that snapshot was, so what it promised before the crash no longer holds
    for what it takes after it (Job D: an order it takes again may fill at a tick it
    had passed). Job C forgets a producer's times when a row of a run it has not seen
    arrives. None: a writer that never goes back (the feed resumes after its last tick).
    """

    key_fields: ClassVar[tuple[str, ...]] = ("producer",)

    producer: Name
    stream: Name
    ends: dict[int, int] = {}
    symbols: dict[str, UtcDatetime] = {}
    orders: dict[str, int] = {}
    run: Name | None = None
    ts: UtcDatetime
