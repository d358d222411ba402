"""Helpers for tests (and benches): read whole streams back as records, build Job A's rows."""

from __future__ import annotations

from collections.abc import Iterable

from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.indicators import indicator_config, to_sma_wide
from operators.indicators import IndicatorConfig, IndicatorSet, Row, SymbolIndicators, Tick
from schemas import MarketData, Record, SmaWide, decode, spec


def read_all(conn: Connectors, stream: str) -> list[Record]:
    """Return every record of a stream, partition by partition, in offset order."""
    model = spec(stream).model
    return [decode(model, r.value) for r in conn.scan(stream, 10_000)]


def sma_rows(ticks: list[MarketData]) -> list[Record]:
    """Return the sma_wide rows Job A writes for ``ticks`` (default periods), computed directly."""
    config = indicator_config(load_settings())
    states: dict[str, SymbolIndicators] = {}
    out: list[Record] = []
    for t in ticks:
        st = states.setdefault(t.symbol, SymbolIndicators(config))
        for res in st.on_tick(Tick(t.symbol, t.ts, float(t.price), float(t.volume), t.wm)):
            assert isinstance(res, Row)
            out.append(to_sma_wide(res))
    for st in states.values():  # end of input, as Job A's on_eof
        for res in st.flush():
            assert isinstance(res, Row)
            out.append(to_sma_wide(res))
    return out


def indicator_rows(
    ticks: Iterable[MarketData], config: IndicatorConfig | None = None, *, validate: bool = True
) -> list[SmaWide]:
    """Return an sma_wide row per tick computed by Job A's ``IndicatorSet`` (numbered per symbol).

    ``validate=False`` builds them unvalidated (``model_construct``), as Job A writes them.
    """
    build = SmaWide if validate else SmaWide.model_construct
    sets: dict[str, IndicatorSet] = {}
    seqs: dict[str, int] = {}
    rows: list[SmaWide] = []
    for t in ticks:
        ind = sets.setdefault(t.symbol, IndicatorSet(config or IndicatorConfig()))
        seq = seqs.get(t.symbol, 0)
        seqs[t.symbol] = seq + 1
        price, volume = float(t.price), float(t.volume)
        values = ind.update(price, volume, t.ts)
        vwap = values.pop("vwap")
        rows.append(build(symbol=t.symbol, ts=t.ts, price=price, volume=volume, vwap=vwap, seq=seq, **values))
    return rows
