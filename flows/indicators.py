"""Job A: market_data -> per-symbol SMA/EMA/RSI/VWAP -> sma_wide (one wide row per tick).

Run it: ``python -m bytewax.run "flows.indicators:build_flow()"`` (settings from ``TRADEFLOW_*``).

Before the indicators, each symbol's ``TickGate`` (``operators.instruments``) refuses
duplicate ticks and ticks the instruments table does not allow; the table is read to
its start-up end before the flow starts (``StartupTable``), then its changelog is
followed for halts, resumes and new symbols.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from typing_extensions import override

from connectors.base import SourceMessage
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import SHARDED_INPUTS
from flows.common import (
    Decoded,
    dead_letter,
    dead_letter_of,
    decode_messages,
    job_process,
    output,
    records,
    shard_guard,
    startup_table,
)
from operators.indicators import IndicatorConfig, Late, Row, SymbolIndicators, Tick
from operators.instruments import StartupTable, TickGate
from schemas import DeadLetter, Instrument, MarketData, SmaWide, encode

JOB = "indicators"
log = logging.getLogger(__name__)


Located = tuple[Tick, int, int]
"""A tick with the partition and offset it was read from (cheap to send between
workers, unlike the pydantic record)."""


def locate(d: Decoded[MarketData]) -> tuple[str, Located]:
    """Key a decoded tick by symbol, keeping only what Job A needs."""
    r = d.record
    tick = Tick(r.symbol, r.ts, float(r.price), float(r.volume), r.wm, (d.partition, d.offset), r.entered_at)
    return r.symbol, (tick, d.partition, d.offset)


GateIn = Decoded[MarketData] | Decoded[Instrument]


class GateLogic(op.StatefulBatchLogic[GateIn, Decoded[MarketData] | DeadLetter, TickGate]):
    """Bytewax shim around one symbol's ``TickGate``: instrument rows in, ticks through or refused."""

    def __init__(self, table: StartupTable, resume: TickGate | None) -> None:
        self.table = table
        self.resume = resume
        self.gate: TickGate | None = None

    @override
    def on_batch(self, values: list[GateIn]) -> tuple[list[Decoded[MarketData] | DeadLetter], bool]:
        if self.gate is None:
            self.gate = self.table.gate(values[0].record.symbol, self.resume)
        gate = self.gate
        out: list[Decoded[MarketData] | DeadLetter] = []
        for d in values:
            rec = d.record
            if isinstance(rec, Instrument):
                if not self.table.seen(d.partition, d.offset):
                    gate.on_instrument(rec)
                continue
            try:
                reason = gate.check(rec.symbol, rec.ts, rec.price, rec.volume)
            except Exception as exc:  # noqa: BLE001 - one tick must not stop the job
                reason = failed_on(exc)
            out.append(d if reason is None else dead_letter_of(d, reason, JOB, key=rec.symbol))  # type: ignore[arg-type]
        return out, False

    @override
    def snapshot(self) -> TickGate:
        # resumed, and no input for this symbol since: the state as resumed
        gate = self.gate if self.gate is not None else self.resume
        if gate is None:
            raise RuntimeError("bytewax builds a gate without resume state only for an input")
        return gate.copy()


class IndicatorLogic(op.StatefulBatchLogic[Located, SmaWide | DeadLetter, SymbolIndicators]):
    """Bytewax shim around ``SymbolIndicators`` for one symbol."""

    def __init__(
        self, config: IndicatorConfig, resume: SymbolIndicators | None, *, live: bool = False
    ) -> None:
        self.state = resume if resume is not None else SymbolIndicators(config)
        self.live = live
        """Following live: ticks are also checked against the wall clock."""

    @override
    def on_batch(self, values: list[Located]) -> tuple[list[SmaWide | DeadLetter], bool]:
        out: list[SmaWide | DeadLetter] = []
        now = datetime.now(UTC) if self.live else None
        for tick, partition, offset in values:
            try:
                results = self.state.on_tick(tick, now)
            except Exception as exc:  # noqa: BLE001 - one tick must not stop the job
                out.append(_late_letter(Late(tick, failed_on(exc)), partition, offset))
                continue
            for res in results:
                if isinstance(res, Late):
                    out.append(_late_letter(res, partition, offset))
                else:
                    out.append(to_sma_wide(res))
        return out, False

    @override
    def on_eof(self) -> tuple[list[SmaWide | DeadLetter], bool]:
        out: list[SmaWide | DeadLetter] = []
        for res in self.state.flush():
            out.append(_late_letter(res, -1, -1) if isinstance(res, Late) else to_sma_wide(res))
        return out, False

    @override
    def snapshot(self) -> SymbolIndicators:
        return copy.deepcopy(self.state)


def failed_on(exc: Exception) -> str:
    """Say why a tick the gate or the indicators raised on is not used (and log the trace).

    Per-record guard (a poison pill no check refused, an indicator bug): the tick goes
    to dead_letters with the error and Job A goes on. A replay of that tick after a
    restart meets the same guard, never the same crash.
    """
    log.exception("indicators: failed on a tick")
    return f"Job A failed on this tick ({type(exc).__name__}: {exc})"[:400] + "; not used"


def _late_letter(late: Late, partition: int, offset: int) -> DeadLetter:
    t = late.tick
    src = getattr(t, "src", None)  # where the refused tick was read (it may be held)
    if src is not None:
        partition, offset = src
    rec = MarketData(
        symbol=t.symbol, ts=t.ts, price=Decimal(repr(t.price)), volume=Decimal(repr(t.volume)), wm=t.wm,
        entered_at=t.entered_at,
    )
    msg = SourceMessage("market_data", partition, offset, t.symbol, encode(rec))
    return dead_letter(msg, late.reason, JOB)


def _symbol_of(d: GateIn) -> str:
    return d.record.symbol


def to_sma_wide(row: Row) -> SmaWide:
    """Turn an indicator row into an sma_wide record (values are trusted floats)."""
    t = row.tick
    values = dict(row.values)
    vwap = values.pop("vwap", None)
    fields: dict[str, object] = {
        "symbol": t.symbol, "ts": t.ts, "price": t.price, "volume": t.volume, "vwap": vwap, "seq": row.seq,
        "entered_at": t.entered_at,
    }
    fields.update(values)
    return SmaWide.model_construct(**fields)  # type: ignore[arg-type]


def indicator_config(settings: Settings) -> IndicatorConfig:
    """Return the indicator periods configured in ``settings``."""
    ind = settings.indicators
    return IndicatorConfig(
        sma=ind.sma, ema=ind.ema, rsi=ind.rsi, vwap=ind.vwap, max_future_skew_s=ind.max_future_skew_s
    )


def build_flow(settings: Settings | None = None) -> Dataflow:
    """Build Job A with the given settings (default: from the environment)."""
    settings = settings or load_settings()
    conn = Connectors(settings)
    job_process(settings)
    config = indicator_config(settings)

    flow = Dataflow(JOB)
    source = conn.source("market_data", sharded="market_data" in SHARDED_INPUTS[JOB])
    raw = op.input("market_data", flow, source)
    decoded = decode_messages("market_data", raw, MarketData, job=JOB)
    letters: list[Stream[Any]] = [decoded.errs]
    table = StartupTable(*startup_table(conn, "instruments", Instrument))
    rows = records(flow, conn, "instruments", Instrument, job=JOB, letters=letters, until_now=True)
    inputs: Stream[tuple[str, GateIn]] = op.merge(
        "gate_inputs", op.key_on("ticks_by_symbol", decoded.oks, _symbol_of),
        op.key_on("rows_by_symbol", rows, _symbol_of),
    )
    gated = op.stateful_batch("instrument_gate", inputs, lambda resume: GateLogic(table, resume))
    passed = op.branch("gate_passed", op.key_rm("unkey_gate", gated), lambda r: isinstance(r, Decoded))
    letters.append(passed.falses)
    keyed = op.map("by_symbol", cast("Stream[Decoded[MarketData]]", passed.trues), locate)
    results = op.stateful_batch(
        "indicators", keyed, lambda resume: IndicatorLogic(config, resume, live=settings.follow)
    )
    split = op.branch("late", op.key_rm("unkey", results), lambda r: isinstance(r, SmaWide))
    output("sma_wide", split.trues, conn, "sma_wide", job=JOB)
    all_letters = op.merge("all_letters", *letters, split.falses, shard_guard(flow, conn, JOB))
    output("dead_letters", all_letters, conn, "dead_letters", job=JOB)
    return flow
