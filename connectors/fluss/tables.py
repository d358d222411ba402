"""How a stream maps to a Fluss table: columns, keys, buckets; tables created on first use.

Every table has the same shape (see docs/fluss.md for why JSON and not one typed
column per model field):

==================  =====================  ==============================================
column              type                   content
==================  =====================  ==============================================
<key fields>        STRING                 the model's key fields (``Record.key_fields``);
                                           the primary key of a PK table, the bucket key
                                           of a log table
``ts``              TIMESTAMP_LTZ(3)       the record's event time (null for raw payloads)
``_v``              INT                    the schema version of the payload (null: raw)
``payload``         STRING                 the project's one JSON encoding (``schemas.encode``)
==================  =====================  ==============================================

``dead_letters`` also carries where the bad record came from and why, as typed
columns (the Kafka profile's DLQ headers): ``dlq_source_table``, ``dlq_source_bucket``,
``dlq_source_offset``, ``dlq_reason``, ``dlq_job``.

A log stream is a log table with ``buckets`` buckets, bucketed by its key (rows of one
key stay in order in one bucket). A PK table has one bucket, like its single partition
on the local and Kafka profiles: its changelog is then one ordered sequence, which Job
B's config offsets rely on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import fluss
import pyarrow as pa

from connectors.base import ConnectorError
from connectors.fluss.client import RPC_TIMEOUT_S, FlussClient, FlussTimeout, log
from connectors.fluss.settings import FlussSettings
from schemas import SCHEMA_VERSION, DeadLetter, Kind, Record, StreamSpec, encode

T = TypeVar("T")

TS = "ts"
VERSION = "_v"
PAYLOAD = "payload"
DLQ_SOURCE_TABLE = "dlq_source_table"
DLQ_SOURCE_BUCKET = "dlq_source_bucket"
DLQ_SOURCE_OFFSET = "dlq_source_offset"
DLQ_REASON = "dlq_reason"
DLQ_JOB = "dlq_job"

KEY_SEPARATOR = "|"
"""``Record.key()`` joins the key fields with this; a raw key is split on it."""

READY_TIMEOUT_S = 120.0
"""How long setting a table up waits for the cluster (a tablet server restart takes ~15 s)."""

FRESH_TABLE_READY_S = 20.0
"""How long a table this process just created may go without a bucket leader before it
is taken as a creation the coordinator missed (see ``ensure_table``)."""
LOST_TABLE_RETRIES = 2
"""How many times such a table is dropped and created again."""

TABLE_BUCKETS = 1
"""Buckets of a PK table (one ordered changelog, as on the other profiles)."""

_DLQ_FIELDS = [
    pa.field(DLQ_SOURCE_TABLE, pa.string()),
    pa.field(DLQ_SOURCE_BUCKET, pa.int32()),
    pa.field(DLQ_SOURCE_OFFSET, pa.int64()),
    pa.field(DLQ_REASON, pa.string()),
    pa.field(DLQ_JOB, pa.string()),
]
_TS_TYPE = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class TableLayout:
    """The Fluss table of one stream and how records become rows."""

    database: str
    name: str
    """The stream's physical name, also the table's name."""
    kind: Kind
    key_fields: tuple[str, ...]
    buckets: int
    """Buckets of a log table when tradeflow creates it (an existing table keeps its own)."""
    dead_letters: bool = False

    @classmethod
    def of(cls, spec: StreamSpec, name: str, *, database: str, buckets: int) -> TableLayout:
        """Return the layout of a stream (``name`` is its physical name)."""
        keys = spec.key_fields
        clash = {TS, VERSION, PAYLOAD} & set(keys)
        if not keys or clash:
            raise ConnectorError(f"stream {spec.name}: key fields {keys} cannot be Fluss columns")
        return cls(
            database,
            name,
            spec.kind,
            keys,
            TABLE_BUCKETS if spec.kind is Kind.TABLE else buckets,
            dead_letters=spec.model is DeadLetter,
        )

    @property
    def path(self) -> fluss.TablePath:
        """Return the table's path."""
        return fluss.TablePath(self.database, self.name)

    @property
    def qualified(self) -> str:
        """Return ``<database>.<table>``."""
        return f"{self.database}.{self.name}"

    @property
    def table(self) -> bool:
        """Tell whether the stream is a PK table (upserts, changelog) rather than a log."""
        return self.kind is Kind.TABLE

    @property
    def arrow_schema(self) -> pa.Schema:
        """Return the table's columns."""
        fields = [pa.field(k, pa.string()) for k in self.key_fields]
        fields += [
            pa.field(TS, _TS_TYPE),
            pa.field(VERSION, pa.int32()),
            pa.field(PAYLOAD, pa.string()),
        ]
        if self.dead_letters:
            fields += _DLQ_FIELDS
        return pa.schema(fields)

    def descriptor(self) -> fluss.TableDescriptor:
        """Return what ``create_table`` needs: PK table, or log table bucketed by key."""
        comment = f"tradeflow stream {self.name} ({self.kind.value}); payload is schemas.encode JSON"
        if self.table:
            schema = fluss.Schema(self.arrow_schema, primary_keys=list(self.key_fields))
            return fluss.TableDescriptor(schema, bucket_count=self.buckets, comment=comment)
        return fluss.TableDescriptor(
            fluss.Schema(self.arrow_schema),
            bucket_count=self.buckets,
            bucket_keys=list(self.key_fields),
            comment=comment,
        )

    # ------------------------------------------------------------------ rows

    def split_key(self, key: str | None) -> list[str]:
        """Return the key columns of a raw key (``a|b`` for two key fields; None -> "")."""
        n = len(self.key_fields)
        parts = (key or "").split(KEY_SEPARATOR, n - 1)
        return parts + [""] * (n - len(parts))

    def key_of(self, row: dict[str, Any]) -> str:
        """Return the record key (``Record.key()``) of a row read back."""
        return KEY_SEPARATOR.join(str(row[k]) for k in self.key_fields)

    def record_row(self, record: Record, qualify: Callable[[str], str] | None = None) -> dict[str, Any]:
        """Return the row of a record (``qualify`` names a dead letter's source table)."""
        row: dict[str, Any] = {k: str(getattr(record, k)) for k in self.key_fields}
        row[TS] = getattr(record, TS, None)
        row[VERSION] = SCHEMA_VERSION
        row[PAYLOAD] = encode(record).decode()
        if self.dead_letters and isinstance(record, DeadLetter):
            row[DLQ_SOURCE_TABLE] = qualify(record.source_stream) if qualify else record.source_stream
            row[DLQ_SOURCE_BUCKET] = record.partition
            row[DLQ_SOURCE_OFFSET] = record.offset
            row[DLQ_REASON] = record.reason
            row[DLQ_JOB] = record.job or None
        return row

    def raw_row(self, key: str | None, value: bytes) -> dict[str, Any]:
        """Return the row of a raw (key, payload) pair: no event time, no schema version."""
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConnectorError(
                f"{self.qualified}: payloads are STRING columns and must be UTF-8: {exc}"
            ) from None
        row: dict[str, Any] = dict(zip(self.key_fields, self.split_key(key), strict=True))
        row.update({TS: None, VERSION: None, PAYLOAD: text})
        return row

    def batch(self, rows: Sequence[dict[str, Any]]) -> pa.RecordBatch:
        """Return rows as one Arrow batch with the table's schema."""
        schema = self.arrow_schema
        columns = [[row.get(f.name) for row in rows] for f in schema]
        return pa.RecordBatch.from_arrays(
            [pa.array(col, f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
        )


def ensure_database(client: FlussClient, database: str) -> None:
    """Create the database unless it exists."""
    try:
        client.run(
            lambda: client.admin.create_database(
                database, fluss.DatabaseDescriptor(comment="tradeflow streams"), ignore_if_exists=True
            )
        )
    except fluss.FlussError as exc:
        # Same race as create_table: a concurrent creator may win between check and create.
        if not client.run(lambda: client.admin.database_exists(database)):
            raise ConnectorError(f"cannot create Fluss database {database!r}: {exc}") from exc


def ensure_table(client: FlussClient, layout: TableLayout) -> fluss.TableInfo:
    """Create the stream's table unless it exists; return its info once every bucket answers.

    Idempotent and safe with concurrent creators (``ignore_if_exists``). A table that
    already exists keeps its bucket count; one whose columns or kind do not match the
    layout is refused with a clear error (tradeflow never alters a table). Errors of
    the cluster (e.g. while the tablet server restarts) are retried for up to
    ``READY_TIMEOUT_S``.
    """

    def create() -> tuple[fluss.TableInfo, bool]:
        info, created = _create_or_get(client, layout)
        check_layout(layout, info)
        return info, created

    return create_led(client, layout.path, create, lambda info: int(info.num_buckets))


def create_led(
    client: FlussClient, path: fluss.TablePath, create: Callable[[], tuple[T, bool]],
    buckets: Callable[[T], int],
) -> T:
    """Run ``create``, then wait until every bucket of the table has a leader.

    ``create`` returns what it made and whether this call created the table; that is
    returned in the end. Fluss 0.9.1 can miss the creation of a table (apache/fluss#1018, fixed by #2710
    after 0.9.1): the coordinator never assigns a leader to any bucket. A table this
    process just created, that nothing could write to yet, is safe to drop and create
    again: that is done up to ``LOST_TABLE_RETRIES`` times.
    """
    for attempt in range(1, LOST_TABLE_RETRIES + 2):
        made, created = create()
        if not created or attempt > LOST_TABLE_RETRIES:
            break
        try:
            wait_ready(client, path, buckets(made), timeout_s=FRESH_TABLE_READY_S)
            return made
        except ConnectorError as exc:
            log.warning("Fluss table %s got no bucket leader in %.0f s (a creation the "
                        "coordinator missed); dropping and creating it again (%d/%d): %s",
                        path, FRESH_TABLE_READY_S, attempt, LOST_TABLE_RETRIES, exc)
            client.run(lambda: client.admin.drop_table(path, ignore_if_not_exists=True))
    wait_ready(client, path, buckets(made))
    return made


def open_table(
    settings: FlussSettings, layout: TableLayout
) -> tuple[FlussClient, fluss.TableInfo, fluss.FlussTable]:
    """Connect, ensure the stream's table (``ensure_table``); return the client, its info and handle.

    The client is closed again when the table cannot be set up.
    """
    client = FlussClient(settings)
    try:
        return client, ensure_table(client, layout), client.table(layout.path)
    except BaseException:
        client.close()
        raise


def _create_or_get(client: FlussClient, layout: TableLayout) -> tuple[fluss.TableInfo, bool]:
    """Create the table unless it exists; return its info and whether this call created it."""
    path = layout.path
    deadline = time.monotonic() + READY_TIMEOUT_S
    created = False
    while True:
        try:
            if not client.run(lambda: client.admin.table_exists(path)):
                ensure_database(client, layout.database)
                create_table(client, path, layout.descriptor())
                created = True
                log.info(
                    "created Fluss %s table %s (%d buckets)",
                    "primary-key" if layout.table else "log",
                    layout.qualified,
                    layout.buckets,
                )
            return client.run(lambda: client.admin.get_table_info(path)), created
        except (fluss.FlussError, FlussTimeout) as exc:
            if time.monotonic() > deadline:
                raise ConnectorError(f"cannot set up Fluss table {layout.qualified}: {exc}") from exc
            log.info("setting up Fluss table %s (retrying): %s", layout.qualified, exc)
            time.sleep(0.25)


def create_table(client: FlussClient, path: fluss.TablePath, descriptor: fluss.TableDescriptor) -> None:
    """Create a table unless it exists, also when another process creates it at the same time.

    ``ignore_if_exists`` does not cover a race: Fluss 0.9.1 answers one of two
    concurrent creators with "Fail to register schema ... NodeExists". A failed create
    after which the table exists counts as success.
    """
    try:
        client.run(lambda: client.admin.create_table(path, descriptor, ignore_if_exists=True))
    except fluss.FlussError as exc:
        deadline = time.monotonic() + RPC_TIMEOUT_S
        while not client.run(lambda: client.admin.table_exists(path)):
            if time.monotonic() > deadline:
                raise ConnectorError(f"cannot create Fluss table {path}: {exc}") from exc
            time.sleep(0.1)
        log.debug("Fluss table %s was created by someone else meanwhile (%s)", path, exc)


def check_layout(layout: TableLayout, info: fluss.TableInfo) -> None:
    """Refuse a table whose columns or kind are not what the layout reads and writes."""
    want = [f.name for f in layout.arrow_schema]
    got = info.get_column_names()
    if got != want or info.has_primary_key() != layout.table:
        kind = "primary-key" if info.has_primary_key() else "log"
        raise ConnectorError(
            f"Fluss table {layout.qualified} exists as a {kind} table with columns {got}; "
            f"tradeflow expects a {'primary-key' if layout.table else 'log'} table with {want}"
        )
    if layout.table and info.get_primary_keys() != list(layout.key_fields):
        raise ConnectorError(
            f"Fluss table {layout.qualified} has primary key {info.get_primary_keys()}, "
            f"expected {list(layout.key_fields)}"
        )


def wait_ready(
    client: FlussClient, path: fluss.TablePath, buckets: int, *, timeout_s: float = 0.0
) -> None:
    """Wait up to ``timeout_s`` (default ``READY_TIMEOUT_S``) until every bucket answers.

    A fresh table is "not leader" for a moment; a restarting tablet server answers nothing.
    """
    deadline = time.monotonic() + (timeout_s or READY_TIMEOUT_S)
    while True:
        try:
            client.earliest_offsets(path, list(range(buckets)))
            return
        except (fluss.FlussError, FlussTimeout) as exc:
            if time.monotonic() > deadline:
                raise ConnectorError(f"Fluss table {path} has no leader for every bucket: {exc}") from exc
            time.sleep(0.1)



Row = tuple[int, str | None, bytes | None]
"""A row read back: (offset, record key, payload); payload None for a changelog row that
is not a record (``-U``, ``-D``)."""

EMITTED_CHANGES = frozenset({"+I", "+U", "+A"})
"""Changelog kinds that carry a record; ``-U`` (the row before an update) and ``-D``
(a delete, which tradeflow never writes) do not."""


def batch_rows(layout: TableLayout, data: pa.RecordBatch, base_offset: int) -> list[Row]:
    """Return the rows of an Arrow batch of a log table (row ``i`` at ``base_offset + i``)."""
    columns = [data.column(k).to_pylist() for k in layout.key_fields]
    if len(columns) == 1:
        keys: list[str | None] = columns[0]
    else:
        keys = [KEY_SEPARATOR.join(map(str, parts)) for parts in zip(*columns, strict=True)]
    payloads = data.column(PAYLOAD).cast(pa.binary()).to_pylist()
    return [
        (base_offset + i, key, value or b"")
        for i, (key, value) in enumerate(zip(keys, payloads, strict=True))
    ]


def changelog_rows(layout: TableLayout, records: Sequence[fluss.ScanRecord]) -> list[Row]:
    """Return the rows of a primary-key table's changelog records (one bucket)."""
    out: list[Row] = []
    for rec in records:
        if rec.change_type.short_string() not in EMITTED_CHANGES:
            out.append((rec.offset, None, None))
            continue
        row = rec.row
        payload = row.get(PAYLOAD)
        out.append((rec.offset, layout.key_of(row), payload.encode() if isinstance(payload, str) else b""))
    return out
