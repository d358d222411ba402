"""The ``fluss`` profile: every stream on an Apache Fluss cluster (see docs/fluss.md).

Log streams are log tables bucketed by the record key, read as Arrow batches; PK
tables are primary-key tables written with upserts, read as their changelog by
sources and by point lookups and key-value scans by readers. Sources are partitioned
Bytewax sources (one partition per bucket) whose snapshots are offsets; sinks flush
and wait for every write's acknowledgement per batch; a stream is closed by a close
record holding each bucket's end offset. ``CachedLookup`` (``connectors.fluss.lookup``)
looks dimension rows up by key with a TTL cache, for delta joins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.lazy import lazy_exports

# The names below load on first use (PEP 562), so that importing the package for its
# settings model alone (``connectors.fluss.settings``, composed by ``connectors.settings``)
# does not import the pyfluss client: the other profiles never load it.
_EXPORTS: dict[str, str] = {
    "FlussBackend": "connectors.fluss.backend",
    "backend_from_settings": "connectors.fluss.backend",
    "FlussClient": "connectors.fluss.client",
    "FlussTimeout": "connectors.fluss.client",
    "CachedLookup": "connectors.fluss.lookup",
    "CLOSED_TABLE": "connectors.fluss.markers",
    "Closed": "connectors.fluss.markers",
    "CloseRecords": "connectors.fluss.markers",
    "FlussSink": "connectors.fluss.sink",
    "TableOutput": "connectors.fluss.sink",
    "FlussSource": "connectors.fluss.source",
    "FlussReader": "connectors.fluss.streams",
    "FlussWriter": "connectors.fluss.streams",
    "TableLayout": "connectors.fluss.tables",
    "ensure_table": "connectors.fluss.tables",
}

if TYPE_CHECKING:
    from connectors.fluss.backend import FlussBackend, backend_from_settings
    from connectors.fluss.client import FlussClient, FlussTimeout
    from connectors.fluss.lookup import CachedLookup
    from connectors.fluss.markers import CLOSED_TABLE, Closed, CloseRecords
    from connectors.fluss.sink import FlussSink, TableOutput
    from connectors.fluss.source import FlussSource
    from connectors.fluss.streams import FlussReader, FlussWriter
    from connectors.fluss.tables import TableLayout, ensure_table


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = sorted(_EXPORTS)
