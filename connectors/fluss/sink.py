"""A Bytewax sink into one Fluss table: Arrow appends to log tables, upserts to PK tables.

Why a ``DynamicSink`` (one writer per worker) rather than a ``FixedPartitionedSink``:
the client already places each row in its bucket by key, and a partitioned sink would
shuffle every record to the worker owning its bucket only to snapshot a state this sink
does not have. Per-key order holds because a key's records come from the one worker
that owns the key upstream, and the idempotent writer keeps each bucket's order when it
retries.

``write_batch`` flushes before it returns and waits for every write's result: it
raises if a record was not acknowledged (``flush()`` alone does not raise for failed
records, docs/fluss-client.md pitfall 3). Bytewax snapshots after an epoch's writes, so
a snapshot never covers output that is not in Fluss; a failed write crashes the flow,
and recovery replays from the last snapshot (at-least-once output, deterministic ids).

A tablet server restart is ridden out: queued rows are delivered when it is back (the
flush waits up to ``FLUSH_TIMEOUT_S``), and a write that fails at once because the
connection forgot the table (``TABLE_NOT_EXIST`` after the outage) reloads the table
and is tried again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import fluss
import pyarrow as pa
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.base import ConnectorError
from connectors.fluss.client import (
    FLUSH_TIMEOUT_S,
    RELOAD_TIMEOUT_S,
    FlussClient,
    is_table_missing,
    is_transient,
    log,
)
from connectors.fluss.settings import FlussSettings
from connectors.fluss.tables import TableLayout, open_table
from schemas import Record

Write = Callable[[], fluss.WriteResultHandle]
"""Queue one row or batch in a writer; called again when it has to be sent again."""

METADATA_RELOAD_S = 2.0
"""While writes wait for their acknowledgement, the table's metadata is reloaded this often."""


class TableOutput:
    """Write rows into one table through its own client; wait until they are acknowledged.

    Log tables get one Arrow batch per call (``write_arrow_batch``); PK tables one
    upsert per row. ``flush`` sends everything queued and awaits every handle. When
    the connection's writing side is dead (a writer that could not get its writer id
    while the tablet server was away closes it for good: "Memory limiter is closed"),
    the output reconnects and sends the failed writes again.
    """

    def __init__(self, settings: FlussSettings, layout: TableLayout) -> None:
        self.settings = settings
        self.layout = layout
        self.client, self.info, self._table = open_table(settings, layout)
        self._append: fluss.AppendWriter | None = None
        self._upsert: fluss.UpsertWriter | None = None
        self._writes: list[tuple[Write, fluss.WriteResultHandle]] = []
        self._database = layout.database

    def qualify(self, stream: str) -> str:
        """Return ``<database>.<stream>``: where a dead letter's source lives on this profile."""
        return f"{self._database}.{stream}"

    def write_records(self, records: Sequence[Record]) -> None:
        """Queue records (append or upsert) and wait until all are acknowledged."""
        self.write_rows([self.layout.record_row(r, self.qualify) for r in records])

    def write_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue rows (append or upsert) and wait until all are acknowledged."""
        if not rows:
            return
        if self.layout.table:
            for row in rows:
                self._queue(partial(self._upsert_row, row))
        else:
            self._queue(partial(self._append_batch, self.layout.batch(rows)))
        self.flush()

    def _upsert_row(self, row: dict[str, Any]) -> fluss.WriteResultHandle:
        return self._upserter().upsert(row)

    def _append_batch(self, batch: pa.RecordBatch) -> fluss.WriteResultHandle:
        return self._appender().write_arrow_batch(batch)

    def _appender(self) -> fluss.AppendWriter:
        if self._append is None:
            self._append = self._table.new_append().create_writer()
        return self._append

    def _upserter(self) -> fluss.UpsertWriter:
        if self._upsert is None:
            self._upsert = self._table.new_upsert().create_writer()
        return self._upsert

    def _queue(self, write: Write) -> None:
        """Queue one write; if the client forgot the table (after an outage), reload it and retry."""
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            try:
                self._writes.append((write, write()))
                return
            except fluss.FlussError as exc:
                if time.monotonic() > deadline:
                    raise ConnectorError(f"cannot write to {self.layout.qualified}: {exc}") from exc
                if is_table_missing(exc):
                    log.warning("%s: the client lost the table (%s); reloading", self.layout.qualified, exc)
                    self._table = self.client.table(self.layout.path, reload=True)
                elif _writing_closed(exc):
                    self._reconnect(exc)
                else:
                    raise ConnectorError(f"cannot write to {self.layout.qualified}: {exc}") from exc

    def _reconnect(self, why: BaseException) -> None:
        """Replace a connection whose writing side is closed; queued writes are sent again."""
        log.warning("%s: reconnecting (%s)", self.layout.qualified, why)
        self._append = self._upsert = None
        old, self.client = self.client, FlussClient(self.settings)
        old.close(timeout=1.0)
        self._table = self.client.table(self.layout.path, reload=True)

    def flush(self) -> None:
        """Send everything queued; raise ``ConnectorError`` unless every write was acknowledged.

        While the writes are not acknowledged the table's metadata is reloaded every
        ``METADATA_RELOAD_S``: after a tablet server outage the connection forgets
        its tables, and rows queued before the outage are sent only once it knows them
        again (docs/fluss-client.md §8). A write that fails for a transient reason (a
        writer created while the tablet server was away cannot get its writer id) is
        sent again, with every write queued after it, in order, so a key's last upsert
        stays last; a log may then hold a row twice (at-least-once, as after a crash).
        """
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            writes, self._writes = self._writes, []
            writers = [w for w in (self._append, self._upsert) if w is not None]
            if not writes and not writers:
                return
            left = max(1.0, deadline - time.monotonic())
            handles = [h for _, h in writes]
            try:
                results = self.client.run(
                    partial(_acknowledged, self.client.conn, self.layout.path, writers, handles), left
                )
            except ConnectorError as exc:
                raise ConnectorError(
                    f"{len(handles)} write(s) to {self.layout.qualified} not acknowledged: {exc}"
                ) from exc
            first = next((i for i, r in enumerate(results) if r is not None), None)
            if first is None:
                return
            error = results[first]
            assert error is not None  # noqa: S101 - found above
            retry = is_transient(error) or is_table_missing(error) or _writing_closed(error)
            if not retry or time.monotonic() > deadline:
                failed = sum(r is not None for r in results)
                raise ConnectorError(
                    f"{failed} of {len(handles)} write(s) to {self.layout.qualified} failed: {error}"
                )
            log.warning(
                "%s: %d write(s) from #%d on sent again: %s",
                self.layout.qualified, len(writes) - first, first, error,
            )
            time.sleep(0.2)
            self._reconnect(error)
            for write, _ in writes[first:]:
                self._queue(write)

    def close(self, *, flush: bool = True) -> None:
        """Flush what is left (unless told not to), release the writers, close the client."""
        try:
            if flush:
                self.flush()
        finally:
            self._append = self._upsert = None
            self._writes.clear()
            self.client.close()


def _writing_closed(exc: BaseException) -> bool:
    """Tell whether a write failed because the connection's writer side shut down for good."""
    return isinstance(exc, fluss.FlussError) and "closed" in str(exc).lower()


async def _acknowledged(
    conn: fluss.FlussConnection,
    path: fluss.TablePath,
    writers: list[fluss.AppendWriter | fluss.UpsertWriter],
    handles: list[fluss.WriteResultHandle],
) -> list[BaseException | None]:
    """Flush the writers and wait for every handle, reloading the table's metadata meanwhile."""

    async def send_and_wait() -> list[BaseException | None]:
        for w in writers:
            await w.flush()
        # All at once: awaiting thousands of handles one by one costs an event-loop
        # wake-up each (most of a PK table's upsert time).
        outcomes = await asyncio.gather(*(h.wait() for h in handles), return_exceptions=True)
        results: list[BaseException | None] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, fluss.FlussError):
                raise outcome  # not a write's failure: a bug or a cancellation
            results.append(outcome if isinstance(outcome, fluss.FlussError) else None)
        return results

    task = asyncio.ensure_future(send_and_wait())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=METADATA_RELOAD_S)
            if done:
                return task.result()
            try:  # the outage may not be over: any error here just means "not yet"
                await asyncio.wait_for(conn.get_table(path), METADATA_RELOAD_S)
            except (fluss.FlussError, TimeoutError) as exc:
                log.info("%s: writes not acknowledged yet (%s)", path, exc)
    finally:
        task.cancel()


class _FlussSinkPartition(StatelessSinkPartition[Record]):
    def __init__(self, settings: FlussSettings, layout: TableLayout) -> None:
        self._out = TableOutput(settings, layout)
        self._failed = False

    def write_batch(self, items: list[Record]) -> None:
        try:
            self._out.write_records(items)
        except BaseException:
            # Bytewax turns this into a panic whose message can be lost: say it here.
            self._failed = True
            log.exception("writing %d record(s) to %s failed", len(items), self._out.layout.qualified)
            raise

    def close(self) -> None:
        # After a failure the flow is going down: do not wait for the writes again.
        self._out.close(flush=not self._failed)


class FlussSink(DynamicSink[Record]):
    """A Bytewax sink into one stream's table (created on first use).

    Log records are appended as one Arrow batch per ``write_batch``; table records are
    upserts by primary key. Every batch is flushed and acknowledged before
    ``write_batch`` returns. Dead letters also fill the table's ``dlq_*`` columns.
    """

    def __init__(self, settings: FlussSettings, layout: TableLayout) -> None:
        self.settings = settings
        self.layout = layout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FlussSinkPartition:
        """Create the table if needed and open this worker's writer."""
        return _FlussSinkPartition(self.settings, self.layout)
