"""Plain writer and reader of one Fluss table, for feeds, tools and tests.

Reading a PK table's latest rows does not replay its changelog (as the Kafka profile
must): ``latest(key)`` is a point lookup on the tablet server's key-value store and
``scan_latest()`` a limit scan of it, so both see exactly the current row per key.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import fluss

from connectors.base import ConnectorError, StoredRecord, StreamReader, StreamWriter
from connectors.fluss.client import (
    RPC_TIMEOUT_S,
    FlussClient,
    FlussTimeout,
    is_table_missing,
    is_transient,
)
from connectors.fluss.markers import CloseRecords
from connectors.fluss.settings import FlussSettings
from connectors.fluss.sink import TableOutput
from connectors.fluss.tables import (
    PAYLOAD,
    Row,
    TableLayout,
    batch_rows,
    changelog_rows,
    open_table,
)
from schemas import Record

LOOKUP_TIMEOUT_S = 5.0
"""A point lookup not answered within this long reloads the table and is tried again
(after a tablet server outage a connection's lookups hang until then)."""

LOOKUP_DEADLINE_S = 120.0
"""A point lookup gives up after this long in total."""

SCAN_LIMIT = 2**31 - 1
"""Row limit of a PK table's limit scan (``scan_latest``): all of them."""


def lookup_row(
    client: FlussClient, layout: TableLayout, lookuper: fluss.Lookuper, key: list[str]
) -> dict[str, object] | None:
    """Look a primary key up; on a hung or stale connection reload the table and retry."""
    deadline = time.monotonic() + LOOKUP_DEADLINE_S
    while True:
        try:
            row: dict[str, object] | None = client.run(lambda: lookuper.lookup(key), LOOKUP_TIMEOUT_S)
            return row
        except (fluss.FlussError, FlussTimeout) as exc:
            retry = is_transient(exc) or is_table_missing(exc)
            if not retry or time.monotonic() > deadline:
                raise ConnectorError(f"looking up {key} in {layout.qualified}: {exc}") from exc
            client.table(layout.path, reload=True)


class FlussWriter(StreamWriter):
    """Append (log) or upsert (PK table) records into one table; wait for the acks per call."""

    def __init__(self, settings: FlussSettings, layout: TableLayout) -> None:
        self.layout = layout
        self._out = TableOutput(settings, layout)

    def write(self, records: Sequence[Record]) -> None:
        """Append or upsert records as one batch; wait until every one is acknowledged."""
        self._out.write_records(records)

    def write_raw(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Write raw (key, payload) pairs without validation (``ts`` and ``_v`` left null).

        A key of a multi-field key is ``a|b``; a None key is written as "". Payloads
        must be UTF-8 (the column is STRING).
        """
        self._out.write_rows([self.layout.raw_row(key, value) for key, value in items])

    def close_stream(self) -> None:
        """Record the end offset of every bucket as the stream's close record.

        Everything this writer wrote is acknowledged first, so it is all before the
        recorded ends. Bounded sources stop there; see ``connectors.fluss.markers``.
        """
        self._out.flush()
        client = self._out.client
        ends = client.latest_offsets(self.layout.path, list(range(self._out.info.num_buckets)))
        CloseRecords(client, self.layout.database).mark(self.layout.name, self._out.info.table_id, ends)

    def close(self) -> None:
        """Flush, release the writer and close the connection."""
        self._out.close()


class FlussReader(StreamReader):
    """Read one table by bucket and offset, or (PK tables) the latest row per key."""

    def __init__(self, settings: FlussSettings, layout: TableLayout) -> None:
        self.layout = layout
        self._client, self.info, self._table = open_table(settings, layout)
        self._scanner: fluss.LogScanner | None = None
        self._scanned: set[int] = set()  # buckets the current scanner has subscribed to
        self._lookuper: fluss.Lookuper | None = None

    @property
    def partitions(self) -> int:
        """Return the number of buckets."""
        return int(self.info.num_buckets)

    def _buckets(self) -> list[int]:
        return list(range(self.partitions))

    def read(self, partition: int, offset: int, limit: int) -> list[StoredRecord]:
        """Return up to ``limit`` records of a bucket from ``offset`` on.

        A PK table's changelog reads as its ``+I``/``+U`` rows, so offsets may have gaps
        (the skipped ``-U`` rows); an empty list means nothing more up to the bucket's
        end as it was when called.
        """
        client, path = self._client, self.layout.path
        end = client.latest_offsets(path, [partition])[partition]
        position = max(offset, client.earliest_offsets(path, [partition])[partition])
        if position >= end or limit <= 0:
            return []
        if partition in self._scanned:
            # A scanner that already read this bucket does not deliver it again when it
            # subscribes anew at a later offset while the bucket is being written (a
            # follow or a second scan pass stalled there): read it with a fresh scanner.
            self._scanner, self._scanned = None, set()
        scanner = self._scan()
        scanner.subscribe(partition, position)
        self._scanned.add(partition)
        out: list[StoredRecord] = []
        idle_since = time.monotonic()
        try:
            while position < end and len(out) < limit:
                rows = self._poll(scanner)
                if not rows:
                    if time.monotonic() - idle_since > RPC_TIMEOUT_S:
                        raise ConnectorError(
                            f"reading {self.layout.qualified}[{partition}] stalled at offset "
                            f"{position} (end {end})"
                        )
                    continue
                idle_since = time.monotonic()
                for off, key, value in rows:
                    if off < position or off >= end or len(out) >= limit:
                        continue
                    position = off + 1
                    if value is not None:
                        out.append(StoredRecord(partition, off, key, value))
        finally:
            scanner.unsubscribe(partition)
        return out

    def _scan(self) -> fluss.LogScanner:
        if self._scanner is None:
            scan = self._table.new_scan().project_by_name([*self.layout.key_fields, PAYLOAD])
            make = scan.create_log_scanner if self.layout.table else scan.create_record_batch_log_scanner
            self._scanner = self._client.run(make)
        return self._scanner

    def _poll(self, scanner: fluss.LogScanner) -> list[Row]:
        try:
            if self.layout.table:
                records = self._client.run(lambda: scanner.poll(200))
                return [r for _, recs in records.items() for r in changelog_rows(self.layout, recs)]
            batches = self._client.run(lambda: scanner.poll_record_batch(200))
        except (fluss.FlussError, FlussTimeout) as exc:
            if is_transient(exc):
                return []
            raise ConnectorError(f"reading {self.layout.qualified}: {exc}") from exc
        return [r for rb in batches for r in batch_rows(self.layout, rb.batch, rb.base_offset)]

    def end_offsets(self) -> dict[int, int]:
        """Return the latest offset (next to be written) per bucket."""
        return self._client.latest_offsets(self.layout.path, self._buckets())

    def _require_table(self, what: str) -> None:
        if not self.layout.table:
            raise ConnectorError(f"{what}: {self.layout.qualified} is a log table, not a primary-key table")

    def latest(self, key: str) -> bytes | None:
        """Return the current payload of a key of a PK table (a point lookup)."""
        self._require_table("latest")
        if self._lookuper is None:
            self._lookuper = self._table.new_lookup().create_lookuper()
        row = lookup_row(self._client, self.layout, self._lookuper, self.layout.split_key(key))
        if row is None:
            return None
        payload = row.get(PAYLOAD)
        return payload.encode() if isinstance(payload, str) else b""

    def scan_latest(self) -> Iterable[tuple[str, bytes]]:
        """Yield (key, current payload) for every key of a PK table, ordered by key.

        A limit scan of each bucket's key-value store: the current rows, however long
        the changelog is (or however much of it retention already removed).
        """
        self._require_table("scan_latest")
        table_id = self.info.table_id
        latest: dict[str, bytes] = {}
        for bucket in self._buckets():
            scanner = (
                self._table.new_scan()
                .project_by_name([*self.layout.key_fields, PAYLOAD])
                .limit(SCAN_LIMIT)
                .create_bucket_batch_scanner(fluss.TableBucket(table_id, bucket))
            )
            rows = self._client.run(scanner.to_arrow).to_pylist()
            del scanner
            for row in rows:
                payload = row.get(PAYLOAD)
                latest[self.layout.key_of(row)] = payload.encode() if isinstance(payload, str) else b""
        return sorted(latest.items())

    def is_closed(self) -> bool:
        """Tell whether the stream was closed and nothing was written since."""
        closed = CloseRecords(self._client, self.layout.database).get(self.layout.name, self.info.table_id)
        return closed is not None and closed.ends == self.end_offsets()

    def close(self) -> None:
        """Release the scanner and lookuper and close the connection."""
        self._scanner = None
        self._lookuper = None
        self._client.close()
