"""Job B: sma_wide joined with the live strategy_config (and control) -> trade_signals.

One flow per strategy id, each its own process, all reading the same sma_wide::

    python -m bytewax.run "flows.strategy:build_flow('sma_cross')" -r DIR -s 1 -b 0

(``flows.strategy:build_flow()`` is the ``sma_cross`` default; each strategy id needs its own
recovery directory.)

Wiring only. Rows are keyed by their symbol's shard and every config and control
update is fanned out to all shard keys, so they meet in one ``StrategyShard`` per
shard (``operators.strategies.sharding`` explains the join; ``operators.strategies.engine``
decides). A shard starts from the changelogs folded as they are when the process
starts (``seed_shard``), so the config and control in force then apply from the first
row. A config or control change made while the flow runs applies to the rows of a
shard processed after the update reached that shard: within a batch or two of rows,
not at a row chosen by the writer. Rows of symbols processed while no valid config
exists give no signal.

Bounded runs (``TRADEFLOW_FOLLOW=false``) read every input up to the end it had when
the run started (or resumed): tables are never "closed" by a writer.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.progress import progress_sink
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import SHARDED_INPUTS
from flows.common import Decoded, dead_letter_of, decoded, job_process, output, shard_guard
from operators.eventtime import Reached
from operators.indicators import IndicatorConfig
from operators.strategies import StrategyError, StrategyShard, activate, is_relevant_scope
from operators.strategies.sharding import (
    ConfigUpdate,
    ControlUpdate,
    Item,
    RowAt,
    rows_reached,
    seed_shard,
    shard_keys,
    shard_of,
    take,
)
from schemas import Control, DeadLetter, SmaWide, StrategyConfig, TradeSignal, spec

SHARDS = 64
"""Default number of shard keys. Changing it changes the keys of the recovery state:
start such a flow with a fresh recovery directory."""


def job_name(strategy_id: str) -> str:
    """Return the job name dead letters of this strategy flow carry."""
    return f"strategy:{strategy_id}"


def sma_wide_columns(settings: Settings) -> frozenset[str]:
    """Return the sma_wide columns Job A computes with these settings."""
    ind = settings.indicators
    return frozenset(IndicatorConfig(sma=ind.sma, ema=ind.ema, rsi=ind.rsi, vwap=ind.vwap).columns())


class StrategyLogic(op.StatefulBatchLogic[Item, TradeSignal | DeadLetter | Reached, StrategyShard]):
    """Bytewax shim around one ``StrategyShard``; in event-time mode its progress follows its signals."""

    def __init__(self, shard: StrategyShard, job: str, event_time: bool) -> None:
        self.shard = shard
        self.job = job
        self.event_time = event_time

    @override
    def on_batch(self, values: list[Item]) -> tuple[list[TradeSignal | DeadLetter | Reached], bool]:
        out: list[TradeSignal | DeadLetter | Reached] = [*take(self.shard, values, self.job)]
        if self.event_time and (reached := rows_reached(values)) is not None:
            out.append(reached)
        return out, False

    @override
    def snapshot(self) -> StrategyShard:
        return copy.deepcopy(self.shard)


class ShardSeed:
    """Give new shards their starting state: read the changelogs once per process, then copy."""

    def __init__(self, conn: Connectors, strategy_id: str, columns: frozenset[str]) -> None:
        self._conn, self._strategy_id, self._columns = conn, strategy_id, columns
        self._lock = threading.Lock()
        self._seed: StrategyShard | None = None

    def __call__(self) -> StrategyShard:
        """Return a fresh copy of the seed, reading the changelogs on first use."""
        with self._lock:
            if self._seed is None:
                configs = ((r.offset, r.key, r.value) for r in self._conn.scan("strategy_config", 1000))
                controls = ((r.offset, r.value) for r in self._conn.scan("control", 1000))
                self._seed = seed_shard(self._strategy_id, self._columns, configs, controls)
            return copy.deepcopy(self._seed)


def build_flow(
    strategy_id: str = "sma_cross", settings: Settings | None = None, *, shards: int = SHARDS
) -> Dataflow:
    """Build Job B for one strategy id (settings default: from the environment)."""
    settings = settings or load_settings()
    job_process(settings)
    conn = Connectors(settings)
    job = job_name(strategy_id)
    columns = sma_wide_columns(settings)
    keys = shard_keys(shards)
    seed = ShardSeed(conn, strategy_id, columns)
    flow = Dataflow("strategy_" + re.sub(r"[^A-Za-z0-9_-]", "_", strategy_id))
    letters: list[Stream[Any]] = []

    def read(stream: str, model: type[Any], mine: Any = None) -> Stream[Decoded[Any]]:
        src = conn.source(stream, sharded=stream in SHARDED_INPUTS["strategy"], until_now=True)
        raw = op.input(stream, flow, src)
        if mine is not None:
            raw = op.filter(f"{stream}_mine", raw, mine)
        return decoded(stream, raw, model, job=job, letters=letters, fast=spec(stream).trusted)

    def route(d: Decoded[SmaWide]) -> tuple[str, RowAt] | DeadLetter:
        if not d.record.price > 0:  # also catches NaN
            return dead_letter_of(d, f"price must be a finite number > 0, got {d.record.price!r}", job,
                                  key=d.record.symbol)
        return shard_of(d.record.symbol, shards), RowAt(d.record, d.partition, d.offset)

    def config(d: Decoded[StrategyConfig]) -> ConfigUpdate | DeadLetter:
        try:
            return ConfigUpdate(d.offset, activate(d.record, columns=columns))
        except StrategyError as exc:
            return dead_letter_of(d, f"config refused, the last good one stays: {exc}", job, key=strategy_id)

    rows = op.branch("row_valid", op.map("row_shard", read("sma_wide", SmaWide), route),
                     lambda x: isinstance(x, tuple))
    configs = op.branch("config_valid", op.map("config_check", read(
        "strategy_config", StrategyConfig, lambda m: m.key == strategy_id), config),
        lambda x: isinstance(x, ConfigUpdate))
    controls = op.map("control_update", read(
        "control", Control, lambda m: m.key is not None and is_relevant_scope(m.key, strategy_id)),
        lambda d: ControlUpdate(d.offset, d.record))
    updates = op.merge("updates", cast(Stream[ConfigUpdate], configs.trues), controls)
    fanned = op.flat_map("fan_out", updates, lambda u: [(k, u) for k in keys])
    joined = op.merge("join", cast(Stream[tuple[str, Item]], rows.trues), fanned)
    out = op.stateful_batch("strategy", joined,
                            lambda r: StrategyLogic(r if r is not None else seed(), job, settings.event_time))
    signals = op.branch("signal_or_letter", op.key_rm("unkey", out), lambda x: not isinstance(x, DeadLetter))
    output("trade_signals", signals.trues, conn, "trade_signals", job=job,  # counted, latency observed
           sink=progress_sink(conn, "trade_signals", job))
    letters += [rows.falses, configs.falses, signals.falses, shard_guard(flow, conn, job)]
    op.output("dead_letters", op.merge("all_letters", *letters), conn.sink("dead_letters"))
    return flow
