"""The ``fluss`` profile's backend: log streams as log tables, PK tables as primary-key tables."""

from __future__ import annotations

from connectors.base import Backend, Polling
from connectors.fluss.settings import FlussSettings
from connectors.fluss.sink import FlussSink
from connectors.fluss.source import FlussSource
from connectors.fluss.streams import FlussReader, FlussWriter
from connectors.fluss.tables import TableLayout
from connectors.settings import Settings
from schemas import StreamSpec


class FlussBackend(Backend):
    """Connectors of the ``fluss`` profile.

    A log stream is the log table ``<database>.<name>`` with ``buckets`` buckets,
    bucketed by the record key; a PK table is a primary-key table with one bucket
    (like the local and Kafka profiles' tables). Tables are created on first use.
    Building a backend, a source or a sink touches no server; sources and sinks
    connect when the flow runs, writers and readers when they are created.
    """

    def __init__(self, fluss: FlussSettings, *, polling: Polling = Polling()) -> None:
        self.fluss = fluss
        self.polling = polling

    def layout(self, spec: StreamSpec, name: str) -> TableLayout:
        """Return the table a stream maps to (path, kind, key columns, buckets)."""
        return TableLayout.of(spec, name, database=self.fluss.database, buckets=self.fluss.buckets)

    def source(
        self, spec: StreamSpec, name: str, *, follow: bool, from_end: bool = False
    ) -> FlussSource:
        """Return a source over the stream's table (its changelog for a PK table)."""
        layout = self.layout(spec, name)
        return FlussSource(self.fluss, layout, follow=follow, polling=self.polling, from_end=from_end)

    def sink(self, spec: StreamSpec, name: str) -> FlussSink:
        """Return a sink into the stream's table (appends, or upserts for a PK table)."""
        return FlussSink(self.fluss, self.layout(spec, name))

    def writer(self, spec: StreamSpec, name: str) -> FlussWriter:
        """Return a plain writer (creates the table if needed)."""
        return FlussWriter(self.fluss, self.layout(spec, name))

    def reader(self, spec: StreamSpec, name: str) -> FlussReader:
        """Return a plain reader (creates the table if needed, like the local profile)."""
        return FlussReader(self.fluss, self.layout(spec, name))


def backend_from_settings(settings: Settings) -> FlussBackend:
    """Build the ``fluss`` profile's backend from the settings (the registry's entry point)."""
    return FlussBackend(settings.fluss, polling=Polling.of(settings))
