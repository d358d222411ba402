"""The ``fluss`` profile: every stream on an Apache Fluss cluster (see docs/fluss.md).

Log streams are log tables bucketed by the record key, read as Arrow batches; PK
tables are primary-key tables written with upserts, read as their changelog by
sources and by point lookups and key-value scans by readers. Sources are partitioned
Bytewax sources (one partition per bucket) whose snapshots are offsets; sinks flush
and wait for every write's acknowledgement per batch; a stream is closed by a close
record holding each bucket's end offset. ``CachedLookup`` (``connectors.fluss.lookup``)
looks dimension rows up by key with a TTL cache, for delta joins.
"""

from connectors.fluss.backend import FlussBackend, backend_from_settings
from connectors.fluss.client import FlussClient, FlussTimeout
from connectors.fluss.lookup import CachedLookup
from connectors.fluss.markers import CLOSED_TABLE, Closed, CloseRecords
from connectors.fluss.sink import FlussSink, TableOutput
from connectors.fluss.source import FlussSource
from connectors.fluss.streams import FlussReader, FlussWriter
from connectors.fluss.tables import TableLayout, ensure_table

__all__ = [
    "CLOSED_TABLE",
    "CachedLookup",
    "CloseRecords",
    "Closed",
    "FlussBackend",
    "FlussClient",
    "FlussReader",
    "FlussSink",
    "FlussSource",
    "FlussTimeout",
    "FlussWriter",
    "TableLayout",
    "TableOutput",
    "backend_from_settings",
    "ensure_table",
]
