"""Event-time mode: write a producer's ``Progress`` rows behind the data they cover.

A job's engine emits ``operators.eventtime.Reached`` among its outputs; ``ProgressSink``
writes the records of a batch to their stream first (the inner sink flushes before it
returns), then one ``Progress`` row with the promise of the batch, the ends of the
data stream as they are now and the process's ``RUN``. Job C counts the row only once
it has read the data stream up to those ends, so the promise never overtakes the data. ``ProgressWriter``
does the same for the feed writer: after each batch of ticks, the market is written up
to the batch's watermark (one millisecond less: the next batch may hold ticks of the
same millisecond), and up to ``END`` once the feed closes the stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from connectors.base import StreamReader, StreamWriter
from connectors.registry import Connectors
from operators.eventtime import FEED, MARKET, MS, Reached, merged
from operators.sequencing import END
from schemas import MarketData, Progress, Record

RUN = uuid.uuid4().hex[:16]
"""This process's run (``Progress.run``): new at every start, shared by its workers."""


def progress_row(
    producer: str, stream: str, reader: StreamReader, reached: Reached, run: str | None = None
) -> Progress:
    """Return the progress row of a promise, with the data stream's ends as they are now."""
    return Progress(producer=producer, stream=stream, ends=reader.data_ends(), symbols=reached.symbols,
                    orders=reached.orders, run=run, ts=datetime.now(UTC))


class _ProgressPartition(StatelessSinkPartition[Any]):
    def __init__(
        self, inner: StatelessSinkPartition[Record], producer: str, stream: str, reader: StreamReader,
        progress: StreamWriter,
    ) -> None:
        self._inner, self._producer, self._stream = inner, producer, stream
        self._reader, self._progress = reader, progress

    def write_batch(self, items: list[Any]) -> None:
        data = [i for i in items if not isinstance(i, Reached)]
        if data:
            self._inner.write_batch(data)  # flushed when it returns
        reached = merged(i for i in items if isinstance(i, Reached))
        if reached is not None:
            self._progress.write([progress_row(self._producer, self._stream, self._reader, reached, RUN)])

    def close(self) -> None:
        self._inner.close()
        self._reader.close()
        self._progress.close()


class ProgressSink(DynamicSink[Any]):
    """A sink of records and ``Reached`` promises: records to their stream, promises to progress."""

    def __init__(
        self, inner: DynamicSink[Record], producer: str, stream: str, reader: Callable[[], StreamReader],
        progress: Callable[[], StreamWriter],
    ) -> None:
        self._inner, self._producer, self._stream = inner, producer, stream
        self._reader, self._progress = reader, progress

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProgressPartition:
        """Build the inner partition, a reader of the data stream's ends and a progress writer."""
        return _ProgressPartition(self._inner.build(step_id, worker_index, worker_count), self._producer,
                                  self._stream, self._reader(), self._progress())


class ProgressWriter(StreamWriter):
    """The feed's writer of market_data in event-time mode: each batch, then the feed's promise."""

    def __init__(self, inner: StreamWriter, reader: StreamReader, progress: StreamWriter) -> None:
        self._inner, self._reader, self._progress = inner, reader, progress

    def write(self, records: Sequence[Record]) -> None:
        """Write a batch of ticks, then the market's progress up to just before its watermark."""
        self._inner.write(records)
        marks = [t.wm or t.ts for t in records if isinstance(t, MarketData)]
        if marks:
            self._promise(max(marks) - MS)

    def _promise(self, wm: datetime) -> None:
        self._progress.write([progress_row(FEED, "market_data", self._reader, Reached({MARKET: wm}))])

    def close_stream(self) -> None:
        """Close market_data; the feed has then written everything."""
        self._inner.close_stream()
        self._promise(END)

    def finished(self) -> None:
        """Promise the whole market: the feed has written everything (the stream stays open)."""
        self._promise(END)

    def write_raw(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Write raw payloads (no promise: they carry no time this writer can trust)."""
        self._inner.write_raw(items)

    def close(self) -> None:
        """Release the writers and the reader."""
        self._inner.close()
        self._reader.close()
        self._progress.close()


def progress_sink(conn: Connectors, stream: str, producer: str) -> Sink[Any]:
    """Return the sink of ``stream`` for ``producer``: with its progress rows in event-time mode."""
    inner = conn.sink(stream)
    if not conn.settings.event_time:
        return inner
    if not isinstance(inner, DynamicSink):
        raise TypeError(f"event-time mode needs a dynamic sink for {stream}, got {type(inner).__name__}")
    return ProgressSink(inner, producer, stream, lambda: conn.reader(stream), lambda: conn.writer("progress"))


def market_writer(conn: Connectors) -> StreamWriter:
    """Return the feed's writer of market_data: with the market's progress in event-time mode."""
    writer = conn.writer("market_data")
    if not conn.settings.event_time:
        return writer
    return ProgressWriter(writer, conn.reader("market_data"), conn.writer("progress"))
