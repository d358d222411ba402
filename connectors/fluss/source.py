"""A Bytewax source over one Fluss table: one source partition per bucket.

Each source partition owns a client and a scanner subscribed to its bucket: its
snapshot is the next offset to read, and a flow restarted with recovery subscribes
exactly there. ``next_batch`` never blocks: it polls with a zero timeout (the scanner
fetches in the background) and, when there is nothing, asks Bytewax to come back after
the poll interval (``next_awake``).

- Log tables are read as Arrow batches (``create_record_batch_log_scanner``, the key
  and payload columns only); row ``i`` of a batch has offset ``base_offset + i``.
- Primary-key tables are read as their changelog (``create_log_scanner``): ``+I`` and
  ``+U`` rows are emitted, each with its changelog offset; ``-U`` (the row before an
  update) and ``-D`` (deletes, which tradeflow never writes) are skipped, their
  offsets still advance the position. So a table reads like the local profile's: every
  upsert in order.

End of stream (bounded mode): a partition stops when its position is the end its
bucket had when the stream was closed and nothing was written since (see
``connectors.fluss.markers``). In follow mode it waits for more forever. A snapshotted
offset that is no longer in the log (retention, or records a crashed tablet server
lost) crashes the flow with a clear error rather than skipping data silently.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import fluss

from connectors.base import ConnectorError, OffsetPartition, PollingSource, SourceMessage
from connectors.fluss.client import FlussClient, FlussTimeout, is_out_of_range, is_transient, log
from connectors.fluss.markers import CloseRecords
from connectors.fluss.settings import FlussSettings
from connectors.fluss.tables import PAYLOAD, Row, TableLayout, batch_rows, changelog_rows, ensure_table

Pending = deque[tuple[int, SourceMessage | None]]
"""Fetched rows not handed to Bytewax yet: (offset, message, or None for a skipped row)."""


class _BucketSource(OffsetPartition):
    def __init__(self, source: FlussSource, bucket: int, resume_state: int | None) -> None:
        self._src = source
        self._layout = source.layout
        self._bucket = bucket
        self._pending: Pending = deque()
        self._done = False
        self._awake = None
        self._client = FlussClient(
            source.settings,
            max_poll_records=source.polling.batch_size,
            fetch_wait_ms=int(source.polling.interval.total_seconds() * 1000),
        )
        try:
            table = self._client.table(self._layout.path)
            self._table_id = table.get_table_info().table_id
            self._offset = self._start(resume_state)
            self._scanner = self._open_scanner(table)
        except BaseException:
            self._client.close()
            raise
        self._closes = CloseRecords(self._client, self._layout.database)

    def _start(self, resume_state: int | None) -> int:
        if resume_state is not None:
            return resume_state
        path, buckets = self._layout.path, [self._bucket]
        if self._src.from_end:
            return self._client.latest_offsets(path, buckets)[self._bucket]
        return self._client.earliest_offsets(path, buckets)[self._bucket]

    def _open_scanner(self, table: fluss.FlussTable) -> fluss.LogScanner:
        scan = table.new_scan().project_by_name([*self._layout.key_fields, PAYLOAD])
        if self._layout.table:
            scanner = self._client.run(scan.create_log_scanner)
        else:
            scanner = self._client.run(scan.create_record_batch_log_scanner)
        scanner.subscribe(self._bucket, self._offset)
        return scanner

    def next_batch(self) -> list[SourceMessage]:
        if self._done:
            raise StopIteration
        if not self._pending:
            self._fetch()
        out: list[SourceMessage] = []
        moved = False
        while self._pending and len(out) < self._src.polling.batch_size:
            offset, msg = self._pending.popleft()
            self._offset = offset + 1
            moved = True
            if msg is not None:
                out.append(msg)
        if moved:
            self._more()
            return out
        if not self._src.follow and self._at_closed_end():
            self._done = True
            raise StopIteration
        self._rest(self._src.polling)
        return out

    def _fetch(self) -> None:
        where = f"{self._layout.qualified}[{self._bucket}]"
        try:
            if self._layout.table:
                self._take_changelog(self._client.run(lambda: self._scanner.poll(0)))
            else:
                self._take_batches(self._client.run(lambda: self._scanner.poll_record_batch(0)))
        except (fluss.FlussError, FlussTimeout) as exc:
            if is_out_of_range(exc):
                raise ConnectorError(
                    f"offset {self._offset} of {where} is no longer in the log (retention, or "
                    f"records a crashed tablet server lost): {exc}"
                ) from exc
            if not is_transient(exc):
                raise ConnectorError(f"reading {where}: {exc}") from exc
            log.warning("reading %s (retrying): %s", where, exc)

    def _take_batches(self, batches: list[fluss.RecordBatch]) -> None:
        for rb in batches:
            self._check_bucket(rb.bucket.bucket_id)
            self._queue(batch_rows(self._layout, rb.batch, rb.base_offset))

    def _take_changelog(self, records: fluss.ScanRecords) -> None:
        for tb, recs in records.items():
            self._check_bucket(tb.bucket_id)
            self._queue(changelog_rows(self._layout, recs))

    def _queue(self, rows: list[Row]) -> None:
        name, bucket = self._layout.name, self._bucket
        for offset, key, value in rows:
            if offset < self._offset:
                continue  # already emitted (never expected: subscriptions start at the position)
            msg = None if value is None else SourceMessage(name, bucket, offset, key, value)
            self._pending.append((offset, msg))

    def _check_bucket(self, bucket: int) -> None:
        if bucket != self._bucket:
            raise ConnectorError(
                f"{self._layout.qualified}: the scanner of bucket {self._bucket} got bucket {bucket}"
            )

    def _at_closed_end(self) -> bool:
        """Tell whether the stream was closed exactly here and nothing was written since."""
        try:
            closed = self._closes.get(self._layout.name, self._table_id)
            if closed is None or closed.ends.get(self._bucket) != self._offset:
                return False
            latest = self._client.latest_offsets(self._layout.path, [self._bucket])[self._bucket]
        except (fluss.FlussError, ConnectorError) as exc:
            log.debug("%s: end of stream unknown for now: %s", self._layout.qualified, exc)
            return False
        return latest == self._offset

    def close(self) -> None:
        del self._scanner
        self._client.close()


@dataclass(eq=False)
class FlussSource(PollingSource):
    """A Bytewax source over one stream's table: one partition per bucket.

    Partition names are ``"<bucket>-<database>.<table>"``, so the recovery store says
    which table each snapshotted offset belongs to. The table is created on first
    use. Snapshots are the next offset to read; without one a partition starts at its
    bucket's earliest offset, or with ``from_end`` at its latest. With ``follow`` the
    source waits for more rows forever; without it, each partition stops at the end
    recorded when the stream was closed. Records are emitted as ``SourceMessage`` with
    the stream's physical name, like the other profiles.
    """

    settings: FlussSettings
    layout: TableLayout

    def list_parts(self) -> list[str]:
        """Create the table if needed; return one part per bucket."""
        client = FlussClient(self.settings)
        try:
            info = ensure_table(client, self.layout)
        finally:
            client.close()
        return [f"{b}-{self.layout.qualified}" for b in range(info.num_buckets)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _BucketSource:
        """Open a scanner on one bucket, at its snapshot if there is one."""
        idx, _, qualified = for_part.partition("-")
        if qualified != self.layout.qualified:
            raise ConnectorError(
                f"step {step_id}: partition {for_part!r} is not of table {self.layout.qualified!r}"
            )
        log.debug("step %s: %s from %s", step_id, for_part, resume_state)
        started = time.monotonic()
        part = _BucketSource(self, int(idx), resume_state)
        log.debug("step %s: %s ready in %.2fs", step_id, for_part, time.monotonic() - started)
        return part
