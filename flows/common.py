"""Wiring shared by every flow: decode raw messages, route bad ones to dead_letters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition
from prometheus_client import Counter, Histogram

from connectors.base import SourceMessage
from connectors.metrics import DEAD_LETTERS, HOP_LATENCY, ITEMS_IN, ITEMS_OUT, observe_many, serve
from connectors.registry import Connectors
from connectors.runtime import tune_gc
from connectors.settings import Settings
from operators.sequencing import Decoded as Decoded  # re-exported: flows import them from here
from operators.sequencing import TableGate as TableGate
from operators.sequencing import from_the_future
from schemas import DeadLetter, DecodeError, Record, checked_decode, decode, encode, fast_decode

R = TypeVar("R", bound=Record)

MAX_PAYLOAD_CHARS = 4000
"""Dead letters keep at most this much of the bad payload."""


def job_process(settings: Settings) -> None:
    """Set up the process a job runs in: its metrics endpoint and its collector thresholds."""
    serve(settings.metrics_port, settings.metrics_host)
    tune_gc(settings.gc_thresholds)


def dead_letter(
    msg: SourceMessage, reason: str, job: str, payload: str | None = None
) -> DeadLetter:
    """Build the dead letter for a message that could not be used, and why."""
    text = payload if payload is not None else msg.value.decode("utf-8", errors="replace")
    return DeadLetter(
        source_stream=msg.stream,
        partition=msg.partition,
        offset=msg.offset,
        source_key=msg.key,
        reason=reason,
        payload=text[:MAX_PAYLOAD_CHARS],
        job=job,
        ts=datetime.now(UTC),
    )


def refuse_future(
    step_id: str, up: Stream[Decoded[Any]], skew_s: float | None, *, job: str, what: str,
    letters: list[Stream[Any]],
) -> Stream[Decoded[Any]]:
    """Send records dated more than ``skew_s`` ahead of the wall clock to dead letters.

    The record needs a ``ts``; ``what`` names it in the reason (``future tick: ...``).
    """
    if skew_s is None:
        return up

    def why(d: Decoded[Any]) -> str | None:
        return from_the_future(d.record.ts, datetime.now(UTC), skew_s)

    split = op.branch(f"{step_id}_not_future", up, lambda d: why(d) is None)
    letters.append(op.map(f"{step_id}_future", split.falses,
                          lambda d: dead_letter_of(d, f"future {what}: {why(d)}; not used", job)))
    return split.trues


def dead_letter_of(d: Decoded[Any], reason: str, job: str, *, key: str | None = None) -> DeadLetter:
    """Build the dead letter for a decoded record that cannot be used, and why."""
    msg = SourceMessage(d.stream, d.partition, d.offset, key, encode(d.record))
    return dead_letter(msg, reason, job)


@dataclass(frozen=True)
class DecodeOut(Generic[R]):
    """The two streams out of ``decode_messages``: good records and dead letters."""

    oks: Stream[Decoded[R]]
    errs: Stream[DeadLetter]


def decode_messages(
    step_id: str, up: Stream[SourceMessage], model: type[R], *, job: str, fast: bool = False
) -> DecodeOut[R]:
    """Decode each message into ``model``; ones that fail go out as dead letters.

    ``fast``: an internal hop (``StreamSpec.trusted``): the fast decode, which hands
    what it cannot read to the validating one, so the dead letters are the same. Else
    ``checked_decode``: every value validated, the same records and refusals as
    ``decode`` (tests/unit/test_checked_decode.py), at about a third of its cost for a tick.
    """
    items_in = ITEMS_IN.labels(job, step_id)
    letters = DEAD_LETTERS.labels(job, step_id)
    read = fast_decode if fast else checked_decode

    def attempt(msgs: list[SourceMessage]) -> list[Decoded[R] | DeadLetter]:
        # A batch at a time: the counters take a lock per inc, so one inc per batch.
        out: list[Decoded[R] | DeadLetter] = []
        refused = 0
        for msg in msgs:
            try:
                rec = read(model, msg.value)
            except DecodeError as exc:
                refused += 1
                out.append(dead_letter(msg, str(exc), job))
                continue
            out.append(Decoded(rec, msg.stream, msg.partition, msg.offset))
        if refused:
            letters.inc(refused)
        if len(out) > refused:
            items_in.inc(len(out) - refused)
        return out

    tried = op.flat_map_batch(f"{step_id}_decode", up, attempt)
    split = op.branch(f"{step_id}_ok", tried, lambda x: isinstance(x, Decoded))
    return DecodeOut(split.trues, split.falses)  # type: ignore[arg-type]


def records(
    flow: Dataflow, conn: Connectors, stream: str, model: type[R], *, job: str,
    letters: list[Stream[Any]], sharded: bool = False, until_now: bool = False,
    unreadable: list[Stream[Decoded[DeadLetter]]] | None = None,
) -> Stream[Decoded[R]]:
    """Read ``stream`` as decoded ``model`` records; what does not decode joins ``letters``.

    ``until_now``: a bounded run reads the stream only up to where it ends at start
    (a table nobody closes, see ``Connectors.source``). ``unreadable``: see ``decoded``.
    """
    raw = op.input(stream, flow, conn.source(stream, sharded=sharded, until_now=until_now))
    return decoded(stream, raw, model, job=job, letters=letters, unreadable=unreadable)


def decoded(
    step_id: str, up: Stream[SourceMessage], model: type[R], *, job: str, letters: list[Stream[Any]],
    unreadable: list[Stream[Decoded[DeadLetter]]] | None = None, fast: bool = False,
) -> Stream[Decoded[R]]:
    """Decode messages into ``model`` records; what does not decode joins ``letters``.

    With ``unreadable`` the dead letters also join it, as ``Decoded`` at the position
    they were read from: a job that waits until it has read a table to its start-up
    end (``TableGate``) must count a row it could not use as read, or one bad last
    row would hold it closed for ever. ``fast``: see ``decode_messages``.
    """
    dec = decode_messages(step_id, up, model, job=job, fast=fast)
    letters.append(dec.errs)
    if unreadable is not None:
        unreadable.append(op.map(f"{step_id}_unreadable", dec.errs, _at_its_position))
    return dec.oks


def _at_its_position(letter: DeadLetter) -> Decoded[DeadLetter]:
    return Decoded(letter, letter.source_stream, letter.partition or 0, letter.offset or 0)


def demux(step_id: str, up: Stream[tuple[str, Any]], names: list[str]) -> dict[str, Stream[Any]]:
    """Split a stream of ``(stream_name, record)`` into one stream per name."""
    def only(name: str) -> Callable[[tuple[str, Record]], Record | None]:
        return lambda item: item[1] if item[0] == name else None

    return {name: op.filter_map(f"{step_id}_{name}", up, only(name)) for name in names}


def shard_guard(flow: Dataflow, conn: Connectors, job: str) -> Stream[Any]:
    """Add the step that keeps this shard's ``I/N`` in the recovery store (emits nothing).

    Resumed from a store another shard wrote, the flow stops at start-up with a
    ``ShardError`` naming both (``connectors.sharding.ShardGuard``).
    """
    return op.input("shard_guard", flow, conn.shard_guard(job))


def startup_ends(conn: Connectors, stream: str) -> dict[int, int]:
    """Return where a stream's data ends now, as a job starts (see ``TableGate``)."""
    reader = conn.reader(stream)
    try:
        return reader.data_ends()
    finally:
        reader.close()


def startup_table(conn: Connectors, stream: str, model: type[R]) -> tuple[dict[int, int], dict[str, R]]:
    """Return where a table's changelog ends now, and its latest row per key up to there.

    Rows that do not decode are left out (the flow reading the changelog dead-letters them).
    """
    reader = conn.reader(stream)
    try:
        ends = reader.data_ends()
        rows: dict[str, R] = {}
        for part, end in sorted(ends.items()):
            offset = 0
            while offset < end and (batch := reader.read(part, offset, min(5000, end - offset))):
                for rec in batch:
                    if rec.offset >= end:
                        break
                    try:
                        row = decode(model, rec.value)
                    except DecodeError:
                        continue
                    rows[row.key()] = row
                offset = batch[-1].offset + 1
        return ends, rows
    finally:
        reader.close()


def output(
    step_id: str, up: Stream[Any], conn: Connectors, stream: str, *, job: str, sink: Sink[Any] | None = None
) -> None:
    """Write a stream of records to ``stream`` (through ``sink`` if given), counted for the metrics.

    For a record that carries ``entered_at``, ``now - entered_at`` is observed in the
    job's hop latency histogram (``tradeflow_hop_latency_seconds{job, stream}``) as the
    batch is written. Records are written as they are: the write time is the store's
    (``StoredRecord.written_at``), never a field, so a replay writes identical records.
    """
    counted = CountingSink(sink or conn.sink(stream), ITEMS_OUT.labels(job, stream),
                           HOP_LATENCY.labels(job, stream))
    op.output(step_id, up, counted)


def observe_latency(items: list[Any], now: datetime, latency: Histogram) -> None:
    """Tell ``latency`` ``now - entered_at`` (seconds) for each record of ``items`` that carries it."""
    observe_many(latency, [(now - entered).total_seconds() for item in items
                           if (entered := getattr(item, "entered_at", None)) is not None])


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self, inner: StatelessSinkPartition[Any], counter: Counter,
                 latency: Histogram | None = None) -> None:
        self._inner = inner
        self._counter = counter
        self._latency = latency

    def write_batch(self, items: list[Any]) -> None:
        self._inner.write_batch(items)
        if self._latency is not None:
            observe_latency(items, datetime.now(UTC), self._latency)
        self._counter.inc(len(items))

    def close(self) -> None:
        self._inner.close()


class CountingSink(DynamicSink[Any]):
    """Wrap a sink so that every batch written adds to a Prometheus counter.

    With ``latency``, ``now - entered_at`` of the records that carry it is observed
    (``observe_latency``).
    """

    def __init__(self, inner: Sink[Any], counter: Counter, latency: Histogram | None = None) -> None:
        if not isinstance(inner, DynamicSink):
            raise TypeError(f"CountingSink wraps dynamic sinks, got {type(inner).__name__}")
        self._inner = inner
        self._counter = counter
        self._latency = latency

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        """Build the inner sink's partition for this worker, counted."""
        return _CountingPartition(self._inner.build(step_id, worker_index, worker_count), self._counter,
                                  self._latency)
