"""``tradeflow positions --fills fills.csv``: replay fills, print positions.

It runs the very ``operators.accounting.Position`` code Job C runs, so users can check
our positions and PnL against their own books.

Input: CSV with the columns ``ts,account,symbol,side,qty,price[,fee]``; a header row
with those names is optional, blank lines are skipped. ``ts`` is ISO 8601 (a time
without a zone is taken as UTC), ``side`` is BUY or SELL (any case), ``qty`` and
``price`` are positive decimals, ``fee`` a decimal (default 0). Fills are replayed in
time order; fills with the same ``ts`` keep their order in the file.

Output: CSV ``account,symbol,net_qty,avg_px,realized_pnl`` sorted by account then
symbol, flat positions included (they may have realised PnL). ``avg_px`` and
``realized_pnl`` are rounded half-even to 8 decimals (the DECIMAL(18,8) of the data
model); realised PnL is gross of fees, as in positions_state.

A row that cannot be used raises ``FillsFileError`` naming the file, the line and why.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import TextIO

from operators.accounting import MONEY, Position
from schemas.base import Side

COLUMNS = ("ts", "account", "symbol", "side", "qty", "price", "fee")
OUTPUT_COLUMNS = ("account", "symbol", "net_qty", "avg_px", "realized_pnl")
_EIGHT_PLACES = Decimal("1e-8")


class FillsFileError(ValueError):
    """A fills file row could not be used; the message names the file and line."""


@dataclass(frozen=True)
class Fill:
    """One parsed row of the fills file."""

    line: int
    ts: datetime
    account: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal


def _decimal(text: str, name: str, *, positive: bool) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number, got {text!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {text!r}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"ts is not an ISO 8601 time: {text!r}") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _side(text: str) -> Side:
    try:
        return Side(text.strip().upper())
    except ValueError:
        raise ValueError(f"side must be BUY or SELL, got {text!r}") from None


def _name(text: str, name: str) -> str:
    if not text.strip():
        raise ValueError(f"{name} is empty")
    return text.strip()


def parse_row(cells: list[str], line: int) -> Fill:
    """Turn one CSV row into a ``Fill``; raise ``ValueError`` saying what is wrong."""
    if len(cells) not in (6, 7):
        raise ValueError(f"expected 6 or 7 columns ({','.join(COLUMNS)}), got {len(cells)}")
    fee = cells[6] if len(cells) == 7 and cells[6].strip() else "0"
    return Fill(
        line=line,
        ts=_timestamp(cells[0]),
        account=_name(cells[1], "account"),
        symbol=_name(cells[2], "symbol"),
        side=_side(cells[3]),
        qty=_decimal(cells[4], "qty", positive=True),
        price=_decimal(cells[5], "price", positive=True),
        fee=_decimal(fee, "fee", positive=False),
    )


def _is_header(cells: list[str]) -> bool:
    return bool(cells) and cells[0].strip().lower() == "ts"


def read_fills(path: Path) -> list[Fill]:
    """Read and validate every row of ``path``; raise ``FillsFileError`` on a bad one."""
    fills: list[Fill] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            line = reader.line_num
            if not fills and _is_header(cells):
                names = tuple(c.strip().lower() for c in cells)
                if names not in (COLUMNS[:6], COLUMNS):
                    raise FillsFileError(
                        f"{path}, line {line}: header must be {','.join(COLUMNS)} "
                        f"(fee optional), got {','.join(cells)}"
                    )
                continue
            try:
                fills.append(parse_row(cells, line))
            except ValueError as exc:
                raise FillsFileError(f"{path}, line {line}: {exc}") from None
    return fills


def replay(fills: list[Fill]) -> dict[tuple[str, str], Position]:
    """Apply the fills in time order; return the position per (account, symbol)."""
    positions: dict[tuple[str, str], Position] = {}
    for fill in sorted(fills, key=lambda f: f.ts):
        key = (fill.account, fill.symbol)
        position = positions.setdefault(key, Position(fill.symbol))
        position.apply_fill(fill.side, fill.qty, fill.price, fill.fee)
    return positions


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _rounded(value: Decimal) -> str:
    with localcontext(MONEY):
        return _plain(value.quantize(_EIGHT_PLACES, rounding=ROUND_HALF_EVEN))


def run(fills_csv: Path, out: TextIO) -> None:
    """Replay ``fills_csv`` through the accounting code and write positions to ``out``."""
    positions = replay(read_fills(fills_csv))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    for (account, symbol), pos in sorted(positions.items()):
        writer.writerow(
            [account, symbol, _plain(pos.net_qty), _rounded(pos.avg_px),
             _rounded(pos.realized_pnl)]
        )
