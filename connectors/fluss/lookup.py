"""Point lookups of a dimension table by key, with a TTL cache: the lookup side of a delta join.

Jobs B and C join a fast stream (sma_wide rows, trade signals) with slowly changing
tables (strategy_config, accounts). Consuming a table's changelog into operator state
works, but every job then holds and snapshots a copy of the table and must read the
whole changelog before it can decide anything (the ``TableGate`` of flows/common.py).
A *delta join* instead looks the row up by key when a stream record needs it::

    accounts = CachedLookup(settings, "accounts")           # one per worker (not picklable)
    account = accounts.get(signal.account)                  # Account | None

Staleness bound: a value is served from the cache for at most ``ttl_s`` seconds after
the lookup that fetched it was *sent*, so every write acknowledged more than ``ttl_s``
before a ``get`` is reflected in what it returns (Fluss point lookups see a write as
soon as it is acknowledged). Absent keys are cached the same way. ``ttl_s=0`` turns
the cache off. See docs/fluss.md ("Lookups") for when this is good enough (limits,
config) and when it is not (anything that must see a change before the next record,
e.g. the control table's HALTED: keep reading that changelog).

Cost: pyfluss 1.0.0 batches point lookups and sends a batch when 128 are queued or
its 100 ms window ends (the client's ``lookup_batch_timeout_ms``, not settable from
Python), so a lone miss takes up to ~100 ms; ``get_many`` sends all of its misses in
one window. One ``Lookuper`` answers one lookup at a time, so ``get_many`` spreads its
keys over several. Hits cost a dict lookup.

On the other profiles (``local``, ``kafka``) the same class reads through the
stream's registry reader (``StreamReader.latest``), so a flow can use it whatever the
profile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import fluss

from connectors.base import ConnectorError, StreamReader
from connectors.fluss.client import FlussClient, FlussTimeout, is_table_missing, is_transient, log
from connectors.fluss.streams import LOOKUP_DEADLINE_S, LOOKUP_TIMEOUT_S
from connectors.fluss.tables import PAYLOAD, TableLayout, ensure_table
from connectors.settings import Profile, Settings
from schemas import Kind, Record, decode, spec

MAX_CONCURRENT = 128
"""Keys looked up at once by ``get_many`` (pyfluss's lookup batch size)."""


@dataclass(slots=True)
class LookupStats:
    """What a ``CachedLookup`` did: cache hits and misses, and lookups sent."""

    hits: int = 0
    misses: int = 0
    lookups: int = 0
    fetch_seconds: list[float] = field(default_factory=list)
    """Wall time of each fetch round (one per ``get`` miss, one per ``get_many``)."""


class CachedLookup:
    """Look rows of one PK table up by key, caching each answer for ``ttl_s`` seconds.

    ``ttl_s`` defaults to ``settings.fluss.lookup_cache_ttl_s``
    (``TRADEFLOW_FLUSS__LOOKUP_CACHE_TTL_S``, 1 s). At most ``max_entries`` keys are
    cached (the least recently fetched go first). Thread-safe (one lock), but meant
    for one Bytewax worker: build it lazily in the worker, since it holds a connection.
    A stored row that does not decode raises ``schemas.DecodeError``.
    """

    def __init__(
        self,
        settings: Settings,
        stream: str,
        ttl_s: float | None = None,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec(stream)
        if self.spec.kind is not Kind.TABLE:
            raise ConnectorError(f"{stream} is a log stream; lookups need a PK table")
        self.ttl_s = settings.fluss.lookup_cache_ttl_s if ttl_s is None else ttl_s
        if self.ttl_s < 0:
            raise ValueError("ttl_s must not be negative")
        self.max_entries = max_entries
        self.stats = LookupStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Record | None]] = {}
        self._fluss: _FlussLookups | None = None
        self._reader: StreamReader | None = None
        name = settings.physical_name(stream)
        if settings.profile_for(stream) is Profile.FLUSS:
            layout = TableLayout.of(
                self.spec, name, database=settings.fluss.database, buckets=settings.fluss.buckets
            )
            self._fluss = _FlussLookups(FlussClient(settings.fluss), layout)
        else:
            from connectors.registry import Connectors

            self._reader = Connectors(settings).reader(stream)

    def get(self, key: str) -> Record | None:
        """Return the row of ``key`` (None if absent), at most ``ttl_s`` seconds stale."""
        return self.get_many([key])[key]

    def get_many(self, keys: Iterable[str]) -> dict[str, Record | None]:
        """Return the rows of several keys; the misses are looked up together."""
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            now = self._clock()
            out: dict[str, Record | None] = {}
            misses: list[str] = []
            for key in wanted:
                entry = self._cache.get(key)
                if entry is not None and now - entry[0] < self.ttl_s:
                    out[key] = entry[1]
                    self.stats.hits += 1
                else:
                    misses.append(key)
            if misses:
                self.stats.misses += len(misses)
                sent = self._clock()
                payloads = self._fetch(misses)
                self.stats.fetch_seconds.append(self._clock() - sent)
                for key in misses:
                    raw = payloads[key]
                    value = None if raw is None else decode(self.spec.model, raw)
                    out[key] = value
                    self._remember(key, sent, value)
            return out

    def _fetch(self, keys: list[str]) -> dict[str, bytes | None]:
        self.stats.lookups += len(keys)
        if self._fluss is not None:
            return self._fluss.fetch(keys)
        assert self._reader is not None  # noqa: S101 - set when not on fluss
        return {key: self._reader.latest(key) for key in keys}

    def _remember(self, key: str, sent: float, value: Record | None) -> None:
        if self.ttl_s <= 0:
            return
        self._cache.pop(key, None)
        self._cache[key] = (sent, value)
        while len(self._cache) > self.max_entries:
            self._cache.pop(next(iter(self._cache)))

    def invalidate(self, key: str | None = None) -> None:
        """Forget one cached key, or all of them."""
        with self._lock:
            if key is None:
                self._cache.clear()
            else:
                self._cache.pop(key, None)

    def close(self) -> None:
        """Release the connection (or the reader)."""
        with self._lock:
            if self._fluss is not None:
                self._fluss.close()
            if self._reader is not None:
                self._reader.close()


class _FlussLookups:
    """Point lookups on one table through a pool of lookupers, retried across outages."""

    def __init__(self, client: FlussClient, layout: TableLayout) -> None:
        self._client = client
        self._layout = layout
        try:
            ensure_table(client, layout)
            self._table = client.table(layout.path)
        except BaseException:
            client.close()
            raise
        self._pool: list[fluss.Lookuper] = []

    def _lookupers(self, n: int) -> list[fluss.Lookuper]:
        while len(self._pool) < n:
            self._pool.append(self._table.new_lookup().create_lookuper())
        return self._pool[:n]

    def fetch(self, keys: list[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for i in range(0, len(keys), MAX_CONCURRENT):
            chunk = keys[i : i + MAX_CONCURRENT]
            rows = self._fetch_chunk([self._layout.split_key(k) for k in chunk])
            for key, row in zip(chunk, rows, strict=True):
                payload = None if row is None else row.get(PAYLOAD)
                out[key] = None if row is None else (payload.encode() if isinstance(payload, str) else b"")
        return out

    def _fetch_chunk(self, pks: list[list[str]]) -> list[dict[str, object] | None]:
        deadline = time.monotonic() + LOOKUP_DEADLINE_S
        while True:
            try:
                return self._client.run(partial(_gather, self._lookupers(len(pks)), pks), LOOKUP_TIMEOUT_S)
            except (fluss.FlussError, FlussTimeout) as exc:
                retry = is_transient(exc) or is_table_missing(exc)
                if not retry or time.monotonic() > deadline:
                    raise ConnectorError(f"looking up {self._layout.qualified}: {exc}") from exc
                log.warning("lookups on %s (reloading the table): %s", self._layout.qualified, exc)
                self._pool.clear()
                self._table = self._client.table(self._layout.path, reload=True)

    def close(self) -> None:
        self._pool.clear()
        self._client.close()


async def _gather(lookupers: list[fluss.Lookuper], pks: list[list[str]]) -> list[dict[str, object] | None]:
    return list(await asyncio.gather(*(lk.lookup(pk) for lk, pk in zip(lookupers, pks, strict=True))))
