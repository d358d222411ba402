"""Job B's join of sma_wide rows with the live strategy_config and control changelogs.

Bytewax routes a keyed item to the worker that owns its key, and a key's state is
only visible to that key's logic, so the config must reach every key that holds rows.
Symbols are not known in advance (an empty ``symbols`` list means all), so instead of
keying by symbol the flow keys by *shard*: ``crc32(symbol) % shards`` (``shard_keys``).
Every config and control update is fanned out to all shard keys; every row goes to its
symbol's shard (``shard_of``). Each shard key holds a ``StrategyShard``, so config,
control and rows meet in one piece of state per shard, whichever worker owns it.

``seed_shard`` folds the changelogs as they are when a process starts into the
starting state of its shards, so the config and control in force then apply from the
very first row; the same changelog rows, read again by the sources, are skipped by
offset (``StrategyShard.apply_config``/``apply_control``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from operators.eventtime import Reached
from operators.strategies.base import StrategyError
from operators.strategies.engine import ActiveConfig, StrategyShard, activate
from schemas import Control, DeadLetter, DecodeError, SmaWide, StrategyConfig, TradeSignal, decode, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """A valid strategy_config row for this strategy, with its changelog offset."""

    offset: int
    active: ActiveConfig


@dataclass(frozen=True, slots=True)
class ControlUpdate:
    """A control row that may concern this strategy, with its changelog offset."""

    offset: int
    control: Control


@dataclass(frozen=True, slots=True)
class RowAt:
    """An sma_wide row with where it was read (for the dead letter if evaluating it fails)."""

    row: SmaWide
    partition: int
    offset: int


Item = RowAt | ConfigUpdate | ControlUpdate
"""What reaches a shard: a row to evaluate, or an update to put in force."""

PAYLOAD_CHARS = 4000
"""A dead letter keeps at most this much of the row it could not use."""


def shard_keys(shards: int) -> list[str]:
    """Return every shard key."""
    return [f"{i:03d}" for i in range(shards)]


def shard_of(symbol: str, shards: int) -> str:
    """Return the shard key of a symbol (crc32: stable across processes and runs)."""
    return f"{zlib.crc32(symbol.encode()) % shards:03d}"


def take(shard: StrategyShard, items: Iterable[Item], job: str) -> list[TradeSignal | DeadLetter]:
    """Apply updates and evaluate rows in arrival order; return the signals.

    A row the strategy raises on (a poison pill no check refused, a strategy bug) goes
    out as a dead letter naming the error and the row's position, and the shard goes on
    with the next row. A replay of that row after a restart is dropped by its ``seq``
    (it was taken) or meets the same guard: never the same crash twice.
    """
    out: list[TradeSignal | DeadLetter] = []
    for item in items:
        if isinstance(item, RowAt):
            try:
                signal = shard.on_row(item.row)
            except Exception as exc:  # noqa: BLE001 - one row must not stop the job
                out.append(failed_row(item, exc, job))
                continue
            if signal is not None:
                out.append(signal)
        elif isinstance(item, ConfigUpdate):
            shard.apply_config(item.offset, item.active)
        else:
            shard.apply_control(item.offset, item.control)
    return out


def rows_reached(items: Iterable[Item]) -> Reached | None:
    """Return the event-time promise of a batch: each symbol's rows evaluated through this time."""
    symbols: dict[str, datetime] = {}
    for item in items:
        if isinstance(item, RowAt):
            row = item.row
            if row.symbol not in symbols or row.ts > symbols[row.symbol]:
                symbols[row.symbol] = row.ts
    return Reached(symbols) if symbols else None


def failed_row(item: RowAt, exc: Exception, job: str) -> DeadLetter:
    """Return the dead letter of a row evaluating raised on (logging the trace)."""
    log.exception("%s: failed on sma_wide %s@%s", job, item.partition, item.offset)
    row = item.row
    return DeadLetter(
        source_stream="sma_wide", partition=item.partition, offset=item.offset, source_key=row.symbol,
        reason=f"{job} failed on this row ({type(exc).__name__}: {exc})"[:400] + "; not used",
        payload=encode(row).decode()[:PAYLOAD_CHARS], job=job, ts=row.ts,
    )


def seed_shard(
    strategy_id: str, columns: Collection[str], configs: Iterable[tuple[int, str | None, bytes]],
    controls: Iterable[tuple[int, bytes]],
) -> StrategyShard:
    """Fold the strategy_config and control changelogs into a shard's starting state.

    ``configs`` are ``(offset, key, value)`` and ``controls`` ``(offset, value)``. Rows
    that do not decode or are refused are skipped here (their offsets still count);
    the flow's sources read them again and dead-letter them.
    """
    shard = StrategyShard(strategy_id)
    for offset, key, value in configs:
        active = None
        if key == strategy_id:
            try:
                active = activate(decode(StrategyConfig, value), columns=columns)
            except (DecodeError, StrategyError):
                active = None
        if active is None:
            shard.skip_config(offset)
        else:
            shard.apply_config(offset, active)
    for offset, value in controls:
        try:
            shard.apply_control(offset, decode(Control, value))
        except DecodeError:
            shard.skip_control(offset)
    return shard
