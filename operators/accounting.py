"""Position and account accounting: average cost, realised and unrealised PnL, cash.

Pure domain code: it imports only schemas and the standard library, and every amount is
a ``Decimal``.

Method (average cost):

* A fill that opens or increases a position moves the average price to the
  volume-weighted price of the position.
* A fill that reduces a position realises ``(fill px - avg px) * qty * sign(position)``
  and leaves the average price unchanged.
* A fill larger than the position closes it (realising as above) and opens the
  remainder on the other side at the fill price.
* ``realized_pnl`` is the price PnL, gross of fees; fees are accumulated separately,
  so the net PnL of a position is ``realized_pnl + unrealized_pnl - fees``.

Valuation: a position is valued at its last mark; before any mark has been seen it is
valued at its average price (unrealised PnL zero), so the identities below hold at any
time:

* ``equity == cash + sum(market value)``
* ``realized + unrealized - fees == (cash - cash at start) + sum(market value)`` for a
  ledger that started flat.

Arithmetic runs in ``MONEY``, a 38-digit context: a DECIMAL(18,8) quantity times a
DECIMAL(18,8) price has at most 36 significant digits, so notionals and cash are exact
and only the average price (a division) is rounded, at the 38th digit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any

from schemas.base import Side

MONEY = Context(
    prec=38, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Decimal context for every accounting computation (see the module docstring)."""

ZERO = Decimal(0)


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


@dataclass
class Position:
    """One symbol's position in one account, by the average-cost method."""

    symbol: str
    net_qty: Decimal = ZERO
    """Signed quantity: long > 0, short < 0."""
    avg_px: Decimal = ZERO
    """Average price of the open position; zero when flat."""
    realized_pnl: Decimal = ZERO
    """Price PnL realised by reducing fills, gross of fees."""
    fees: Decimal = ZERO
    """Fees paid on every fill of this symbol (negative for rebates)."""
    last_mark: Decimal | None = None
    """Latest mark price, or None before the first mark."""

    def apply_fill(self, side: Side, qty: Decimal, px: Decimal, fee: Decimal = ZERO) -> Decimal:
        """Apply one fill and return the PnL it realised.

        Raise ``ValueError`` for a quantity or price that is not positive.
        """
        if qty <= 0 or px <= 0:
            raise ValueError(f"a fill needs qty > 0 and px > 0, got qty={qty} px={px}")
        with localcontext(MONEY):
            realized = ZERO
            if self.net_qty == 0 or _sign(self.net_qty) == side.sign:
                held = abs(self.net_qty)
                self.avg_px = (self.avg_px * held + px * qty) / (held + qty)
                self.net_qty += side.sign * qty
            else:
                closing = min(qty, abs(self.net_qty))
                realized = (px - self.avg_px) * closing * _sign(self.net_qty)
                self.net_qty += side.sign * qty
                if self.net_qty == 0:
                    self.avg_px = ZERO
                elif closing < qty:
                    self.avg_px = px
            self.realized_pnl += realized
            self.fees += fee
            return realized

    def mark(self, px: Decimal) -> None:
        """Set the mark price used for unrealised PnL and market value."""
        if px <= 0:
            raise ValueError(f"a mark must be positive, got {px}")
        self.last_mark = px

    @property
    def valuation_px(self) -> Decimal:
        """Return the price the position is valued at: the last mark, else the average."""
        return self.last_mark if self.last_mark is not None else self.avg_px

    @property
    def unrealized_pnl(self) -> Decimal:
        """Return ``(mark - avg px) * net qty`` (zero before the first mark)."""
        with localcontext(MONEY):
            return (self.valuation_px - self.avg_px) * self.net_qty

    @property
    def market_value(self) -> Decimal:
        """Return ``net qty * mark`` (signed: negative for a short)."""
        with localcontext(MONEY):
            return self.net_qty * self.valuation_px

    def to_dict(self) -> dict[str, Any]:
        """Return the position as plain data (a new dict)."""
        return {
            "symbol": self.symbol,
            "net_qty": self.net_qty,
            "avg_px": self.avg_px,
            "realized_pnl": self.realized_pnl,
            "fees": self.fees,
            "last_mark": self.last_mark,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        """Rebuild a position from ``to_dict`` output."""
        return cls(**data)


@dataclass
class Ledger:
    """An account's cash and positions, and the account-level figures derived from them.

    Cash moves with fills only: a buy pays ``qty * px + fee``, a sell receives
    ``qty * px - fee``. Marks are kept per symbol (also for symbols not held) with their
    event time; an older mark than the one held is ignored.
    """

    cash: Decimal = ZERO
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, tuple[Decimal, datetime]] = field(default_factory=dict)

    def position(self, symbol: str) -> Position:
        """Return the position in ``symbol``, creating a flat one (at the known mark)."""
        pos = self.positions.get(symbol)
        if pos is None:
            known = self.marks.get(symbol)
            pos = Position(symbol, last_mark=known[0] if known else None)
            self.positions[symbol] = pos
        return pos

    def mark_px(self, symbol: str) -> Decimal | None:
        """Return the last mark of ``symbol``, or None if none was seen."""
        known = self.marks.get(symbol)
        return known[0] if known else None

    def apply_fill(
        self, symbol: str, side: Side, qty: Decimal, px: Decimal, fee: Decimal = ZERO
    ) -> Position:
        """Apply one fill to the position and to cash; return the position."""
        pos = self.position(symbol)
        pos.apply_fill(side, qty, px, fee)
        with localcontext(MONEY):
            self.cash -= side.sign * qty * px + fee
        return pos

    def mark(self, symbol: str, px: Decimal, ts: datetime) -> bool:
        """Record a mark; return False (and change nothing) if it is older than the last."""
        if px <= 0:
            raise ValueError(f"a mark must be positive, got {px}")
        known = self.marks.get(symbol)
        if known is not None and ts < known[1]:
            return False
        self.marks[symbol] = (px, ts)
        if symbol in self.positions:
            self.positions[symbol].mark(px)
        return True

    @property
    def equity(self) -> Decimal:
        """Return cash plus the market value of every position."""
        with localcontext(MONEY):
            return self.cash + self.net_exposure

    @property
    def gross_exposure(self) -> Decimal:
        """Return the sum of the absolute market values."""
        with localcontext(MONEY):
            return sum((abs(p.market_value) for p in self.positions.values()), ZERO)

    @property
    def net_exposure(self) -> Decimal:
        """Return the sum of the signed market values."""
        with localcontext(MONEY):
            return sum((p.market_value for p in self.positions.values()), ZERO)

    @property
    def realized_pnl(self) -> Decimal:
        """Return the realised PnL of every position (gross of fees)."""
        with localcontext(MONEY):
            return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    @property
    def unrealized_pnl(self) -> Decimal:
        """Return the unrealised PnL of every position."""
        with localcontext(MONEY):
            return sum((p.unrealized_pnl for p in self.positions.values()), ZERO)

    @property
    def fees(self) -> Decimal:
        """Return the fees paid on every fill."""
        with localcontext(MONEY):
            return sum((p.fees for p in self.positions.values()), ZERO)

    def margin_used(self, max_leverage: Decimal | None) -> Decimal:
        """Return ``gross exposure / max leverage``.

        Without a usable leverage limit (None or zero) no leverage is granted, so the
        margin used is the whole gross exposure.
        """
        gross = self.gross_exposure
        if max_leverage is None or max_leverage <= 0:
            return gross
        with localcontext(MONEY):
            return gross / max_leverage

    def leverage(self) -> Decimal | None:
        """Return ``gross exposure / equity``.

        Zero without exposure. None when there is exposure but equity is zero or
        negative: leverage is then unbounded, and every leverage limit is exceeded.
        """
        gross = self.gross_exposure
        if gross == 0:
            return ZERO
        equity = self.equity
        if equity <= 0:
            return None
        with localcontext(MONEY):
            return gross / equity

    def snapshot(self) -> dict[str, Any]:
        """Return the ledger as plain picklable data (a deep copy)."""
        return {
            "cash": self.cash,
            "positions": [p.to_dict() for p in self.positions.values()],
            "marks": {s: [px, ts] for s, (px, ts) in self.marks.items()},
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Ledger:
        """Rebuild a ledger from ``snapshot`` output."""
        positions = [Position.from_dict(dict(p)) for p in data["positions"]]
        return cls(
            cash=data["cash"],
            positions={p.symbol: p for p in positions},
            marks={s: (px, ts) for s, (px, ts) in data["marks"].items()},
        )
