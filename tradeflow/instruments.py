"""``tradeflow instruments load FILE.csv``: publish a real instrument list to the instruments table.

The CSV has a header naming ``Instrument`` fields; ``symbol``, ``tick_size`` and
``lot_size`` are required, every other column is optional and an empty cell means the
field's default (null limits are not checked, precisions default to 8, status to
TRADING, currency to USD). ``ts`` defaults to the time of loading. A file is loaded
whole or not at all: every bad row is reported with its line number and nothing is
written, so a typo cannot publish half a list (or a HALTED row by accident).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from schemas import DecodeError, Instrument, validate

REQUIRED = ("symbol", "tick_size", "lot_size")
FIELDS = tuple(Instrument.model_fields)


class InstrumentFileError(ValueError):
    """The file cannot be loaded; ``str(err)`` lists every problem."""


def read_instruments(path: Path, now: datetime) -> list[Instrument]:
    """Read and validate every row of ``path``; raise ``InstrumentFileError`` if any is bad."""
    with path.open(newline="", encoding="utf-8") as fh:
        return parse_instruments(csv.DictReader(fh), now, name=str(path))


def parse_instruments(rows: csv.DictReader[str], now: datetime, *, name: str = "<csv>") -> list[Instrument]:
    """Validate CSV rows (a ``DictReader``) into instruments; see the module docstring."""
    header = [h.strip() for h in rows.fieldnames or []]
    missing = [f for f in REQUIRED if f not in header]
    unknown = [h for h in header if h not in FIELDS]
    if missing or unknown:
        problems = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})"] if unknown else [])
        raise InstrumentFileError(f"{name}: " + "; ".join(problems))
    out: list[Instrument] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(rows, start=2):
        data = _cells(raw.items())
        data.setdefault("ts", now)
        try:
            row = validate(Instrument, data)
        except DecodeError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        if row.symbol in seen:
            errors.append(f"line {line}: symbol {row.symbol} already on line {seen[row.symbol]}")
            continue
        seen[row.symbol] = line
        out.append(row)
    if errors:
        listed = "\n  ".join(errors)
        raise InstrumentFileError(f"{name}: {len(errors)} bad row(s), nothing loaded:\n  {listed}")
    if not out:
        raise InstrumentFileError(f"{name}: no instruments in the file")
    return out


def _cells(items: Iterable[tuple[str | None, str | list[str] | None]]) -> dict[str, object]:
    data: dict[str, object] = {}
    for key, value in items:
        if key is None or not isinstance(value, str):  # a row longer than the header
            data["_extra_cells"] = value
            continue
        if value.strip():
            data[key.strip()] = value.strip()
    return data
