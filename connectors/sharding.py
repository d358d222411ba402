"""Scaling out: shard I of N of a job owns the partitions ``p`` with ``p % N == I``.

Every job scales the same way (DESIGN §4a): independent single-worker processes, each
reading a fixed subset of the partitions of its job's *keyed* input streams and
keeping its own recovery store. Other inputs are read whole by every shard (tables,
control, and the market data Job C marks with). The partition count of a stream is
fixed when the stream is created and is the largest useful shard count.

Which partition a key lands in is the profile's hash of the record key
(``Record.key()``, the ``key_fields`` joined by ``|``):

- ``local`` (embedded store): ``zlib.crc32(key.encode()) % partitions``;
- ``kafka``: the Java client's ``murmur2(key) & 0x7fffffff % partitions`` (librdkafka
  ``murmur2_random``; Kafka Streams and Java producers place keys the same way);
- ``fluss``: the client's murmur3 over the encoded bucket key; not reproduced here, so
  a Job C shard (which must filter table rows by account) refuses to run on Fluss.

Per job, the streams sharded (``SHARDED_INPUTS``) and their key:

- A ``indicators``: market_data (symbol);
- B ``strategy``: sma_wide (symbol); strategy_config and control read whole;
- C ``portfolio_risk``: trade_signals and venue_fills (account); the accounts and
  symbol_limits rows are read whole and filtered to the accounts the shard owns, with
  the same hash and partition count as trade_signals (``KeyOwnership``); control and
  market_data read whole;
- D ``execution``: validated_orders (order_id, so an order's NEW and CANCEL meet in one
  shard); control and market_data (paper venue) read whole.

A shard writes ``I/N`` into its recovery store (``ShardGuard``, a source whose only
state is that string) and refuses to start from a store another ``I/N`` wrote.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.base import ConnectorError, SourceMessage, partition_number
from connectors.metrics import LAST_SNAPSHOT, SHARD

SHARDED_INPUTS: dict[str, tuple[str, ...]] = {
    "indicators": ("market_data",),
    "strategy": ("sma_wide",),
    "portfolio_risk": ("trade_signals", "venue_fills"),
    "execution": ("validated_orders",),
}
"""Per job (the flow module's name), the log streams a shard reads only its partitions of."""

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ConnectorError):
    """A shard setting is malformed, does not fit the streams, or its recovery store."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``0/1``: the job unsharded)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"I/N"`` (0 <= I < N); raise ``ShardError`` with the reason otherwise."""
        m = _SHARD.match(text)
        if m is None:
            raise ShardError(f"a shard is 'I/N' (e.g. 0/2), got {text!r}")
        index, count = int(m.group(1)), int(m.group(2))
        if count < 1:
            raise ShardError(f"shard count must be >= 1, got {text!r}")
        if not 0 <= index < count:
            raise ShardError(f"shard index must be in 0..{count - 1}, got {text!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, partition: int) -> bool:
        """Tell whether this shard owns a stream partition."""
        return partition % self.count == self.index

    def owned(self, partitions: int, stream: str = "the stream") -> list[int]:
        """Return the partitions of a stream with ``partitions`` partitions this shard owns.

        Refuse more shards than partitions: a shard without a partition would do nothing
        while its operators believe the job is running.
        """
        if self.count > partitions:
            raise ShardError(
                f"{self.count} shards need at least {self.count} partitions of {stream}, which has "
                f"{partitions}; the partition count is the maximum shard count (fixed when the "
                f"stream is created)"
            )
        return [p for p in range(partitions) if self.owns(p)]


UNSHARDED = Shard(0, 1)


# --------------------------------------------------------------------- hashes


def crc32_partition(key: str, partitions: int) -> int:
    """Return the embedded store's partition of a key (``connectors.embedded.store.partition_for``)."""
    return zlib.crc32(key.encode()) % partitions if partitions > 1 else 0


def murmur2(data: bytes) -> int:
    """Return Kafka's murmur2 hash of ``data`` as a signed 32-bit int (``Utils.murmur2``)."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: str, partitions: int) -> int:
    """Return the Kafka partition of a key (Java's ``toPositive(murmur2(key)) % n``)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# --------------------------------------------------------------------- sources


class _NotOwned(StatefulSourcePartition[SourceMessage, Any]):
    """A partition another shard reads: ends at once, keeps the state it was given."""

    def __init__(self, state: Any | None) -> None:
        self._state = state

    def next_batch(self) -> list[SourceMessage]:
        raise StopIteration

    def snapshot(self) -> Any:
        return self._state


class ShardedSource(FixedPartitionedSource[SourceMessage, Any]):
    """A partitioned source that reads only the partitions one shard owns.

    It still lists every partition (the others end at once and read nothing), so the
    recovery stores of all shards hold the same source keys: resumed from another
    shard's store, Bytewax then gets as far as ``ShardGuard``, which names both shards,
    instead of stopping on a key missing from its routing map. The partition count is
    looked up when the flow runs (``list_parts``), so building a flow touches no
    server; a shard count above it stops the flow with ``ShardError``.
    """

    def __init__(
        self, inner: FixedPartitionedSource[SourceMessage, Any], shard: Shard, stream: str
    ) -> None:
        self._inner = inner
        self._shard = shard
        self._stream = stream

    def list_parts(self) -> list[str]:
        """List every partition of the inner source (refusing more shards than partitions)."""
        parts = self._inner.list_parts()
        self._shard.owned(len(parts), self._stream)
        return parts

    def owned_parts(self) -> list[str]:
        """List the partitions this shard reads."""
        return [p for p in self.list_parts() if self._shard.owns(partition_number(p))]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any | None
    ) -> StatefulSourcePartition[SourceMessage, Any]:
        """Build an owned partition of the inner source, or one that reads nothing."""
        if not self._shard.owns(partition_number(for_part)):
            return _NotOwned(resume_state)
        return self._inner.build_part(step_id, for_part, resume_state)


class _UntilPartition(StatefulSourcePartition[SourceMessage, Any]):
    def __init__(self, inner: StatefulSourcePartition[SourceMessage, Any], end: int) -> None:
        self._inner = inner
        self._end = end

    def next_batch(self) -> list[SourceMessage]:
        pos = self._inner.snapshot()
        if isinstance(pos, int) and pos >= self._end:
            raise StopIteration
        return list(self._inner.next_batch())

    def next_awake(self) -> Any:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class UntilNow(FixedPartitionedSource[SourceMessage, Any]):
    """Read each partition only up to the end it has when the partition is built.

    For a bounded run over streams nobody closes (``settings.until_end``: the catch-up
    run of an offline reshard). Relies on the connectors' convention that a source
    partition's snapshot is its next offset.
    """

    def __init__(
        self, inner: FixedPartitionedSource[SourceMessage, Any], ends: Callable[[], dict[int, int]]
    ) -> None:
        self._inner = inner
        self._ends = ends

    def list_parts(self) -> list[str]:
        """List the inner source's partitions."""
        return self._inner.list_parts()

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any | None
    ) -> _UntilPartition:
        """Build the inner partition, bounded by the partition's current end."""
        end = self._ends().get(partition_number(for_part), 0)
        return _UntilPartition(self._inner.build_part(step_id, for_part, resume_state), end)


class _GuardPartition(StatefulSourcePartition[Any, str]):
    def __init__(self, tag: str, job: str) -> None:
        self._tag = tag
        self._snapshots = LAST_SNAPSHOT.labels(job)

    def next_batch(self) -> list[Any]:
        raise StopIteration

    def snapshot(self) -> str:
        # Bytewax snapshots every step at the same epoch: this one stamps the time for
        # the metrics (``tradeflow status``); the clock never reaches the state.
        self._snapshots.set(time.time())
        return self._tag


class ShardGuard(FixedPartitionedSource[Any, str]):
    """A source that emits nothing and keeps ``I/N`` in the recovery store.

    Resumed from a store written by another ``I/N`` it refuses to start, naming both:
    that store's state covers other partitions (offsets, accounts) than this shard's.
    """

    def __init__(self, shard: Shard, job: str) -> None:
        self._shard = shard
        self._job = job

    def list_parts(self) -> list[str]:
        """One partition, ``shard``."""
        return ["shard"]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _GuardPartition:
        """Check the recovery store's shard against this one."""
        check_resumed_shard(self._job, resume_state, self._shard)
        SHARD.labels(self._job, str(self._shard)).set(1)
        return _GuardPartition(str(self._shard), self._job)


def check_resumed_shard(job: str, written: str | None, shard: Shard) -> None:
    """Raise ``ShardError`` unless a recovery store written as ``written`` fits ``shard``."""
    if written is None or written == str(shard):
        return
    raise ShardError(
        f"{job}: the recovery store was written by shard {written}, this process is shard {shard}; "
        f"give each shard its own recovery directory (reshard offline: tradeflow reshard)"
    )


# --------------------------------------------------------------------- keys


@dataclass
class KeyOwnership:
    """Which keys one shard owns, by the hash and partition count of a keyed stream.

    ``partitions`` is looked up on first use (``lookup``), so it costs nothing to build.
    """

    shard: Shard
    hash: Callable[[str, int], int]
    lookup: Callable[[], int]
    stream: str
    _partitions: int | None = None

    @property
    def partitions(self) -> int:
        """Return the partition count of the stream the keys are placed by."""
        if self._partitions is None:
            n = self.lookup()
            self.shard.owned(n, self.stream)  # refuse more shards than partitions
            self._partitions = n
        return self._partitions

    def partition_of(self, key: str) -> int:
        """Return the partition the stream's writer puts ``key`` in."""
        return self.hash(key, self.partitions)

    def owns(self, key: str) -> bool:
        """Tell whether this shard owns ``key``."""
        return self.shard.count == 1 or self.shard.owns(self.partition_of(key))
