"""The internal codec (schemas/fast.py) vs the pydantic path, per record, in one run.

Records: ticks of a synthetic market (``SyntheticMarket``) and the sma_wide rows Job A
computes from them with the default indicator settings (``flows.indicators``), so the
values and columns are what the jobs write. For each kind, one round trip is
``decode(encode(record))``:

- fast: ``schemas.fast.fast_encode`` then ``schemas.fast.fast_decode`` (what the
  internal hops use);
- pydantic: ``schemas.base.encode`` then ``schemas.base.decode`` (the validating path,
  still used at ingress).

Encode and decode alone are timed too, with ``checked_decode`` (what the flows read
streams from outside with: every value validated, the records and refusals of the
pydantic path) for ticks, and, to tell how fast the machine is, the
standard library's ``json.loads`` of the same tick payloads (``json_loads_tick_us``:
a floor no JSON decode in Python goes far under); ``*_vs_json_loads`` divide each round
trip by it, a figure that moves less than the microseconds on a shared machine. The two
paths run alternately, ``--repeats`` times over the same records; each figure is the
best pass (the machine is shared), in microseconds a record. Before timing, every
record is checked: the fast bytes equal the pydantic bytes and the fast decode equals
the original, and the checked decode equals the pydantic one (``mismatches`` counts the
ones that do not; it must be 0).

Usage: ``python bench/codec.py [--records N] [--repeats R]``. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import _root  # noqa: F401 - first: puts the repository root on sys.path

from bench.harness import report
from connectors.feeds import SyntheticMarket
from schemas import MarketData, Record, SmaWide
from schemas.base import decode, encode
from schemas.fast import checked_decode, fast_decode, fast_encode
from tests.helpers import sma_rows


def make_records(n: int, symbols: int) -> tuple[list[MarketData], list[SmaWide]]:
    """A synthetic market and the sma_wide rows Job A writes for it (tests.helpers.sma_rows)."""
    ticks = list(SyntheticMarket(symbols=symbols, ticks=n, seed=20))
    return ticks, [r for r in sma_rows(ticks) if isinstance(r, SmaWide)]


def mismatches(records: list[Any]) -> int:
    bad = 0
    for rec in records:
        raw = encode(rec)
        back = fast_decode(type(rec), raw)
        if fast_encode(rec) != raw or back != rec or back.__pydantic_extra__ != rec.__pydantic_extra__:
            bad += 1
        elif checked_decode(type(rec), raw) != decode(type(rec), raw):
            bad += 1
    return bad


def per_record_us(records: list[Any], step: Callable[[Any], object]) -> float:
    started = time.perf_counter()
    for rec in records:
        step(rec)
    return (time.perf_counter() - started) / len(records) * 1e6


def measure(records: list[Record], repeats: int, label: str) -> dict[str, float]:
    model = type(records[0])
    payloads = [encode(r) for r in records]
    steps: dict[str, tuple[list[Any], Callable[[Any], object]]] = {
        "fast_roundtrip": (records, lambda r: fast_decode(model, fast_encode(r))),
        "pydantic_roundtrip": (records, lambda r: decode(model, encode(r))),
        "fast_encode": (records, fast_encode),
        "pydantic_encode": (records, encode),
        "fast_decode": (payloads, lambda b: fast_decode(model, b)),
        "checked_decode": (payloads, lambda b: checked_decode(model, b)),
        "pydantic_decode": (payloads, lambda b: decode(model, b)),
        "json_loads": (payloads, json.loads),
    }
    best = {name: float("inf") for name in steps}
    for i in range(repeats):
        for name, (items, step) in steps.items():
            best[name] = min(best[name], per_record_us(items, step))
        print(f"{label}: pass {i + 1}/{repeats}", file=sys.stderr, flush=True)
    return {name: round(us, 3) for name, us in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="ticks (and about as many rows)")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7, help="passes per path; the best counts")
    args = parser.parse_args()

    print(f"building {args.records} ticks and their sma_wide rows", file=sys.stderr, flush=True)
    ticks, rows = make_records(args.records, args.symbols)
    bad = mismatches(ticks) + mismatches(rows)
    tick = measure(list(ticks), args.repeats, "tick")
    wide = measure(list(rows), args.repeats, "sma_wide")
    result: dict[str, Any] = {
        "tick_roundtrip_us": tick["fast_roundtrip"],
        "sma_wide_roundtrip_us": wide["fast_roundtrip"],
        "pydantic_tick_roundtrip_us": tick["pydantic_roundtrip"],
        "pydantic_sma_wide_roundtrip_us": wide["pydantic_roundtrip"],
        "tick_vs_pydantic": round(tick["fast_roundtrip"] / tick["pydantic_roundtrip"], 3),
        "sma_wide_vs_pydantic": round(wide["fast_roundtrip"] / wide["pydantic_roundtrip"], 3),
        "tick_vs_json_loads": round(tick["fast_roundtrip"] / tick["json_loads"], 3),
        "sma_wide_vs_json_loads": round(wide["fast_roundtrip"] / tick["json_loads"], 3),
        "tick_checked_decode_us": tick["checked_decode"],
        "tick_checked_vs_pydantic_decode": round(tick["checked_decode"] / tick["pydantic_decode"], 3),
    }
    for kind, figures in (("tick", tick), ("sma_wide", wide)):
        for name in ("fast_encode", "fast_decode", "pydantic_encode", "pydantic_decode"):
            result[f"{kind}_{name}_us"] = figures[name]
    result.update({
        "json_loads_tick_us": tick["json_loads"],
        "sma_wide_columns": len(rows[0].indicators()) if rows else 0,
        "records": len(ticks), "rows": len(rows), "repeats": args.repeats, "mismatches": bad,
    })
    report(result)


if __name__ == "__main__":
    main()
