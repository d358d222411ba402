"""Helpers for tests: read whole streams back as records."""

from __future__ import annotations

from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.indicators import indicator_config, to_sma_wide
from operators.indicators import Row, SymbolIndicators, Tick
from schemas import MarketData, Record, decode, spec


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
