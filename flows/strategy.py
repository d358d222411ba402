"""Job B: sma_wide joined with the live strategy_config (and control) -> trade_signals.

One flow per strategy id, each its own process, all reading the same sma_wide::

    python -m bytewax.run "flows.strategy:build_flow('sma_cross')" -r DIR -s 1 -b 0

(``flows.strategy:build_flow()`` is the ``sma_cross`` default; each strategy id needs its own
recovery directory.)

Join design. Bytewax routes a keyed item to the worker that owns its key, and a key's
state is only visible to that key's logic, so the config must reach every key that
holds rows. Symbols are not known in advance (an empty ``symbols`` list means all), so
instead of keying by symbol the flow keys by *shard*: ``crc32(symbol) % shards``
(``shards`` fixed keys, 64 by default). Every config and control update is fanned out
with ``flat_map`` to all shard keys; every row goes to its symbol's shard. Each shard
key holds a ``StrategyShard``: the config in force, the control states and the
per-symbol strategy states, so config, control and rows meet in one piece of Bytewax
state per shard, whichever worker owns it and however many workers there are. Rows of
one symbol keep their order (one source partition, one shard).

What "next row" means: a config or control update applies to the rows of a shard that
are processed after the update reached that shard. The two inputs are different
streams, so a change made while the flow runs takes effect within a batch or two of
rows, not at a row chosen by the writer. At start-up (no recovery state), each process
first folds the whole strategy_config and control changelogs into the shards' starting
state, so the config and control in force when the flow starts apply from its very
first row; the same changelog rows, read again by the sources, are then skipped by
offset. Rows of symbols processed while no valid config exists give no signal.

Bounded runs (``TRADEFLOW_FOLLOW=false``) read every input up to the end it had when
the run started (or resumed): tables are never "closed" by a writer.
"""

from __future__ import annotations

import copy
import re
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source

from connectors.base import SourceMessage
from connectors.metrics import serve
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import SHARDED_INPUTS, UntilNow
from flows.common import Decoded, dead_letter, decode_messages, shard_guard
from operators.indicators import IndicatorConfig
from operators.strategies import ActiveConfig, StrategyError, StrategyShard, activate
from operators.strategies.engine import is_relevant_scope
from schemas import (
    Control,
    DeadLetter,
    DecodeError,
    SmaWide,
    StrategyConfig,
    TradeSignal,
    decode,
    encode,
)

SHARDS = 64
"""Default number of shard keys. Changing it changes the keys of the recovery state:
start such a flow with a fresh recovery directory."""


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


Item = SmaWide | ConfigUpdate | ControlUpdate


def job_name(strategy_id: str) -> str:
    """Return the job name dead letters of this strategy flow carry."""
    return f"strategy:{strategy_id}"


def shard_keys(shards: int) -> list[str]:
    """Return every shard key."""
    return [f"{i:03d}" for i in range(shards)]


def shard_of(symbol: str, shards: int) -> str:
    """Return the shard key of a symbol (crc32: stable across processes and runs)."""
    return f"{zlib.crc32(symbol.encode()) % shards:03d}"


def sma_wide_columns(settings: Settings) -> frozenset[str]:
    """Return the sma_wide columns Job A computes with these settings."""
    ind = settings.indicators
    return frozenset(IndicatorConfig(sma=ind.sma, ema=ind.ema, rsi=ind.rsi, vwap=ind.vwap).columns())


class StrategyLogic(op.StatefulBatchLogic[Item, TradeSignal, StrategyShard]):
    """Bytewax shim around one ``StrategyShard``."""

    def __init__(self, shard: StrategyShard) -> None:
        self.shard = shard

    def on_batch(self, values: list[Item]) -> tuple[list[TradeSignal], bool]:
        """Apply updates and evaluate rows in arrival order; return the signals."""
        shard = self.shard
        out: list[TradeSignal] = []
        for item in values:
            if isinstance(item, SmaWide):
                signal = shard.on_row(item)
                if signal is not None:
                    out.append(signal)
            elif isinstance(item, ConfigUpdate):
                shard.apply_config(item.offset, item.active)
            else:
                shard.apply_control(item.offset, item.control)
        return out, False

    def snapshot(self) -> StrategyShard:
        """Return a copy of the shard (never the live state)."""
        return copy.deepcopy(self.shard)


def _read_log(conn: Connectors, stream: str) -> Iterable[SourceMessage]:
    for r in conn.scan(stream, 1000):
        yield SourceMessage(stream, r.partition, r.offset, r.key, r.value)


class ShardSeed:
    """Give new shards their starting state: the config and control changelogs folded.

    The changelogs are read as far as they go when first asked, once per process
    (thread-safe); every new shard gets a copy. Invalid rows are skipped here; the
    sources read them again and dead-letter them.
    """

    def __init__(self, conn: Connectors, strategy_id: str, columns: frozenset[str]) -> None:
        self._conn = conn
        self._strategy_id = strategy_id
        self._columns = columns
        self._lock = threading.Lock()
        self._seed: StrategyShard | None = None

    def __call__(self) -> StrategyShard:
        """Return a fresh copy of the seed, reading the changelogs on first use."""
        with self._lock:
            if self._seed is None:
                self._seed = self._load()
            return copy.deepcopy(self._seed)

    def _load(self) -> StrategyShard:
        shard = StrategyShard(self._strategy_id)
        for msg in _read_log(self._conn, "strategy_config"):
            active = self._config(msg)
            if active is None:
                shard.skip_config(msg.offset)
            else:
                shard.apply_config(msg.offset, active)
        for msg in _read_log(self._conn, "control"):
            try:
                control = decode(Control, msg.value)
            except DecodeError:
                shard.skip_control(msg.offset)
                continue
            shard.apply_control(msg.offset, control)
        return shard

    def _config(self, msg: SourceMessage) -> ActiveConfig | None:
        if msg.key != self._strategy_id:
            return None
        try:
            return activate(decode(StrategyConfig, msg.value), columns=self._columns)
        except (DecodeError, StrategyError):
            return None


def _end_offsets(conn: Connectors, stream: str) -> Callable[[], dict[int, int]]:
    def ends() -> dict[int, int]:
        reader = conn.reader(stream)
        try:
            return reader.end_offsets()
        finally:
            reader.close()

    return ends


def _source(conn: Connectors, stream: str) -> Source[SourceMessage]:
    src = conn.source(stream, sharded=stream in SHARDED_INPUTS["strategy"])
    if conn.settings.follow:
        return src
    if not isinstance(src, FixedPartitionedSource):
        raise TypeError(f"a bounded run needs a partitioned source for {stream}")
    return UntilNow(src, _end_offsets(conn, stream))


def _flow_id(strategy_id: str) -> str:
    return "strategy_" + re.sub(r"[^A-Za-z0-9_-]", "_", strategy_id)


def _config_updates(
    flow: Dataflow, conn: Connectors, strategy_id: str, columns: frozenset[str], job: str
) -> tuple[Stream[ConfigUpdate], list[Stream[DeadLetter]]]:
    raw = op.input("strategy_config", flow, _source(conn, "strategy_config"))
    mine = op.filter("config_mine", raw, lambda m: m.key == strategy_id)
    decoded = decode_messages("strategy_config", mine, StrategyConfig, job=job)

    def check(d: Decoded[StrategyConfig]) -> ConfigUpdate | DeadLetter:
        try:
            return ConfigUpdate(d.offset, activate(d.record, columns=columns))
        except StrategyError as exc:
            msg = SourceMessage(d.stream, d.partition, d.offset, strategy_id, encode(d.record))
            return dead_letter(msg, f"config refused, the last good one stays: {exc}", job)

    checked = op.map("config_check", decoded.oks, check)
    split = op.branch("config_valid", checked, lambda x: isinstance(x, ConfigUpdate))
    return cast(Stream[ConfigUpdate], split.trues), [
        decoded.errs,
        cast(Stream[DeadLetter], split.falses),
    ]


def _control_updates(
    flow: Dataflow, conn: Connectors, strategy_id: str, job: str
) -> tuple[Stream[ControlUpdate], Stream[DeadLetter]]:
    raw = op.input("control", flow, _source(conn, "control"))
    mine = op.filter(
        "control_mine", raw, lambda m: m.key is not None and is_relevant_scope(m.key, strategy_id)
    )
    decoded = decode_messages("control", mine, Control, job=job)
    updates = op.map("control_update", decoded.oks, lambda d: ControlUpdate(d.offset, d.record))
    return updates, decoded.errs


def build_flow(
    strategy_id: str = "sma_cross", settings: Settings | None = None, *, shards: int = SHARDS
) -> Dataflow:
    """Build Job B for one strategy id (settings default: from the environment)."""
    settings = settings or load_settings()
    serve(settings.metrics_port, settings.metrics_host)
    conn = Connectors(settings)
    job = job_name(strategy_id)
    columns = sma_wide_columns(settings)
    keys = shard_keys(shards)
    seed = ShardSeed(conn, strategy_id, columns)

    flow = Dataflow(_flow_id(strategy_id))
    raw_rows = op.input("sma_wide", flow, _source(conn, "sma_wide"))
    rows = decode_messages("sma_wide", raw_rows, SmaWide, job=job)

    def route(d: Decoded[SmaWide]) -> tuple[str, SmaWide] | DeadLetter:
        row = d.record
        if not row.price > 0:  # also catches NaN
            msg = SourceMessage(d.stream, d.partition, d.offset, row.symbol, encode(row))
            return dead_letter(msg, f"price must be a finite number > 0, got {row.price!r}", job)
        return shard_of(row.symbol, shards), row

    routed = op.branch("row_valid", op.map("row_shard", rows.oks, route), lambda x: isinstance(x, tuple))
    configs, config_letters = _config_updates(flow, conn, strategy_id, columns, job)
    controls, control_letters = _control_updates(flow, conn, strategy_id, job)
    updates: Stream[ConfigUpdate | ControlUpdate] = op.merge("updates", configs, controls)
    fanned = op.flat_map("fan_out", updates, lambda u: [(k, u) for k in keys])
    joined = op.merge("join", cast(Stream[tuple[str, Item]], routed.trues), fanned)

    def build(resume: StrategyShard | None) -> StrategyLogic:
        return StrategyLogic(resume if resume is not None else seed())

    signals = op.stateful_batch("strategy", joined, build)
    op.output("trade_signals", op.key_rm("unkey", signals), conn.sink("trade_signals"))
    bad_rows = cast(Stream[DeadLetter], routed.falses)
    letters = op.merge("all_letters", rows.errs, bad_rows, *config_letters, control_letters,
                       shard_guard(flow, conn, job))
    op.output("dead_letters", letters, conn.sink("dead_letters"))
    return flow
