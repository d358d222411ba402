"""``tradeflow indicators``: a ticks file in, a CSV of indicators out.

It runs the very ``SymbolIndicators`` code Job A runs, so users can check our numbers
against their own tools. Rows come out in input order, one per tick; a tick that the
ordering policy refuses (older than one already applied for its symbol) is reported
on stderr and left out of the output.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, TextIO

from connectors.feeds import read_frame
from operators.indicators import IndicatorConfig, Late, Row, SymbolIndicators, Tick


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(value)


def run(input_path: Path, out: TextIO, config: IndicatorConfig, err: TextIO = sys.stderr) -> int:
    """Compute indicators for every tick of ``input_path``; return the rows written."""
    df = read_frame(input_path)
    states: dict[str, SymbolIndicators] = {}
    columns = config.columns()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "symbol", "price", *columns])
    written = 0
    for ts, symbol, price, volume in df.itertuples(index=False, name=None):
        sym = str(symbol)
        state = states.get(sym)
        if state is None:
            state = states[sym] = SymbolIndicators(config)
        tick = Tick(sym, ts.to_pydatetime(), float(price), float(volume))
        written += _write(state.on_tick(tick), writer, columns, err)
    for state in states.values():  # end of input: what is still buffered or held
        written += _write(state.flush(), writer, columns, err)
    return written


def _write(results: list[Row | Late], writer: Any, columns: list[str], err: TextIO) -> int:
    written = 0
    for res in results:
        if isinstance(res, Late):
            print(f"skipped: {res.reason}", file=err)
            continue
        writer.writerow(_row(res, columns))
        written += 1
    return written


def _row(row: Row, columns: list[str]) -> list[str]:
    t = row.tick
    stamp = t.ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return [stamp, t.symbol, repr(t.price), *(_fmt(row.values.get(c)) for c in columns)]


def parse_periods(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """Parse ``"5,10,20"`` into periods; empty string means none, None the default."""
    if text is None:
        return default
    if not text.strip():
        return ()
    try:
        periods = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"periods must be comma-separated integers, got {text!r}") from None
    if any(p < 1 for p in periods):
        raise ValueError(f"periods must be >= 1, got {text!r}")
    return periods
