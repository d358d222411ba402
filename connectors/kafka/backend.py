"""The ``kafka`` profile's backend: every stream a topic, PK tables compacted topics."""

from __future__ import annotations

from connectors.base import Backend, Polling
from connectors.kafka.config import topic_name
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.sink import KafkaSink
from connectors.kafka.source import KafkaSource
from connectors.kafka.streams import KafkaReader, KafkaWriter
from connectors.kafka.topics import TopicAdmin, TopicSpec
from connectors.settings import Settings
from connectors.sharding import murmur2_partition
from schemas import Kind, StreamSpec


class KafkaBackend(Backend):
    """Connectors of the ``kafka`` profile.

    A log stream is the topic ``<topic_prefix><name>`` with ``partitions``
    partitions, keyed by the record key; a PK table is a compacted topic with one
    partition (like the local profile's tables). Topics are created on first use.
    Building a backend, a source or a sink touches no broker; sources and sinks
    connect when the flow runs, writers and readers when they are created.
    """

    def __init__(self, kafka: KafkaSettings, *, polling: Polling = Polling()) -> None:
        self.kafka = kafka
        self.polling = polling
        self._admin: TopicAdmin | None = None

    def partition_of(self, key: str, partitions: int) -> int:
        """Return a key's partition: the Java client's murmur2 (our producers' ``murmur2_random``)."""
        return murmur2_partition(key, partitions)

    def topic(self, name: str) -> str:
        """Return the topic of a stream's physical name."""
        return topic_name(self.kafka, name)

    def topic_spec(self, spec: StreamSpec, name: str) -> TopicSpec:
        """Return the topic a stream maps to (name, partitions, compaction)."""
        table = spec.kind is Kind.TABLE
        return TopicSpec(self.topic(name), 1 if table else self.kafka.partitions, table)

    def ensure_topic(self, spec: StreamSpec, name: str) -> int:
        """Create the stream's topic unless it exists; return its partition count."""
        if self._admin is None:
            self._admin = TopicAdmin(self.kafka)
        return self._admin.ensure(self.topic_spec(spec, name))

    def source(
        self, spec: StreamSpec, name: str, *, follow: bool, from_end: bool = False
    ) -> KafkaSource:
        """Return a source over the stream's topic."""
        ts = self.topic_spec(spec, name)
        return KafkaSource(self.kafka, name, ts, follow=follow, polling=self.polling, from_end=from_end)

    def sink(self, spec: StreamSpec, name: str) -> KafkaSink:
        """Return a sink into the stream's topic."""
        ts = self.topic_spec(spec, name)
        return KafkaSink(self.kafka, topic=ts.name, partitions=ts.partitions, table=ts.compact)

    def writer(self, spec: StreamSpec, name: str) -> KafkaWriter:
        """Return a plain writer (creates the topic if needed)."""
        return KafkaWriter(self.kafka, self.topic(name), self.ensure_topic(spec, name))

    def reader(self, spec: StreamSpec, name: str) -> KafkaReader:
        """Return a plain reader (creates the topic if needed, like the local profile)."""
        return KafkaReader(self.kafka, self.topic(name), self.ensure_topic(spec, name))


def backend_from_settings(settings: Settings) -> KafkaBackend:
    """Build the ``kafka`` profile's backend from the settings (the registry's entry point)."""
    return KafkaBackend(settings.kafka, polling=Polling.of(settings))
