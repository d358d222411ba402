"""End of stream on Fluss: a close record per stream, with the end offset of every bucket.

``StreamWriter.close_stream()`` flushes the writer, waits for every record to be
acknowledged, reads the latest offset of every bucket, and upserts one row into the
database's primary-key table ``_tradeflow_closed``::

    table_name STRING (PK) | table_id BIGINT | ends STRING (JSON {bucket: offset})
    | closed_at TIMESTAMP_LTZ(3)

A bounded source partition stops when its position equals the bucket's closed end
*and* the bucket's latest offset is still that end (nothing was written after the
close). Its snapshot is then that end, so a bounded run resumed from it stops at
once. Records written after a close (the stream was written again) move the latest
offset past the closed end: the source reads them and waits for the next close,
which records the new ends. ``table_id`` ties the record to one incarnation of the
table: a table dropped and created again is not closed by an old record.

Why not a marker row per bucket inside the stream, as on Kafka: see docs/fluss.md
("End of stream"). In short, a marker row in a primary-key table would be a key in
the table that lookups and SQL readers see, and would make the changelog end on a
record the flows never receive (``TableGate`` waits for the last offset).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import fluss
import pyarrow as pa

from connectors.base import ConnectorError
from connectors.fluss.client import FLUSH_TIMEOUT_S, RELOAD_TIMEOUT_S, FlussClient, is_table_missing
from connectors.fluss.tables import create_led, create_table, ensure_database

CLOSED_TABLE = "_tradeflow_closed"
"""The close records of a database's streams (a name no stream can clash with: streams
are tradeflow's own names)."""

_SCHEMA = pa.schema(
    [
        pa.field("table_name", pa.string()),
        pa.field("table_id", pa.int64()),
        pa.field("ends", pa.string()),
        pa.field("closed_at", pa.timestamp("ms", tz="UTC")),
    ]
)
_SCAN_LIMIT = 100_000
"""Rows of a close-records table read at most (one row per stream of the database)."""


@dataclass(frozen=True, slots=True)
class Closed:
    """A stream's close record: the table it closed and each bucket's end offset."""

    table_id: int
    ends: dict[int, int]
    closed_at: datetime | None


class CloseRecords:
    """Read and write the close records of one database (``_tradeflow_closed``)."""

    def __init__(self, client: FlussClient, database: str) -> None:
        self._client = client
        self.path = fluss.TablePath(database, CLOSED_TABLE)
        self._table: fluss.FlussTable | None = None

    def _ensure(self) -> fluss.FlussTable:
        if self._table is None:
            client = self._client

            def create() -> tuple[None, bool]:
                if client.run(lambda: client.admin.table_exists(self.path)):
                    return None, False
                ensure_database(client, self.path.database_name)
                descriptor = fluss.TableDescriptor(
                    fluss.Schema(_SCHEMA, primary_keys=["table_name"]),
                    bucket_count=1,
                    comment="tradeflow: end offsets of closed streams",
                )
                create_table(client, self.path, descriptor)
                return None, True

            create_led(client, self.path, create, lambda _: 1)
            self._table = client.table(self.path)
        return self._table

    def mark(self, table_name: str, table_id: int, ends: dict[int, int]) -> None:
        """Record that ``table_name`` (incarnation ``table_id``) is closed at ``ends``."""
        row = {
            "table_name": table_name,
            "table_id": table_id,
            "ends": json.dumps({str(b): o for b, o in sorted(ends.items())}),
            "closed_at": datetime.now(UTC),
        }
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            writer = self._ensure().new_upsert().create_writer()
            try:
                self._client.run(partial(_upsert_one, writer, row), FLUSH_TIMEOUT_S)
                return
            except fluss.FlussError as exc:
                if not is_table_missing(exc) or time.monotonic() > deadline:
                    raise ConnectorError(f"cannot close {table_name}: {exc}") from exc
                self._table = self._client.table(self.path, reload=True)
            finally:
                del writer

    def get(self, table_name: str, table_id: int) -> Closed | None:
        """Return the close record of a table (None if never closed, or closed as another table).

        Reads the whole (tiny) table with a limit scan: one RPC, ~1 ms, unlike a point
        lookup, which pyfluss 1.0.0 holds for up to its 100 ms batching window. Does not
        create the table: until a writer closes a stream of the database, nothing is closed.
        """
        if self._table is None and not self._client.run(
            lambda: self._client.admin.table_exists(self.path)
        ):
            return None
        table = self._ensure()
        tid = table.get_table_info().table_id
        scanner = table.new_scan().limit(_SCAN_LIMIT).create_bucket_batch_scanner(fluss.TableBucket(tid, 0))
        rows: pa.Table = self._client.run(scanner.to_arrow)
        del scanner
        for row in rows.to_pylist():
            if row["table_name"] == table_name:
                if row["table_id"] != table_id:
                    return None
                ends = {int(b): int(o) for b, o in json.loads(row["ends"]).items()}
                return Closed(table_id, ends, row["closed_at"])
        return None


async def _upsert_one(writer: fluss.UpsertWriter, row: dict[str, Any]) -> None:
    handle = writer.upsert(row)
    await writer.flush()
    await handle.wait()
