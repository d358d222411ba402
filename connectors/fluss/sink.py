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

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import fluss
import pyarrow as pa
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.base import ConnectorError
from connectors.fluss.client import FLUSH_TIMEOUT_S, RELOAD_TIMEOUT_S, FlussClient, is_table_missing, log
from connectors.fluss.tables import TableLayout, ensure_table
from schemas import Record
from tradeflow.settings import FlussSettings


class TableOutput:
    """Write rows into one table through one client, and wait until they are acknowledged.

    Log tables get one Arrow batch per call (``write_arrow_batch``); PK tables one
    upsert per row. ``flush`` sends everything queued and awaits every handle.
    """

    def __init__(self, client: FlussClient, layout: TableLayout) -> None:
        self.client = client
        self.layout = layout
        self.info = ensure_table(client, layout)
        self._table = client.table(layout.path)
        self._append: fluss.AppendWriter | None = None
        self._upsert: fluss.UpsertWriter | None = None
        self._handles: list[fluss.WriteResultHandle] = []
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

    def _queue(self, write: Callable[[], fluss.WriteResultHandle]) -> None:
        """Queue one write; if the client forgot the table (after an outage), reload it and retry."""
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            try:
                self._handles.append(write())
                return
            except fluss.FlussError as exc:
                if not is_table_missing(exc) or time.monotonic() > deadline:
                    raise ConnectorError(f"cannot write to {self.layout.qualified}: {exc}") from exc
                log.warning("%s: the client lost the table (%s); reloading it", self.layout.qualified, exc)
                self._table = self.client.table(self.layout.path, reload=True)

    def flush(self) -> None:
        """Send everything queued; raise ``ConnectorError`` unless every write was acknowledged."""
        handles, self._handles = self._handles, []
        if not handles and self._append is None and self._upsert is None:
            return
        writers = [w for w in (self._append, self._upsert) if w is not None]

        async def send_and_wait() -> list[BaseException | None]:
            for w in writers:
                await w.flush()
            results: list[BaseException | None] = []
            for h in handles:
                try:
                    await h.wait()
                    results.append(None)
                except fluss.FlussError as exc:
                    results.append(exc)
            return results

        try:
            results = self.client.run(send_and_wait, FLUSH_TIMEOUT_S)
        except ConnectorError as exc:
            raise ConnectorError(
                f"{len(handles)} write(s) to {self.layout.qualified} not acknowledged: {exc}"
            ) from exc
        failed = [r for r in results if r is not None]
        if failed:
            raise ConnectorError(
                f"{len(failed)} of {len(handles)} write(s) to {self.layout.qualified} failed: {failed[0]}"
            )

    def close(self) -> None:
        """Flush what is left and release the writers (the client stays open)."""
        try:
            self.flush()
        finally:
            self._append = self._upsert = None


class _FlussSinkPartition(StatelessSinkPartition[Record]):
    def __init__(self, settings: FlussSettings, layout: TableLayout) -> None:
        self._client = FlussClient(settings)
        try:
            self._out = TableOutput(self._client, layout)
        except BaseException:
            self._client.close()
            raise

    def write_batch(self, items: list[Record]) -> None:
        self._out.write_records(items)

    def close(self) -> None:
        try:
            self._out.close()
        finally:
            self._client.close()


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
