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

Account-level sums are kept up to date as fills and marks arrive (``ExactSum``), not
recomputed by scanning the positions: ``net_exposure`` and ``gross_exposure`` (hence
``equity``) cost O(1) to read. ``ExactSum`` returns exactly what the scan
``sum(terms, ZERO)`` in ``MONEY`` returns, down to the exponent (``0.00`` is not ``0``
on the wire), and falls back to that scan whenever a running sum would round.
Realised and unrealised PnL and fees, needed only for output rows, are summed on
demand (few positions per account).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from typing import Any

from schemas.base import Side

MONEY = Context(
    prec=38, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Decimal context for every accounting computation (see the module docstring)."""

ZERO = Decimal(0)

_EXACT = Context(
    prec=38, rounding=ROUND_HALF_EVEN,
    traps=[Inexact, InvalidOperation, DivisionByZero, Overflow],
)
"""``MONEY`` that refuses to round: the running sums of ``ExactSum`` use it to quantize."""

_EXACT_ADD = Context(
    prec=38, rounding=ROUND_HALF_EVEN,
    traps=[Rounded, Inexact, InvalidOperation, DivisionByZero, Overflow],
)
"""``_EXACT`` that also refuses to drop zeros: a sum of 39 digits ending in 0 is exact but
comes back with one digit less and a larger exponent than the scan's (``Rounded`` without
``Inexact``), e.g. two 38-digit unrealised PnLs. ``ExactSum`` adds and subtracts in it."""

_QUANTUM: dict[int, Decimal] = {}

SHARED_KEPT = 65_536
"""Distinct amounts ``shared`` remembers (then it starts again)."""

_SHARED: dict[str, Decimal] = {}

PNL_SUMS_FROM = 8
"""Positions from which a ledger keeps running PnL sums instead of scanning for them."""


def shared(value: Decimal) -> Decimal:
    """Return one shared object for every Decimal written the same (same digits, exponent).

    What a book keeps for long (positions, closed orders, limits) repeats a few amounts
    over and over (quantities, fees, zero), each a 104-byte object of its own; a book
    keeps the shared one instead. Decimals are immutable and the shared object has the
    same string (``str`` is exact and reversible: ``1.0`` and ``1.00`` are two entries),
    so nothing computed or published changes.
    """
    key = str(value)
    out = _SHARED.get(key)
    if out is None:
        if len(_SHARED) >= SHARED_KEPT:
            _SHARED.clear()
        out = _SHARED[key] = value
    return out


def shared_or_none(value: Decimal | None) -> Decimal | None:
    """Return ``shared(value)``, or None for None."""
    return None if value is None else shared(value)


def _quantum(exp: int) -> Decimal:
    q = _QUANTUM.get(exp)
    if q is None:
        q = _QUANTUM[exp] = Decimal((0, (1,), exp))
    return q


def _exponent(value: Decimal) -> int:
    exp = value.as_tuple().exponent
    if not isinstance(exp, int):  # pragma: no cover - MONEY traps NaN and infinity
        raise ValueError(f"not a finite amount: {value}")
    return exp


class ExactSum:
    """A running ``sum(terms, ZERO)`` over a changing set of terms, kept in O(1) per change.

    ``add`` and ``remove`` a term as it enters or leaves the set; ``total`` returns
    what the scan ``sum(terms, ZERO)`` in ``MONEY`` returns, digit for digit and with
    the same exponent: an exact decimal sum has the smallest exponent of its operands,
    so the running sum keeps a count of the terms' exponents and is re-quantized to
    ``min(0, exponents)`` (``0`` is ``ZERO``'s) when a term leaves.

    The running sum is computed in a context that traps ``Inexact`` and ``Rounded``:
    when an update would round (or drop a trailing zero), the sum becomes *stale* and
    ``total`` returns None, for the owner to scan the terms (the scan rounds its own
    way, which the running sum cannot copy) and ``rebuild``. An owner may also start
    it stale (``ExactSum(stale=True)``) to build it only when first read, e.g. after a
    restore. For terms that are all >= 0 an exact running sum implies an exact scan
    (every partial sum of the scan is smaller,
    with no smaller exponent).
    """

    __slots__ = ("_exps", "_value", "_value_exp", "stale")

    def __init__(self, terms: Iterable[Decimal] = (), *, stale: bool = False) -> None:
        self._value = ZERO
        self._value_exp = 0
        self._exps: list[int] = []
        """How many terms have each exponent, flat: ``[exp, count, exp, count, ...]``
        (a few exponents per sum; a list is a third of a dict's size)."""
        self.stale = False
        for term in terms:
            self.add(term)
        self.stale = self.stale or stale

    def add(self, term: Decimal) -> None:
        """Count ``term`` in the sum (nothing while stale: ``rebuild`` starts again)."""
        if self.stale:
            return
        exp = _exponent(term)
        exps = self._exps
        for i in range(0, len(exps), 2):
            if exps[i] == exp:
                exps[i + 1] += 1
                break
        else:
            exps += (exp, 1)
        try:
            self._value = _EXACT_ADD.add(self._value, term)
        except (Rounded, Inexact):
            self.stale = True
            return
        if exp < self._value_exp:
            self._value_exp = exp

    def remove(self, term: Decimal) -> None:
        """Take ``term`` (added before) out of the sum (nothing while stale)."""
        if self.stale:
            return
        exp = _exponent(term)
        exps = self._exps
        i = exps[::2].index(exp) * 2
        if exps[i + 1] == 1:
            del exps[i : i + 2]
        else:
            exps[i + 1] -= 1
        try:
            value = _EXACT_ADD.subtract(self._value, term)
            value_exp = min(self._value_exp, exp)
            ideal = min(0, *exps[::2]) if exps else 0
            if value_exp < ideal:
                value = _EXACT.quantize(value, _quantum(ideal))
                value_exp = ideal
        except (Rounded, Inexact):
            self.stale = True
            return
        self._value, self._value_exp = value, value_exp

    @property
    def empty(self) -> bool:
        """Tell whether no term is counted."""
        return not self._exps

    def total(self) -> Decimal | None:
        """Return the sum as the scan would, or None if stale (scan, then ``rebuild``)."""
        return None if self.stale else self._value

    def rebuild(self, terms: Iterable[Decimal]) -> None:
        """Start again from ``terms`` (in scan order); stale if their sum would round."""
        self._value, self._value_exp, self._exps, self.stale = ZERO, 0, [], False
        for term in terms:
            self.add(term)


def scan_sum(terms: Iterable[Decimal]) -> Decimal:
    """Return ``sum(terms, ZERO)`` in ``MONEY`` (what an ``ExactSum`` stands for)."""
    total = ZERO
    add = MONEY.add
    for term in terms:
        total = add(total, term)
    return total


def _total(agg: ExactSum, terms: Callable[[], Iterable[Decimal]]) -> Decimal:
    """Return ``agg``'s total, scanning ``terms()`` (and rebuilding) when it is stale."""
    value = agg.total()
    if value is not None:
        return value
    agg.rebuild(terms())
    value = agg.total()
    return scan_sum(terms()) if value is None else value


class SignedSum:
    """A running ``sum(terms, ZERO)`` of terms of either sign, equal to the scan.

    An exact running sum of signed terms does not make the scan exact: the scan adds
    in its own order, and a partial sum may need more digits than the total (``1E+40``,
    ``1E-10``, ``-1E+40``). The sum of the absolute values bounds every partial sum of
    any order, so it is kept beside: while it is exact, so is the scan, and the running
    sum is returned; otherwise the terms are scanned (as ``Ledger.net_exposure`` does
    with the gross exposure).
    """

    __slots__ = ("_abs", "_sum")

    def __init__(self, *, stale: bool = False) -> None:
        self._sum = ExactSum(stale=stale)
        self._abs = ExactSum(stale=stale)

    def add(self, term: Decimal) -> None:
        """Count ``term``; in MONEY's arithmetic whatever the context."""
        self._sum.add(term)
        self._abs.add(MONEY.abs(term))

    def move(self, before: Decimal, after: Decimal) -> None:
        """Replace the term ``before`` (counted before) by ``after``."""
        if before is after:
            return
        self._sum.remove(before)
        self._sum.add(after)
        self._abs.remove(MONEY.abs(before))
        self._abs.add(MONEY.abs(after))

    def total(self, terms: Callable[[], list[Decimal]]) -> Decimal:
        """Return the scan's sum of ``terms()``, from the running sums when they are exact."""
        if self._abs.stale:
            self._abs.rebuild([MONEY.abs(t) for t in terms()])
            if self._abs.stale:
                return scan_sum(terms())
        return _total(self._sum, terms)

    def rebuild(self, terms: list[Decimal]) -> None:
        """Start again from ``terms``."""
        self._sum.rebuild(terms)
        self._abs.rebuild([MONEY.abs(t) for t in terms])


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


@dataclass(slots=True)
class Position:
    """One symbol's position in one account, by the average-cost method.

    Inside a ``Ledger``, change a position through the ledger (``Ledger.apply_fill``,
    ``Ledger.mark``), which keeps the account's sums in step.
    """

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
        m = MONEY
        realized = ZERO
        net = self.net_qty
        if net == 0 or _sign(net) == side.sign:
            held = m.abs(net)
            self.avg_px = m.divide(m.add(m.multiply(self.avg_px, held), m.multiply(px, qty)),
                                   m.add(held, qty))
            self.net_qty = m.add(net, m.multiply(side.sign, qty))
        else:
            closing = min(qty, m.abs(net))
            realized = m.multiply(m.multiply(m.subtract(px, self.avg_px), closing), _sign(net))
            self.net_qty = m.add(net, m.multiply(side.sign, qty))
            if self.net_qty == 0:
                self.avg_px = ZERO
            elif closing < qty:
                self.avg_px = px
        self.realized_pnl = m.add(self.realized_pnl, realized)
        self.fees = m.add(self.fees, fee)
        return realized

    def share(self) -> None:
        """Keep shared objects for the amounts (see ``shared``): the same values."""
        self.net_qty = shared(self.net_qty)
        self.avg_px = shared(self.avg_px)
        self.realized_pnl = shared(self.realized_pnl)
        self.fees = shared(self.fees)
        self.last_mark = shared_or_none(self.last_mark)

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
        return MONEY.multiply(MONEY.subtract(self.valuation_px, self.avg_px), self.net_qty)

    @property
    def market_value(self) -> Decimal:
        """Return ``net qty * mark`` (signed: negative for a short)."""
        return MONEY.multiply(self.net_qty, self.valuation_px)

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


@dataclass(slots=True)
class Ledger:
    """An account's cash and positions, and the account-level figures derived from them.

    Cash moves with fills only: a buy pays ``qty * px + fee``, a sell receives
    ``qty * px - fee``. Marks are kept per symbol (also for symbols not held) with their
    event time; an older mark than the one held is ignored.

    Net and gross exposure are running sums over the positions' market values, updated
    by ``apply_fill`` and ``mark`` (see the module docstring); change positions through
    those two methods.
    """

    cash: Decimal = ZERO
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, tuple[Decimal, datetime]] = field(default_factory=dict)
    _net: ExactSum | None = field(init=False, repr=False, compare=False)
    _gross: ExactSum | None = field(init=False, repr=False, compare=False)
    _pnl: tuple[SignedSum, SignedSum] | None = field(init=False, repr=False, compare=False)
    """Realised and unrealised PnL, once the ledger holds ``PNL_SUMS_FROM`` positions."""

    def __post_init__(self) -> None:
        # Every running sum is built when first read (a restored book may not be read
        # for a while, and a sum not built costs nothing to keep up to date).
        self._net = self._gross = None
        self._pnl = None

    def _recompute(self) -> None:
        """Rebuild the running sums from the positions (construction, restore, debug)."""
        with localcontext(MONEY):
            values = [p.market_value for p in self.positions.values()]
            self._net, self._gross = ExactSum(), ExactSum()
            self._net.rebuild(values)
            self._gross.rebuild(abs(v) for v in values)
            self._pnl = None
            pnl = self._pnl_sums()
            if pnl is not None:
                pnl[0].rebuild(self._realized_terms())
                pnl[1].rebuild(self._unrealized_terms())

    def _pnl_sums(self) -> tuple[SignedSum, SignedSum] | None:
        # The PnL sums, built (stale: rebuilt when read) once there are enough positions;
        # below that a scan costs less than keeping them.
        if self._pnl is None and len(self.positions) >= PNL_SUMS_FROM:
            self._pnl = (SignedSum(stale=True), SignedSum(stale=True))
        return self._pnl

    def position(self, symbol: str) -> Position:
        """Return the position in ``symbol``, creating a flat one (at the known mark)."""
        pos = self.positions.get(symbol)
        if pos is None:
            known = self.marks.get(symbol)
            pos = Position(symbol, last_mark=known[0] if known else None)
            self.positions[symbol] = pos
            self._add_value(pos.market_value)
            if self._pnl is not None:
                self._pnl[0].add(pos.realized_pnl)
                self._pnl[1].add(pos.unrealized_pnl)
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
        before, realized, unrealized = pos.market_value, pos.realized_pnl, pos.unrealized_pnl
        pos.apply_fill(side, qty, px, fee)
        self._move_value(before, pos.market_value)
        if self._pnl is not None:
            self._pnl[0].move(realized, pos.realized_pnl)
            self._pnl[1].move(unrealized, pos.unrealized_pnl)
        pos.share()
        m = MONEY
        self.cash = m.subtract(self.cash, m.add(m.multiply(m.multiply(side.sign, qty), px), fee))
        return pos

    def mark(self, symbol: str, px: Decimal, ts: datetime) -> bool:
        """Record a mark; return False (and change nothing) if it is older than the last."""
        if px <= 0:
            raise ValueError(f"a mark must be positive, got {px}")
        known = self.marks.get(symbol)
        if known is not None and ts < known[1]:
            return False
        self.marks[symbol] = (px, ts)
        pos = self.positions.get(symbol)
        if pos is not None:
            old = pos.last_mark
            if old is px:
                return True
            before, unrealized = pos.market_value, pos.unrealized_pnl
            pos.mark(px)
            self._move_value(before, pos.market_value)
            if self._pnl is not None:
                self._pnl[1].move(unrealized, pos.unrealized_pnl)
        return True

    def _add_value(self, value: Decimal) -> None:
        if self._net is None or self._gross is None:
            return  # not built: built from the positions when first read
        self._net.add(value)
        self._gross.add(MONEY.abs(value))

    def _move_value(self, before: Decimal, after: Decimal) -> None:
        # A position's market value went from ``before`` to ``after``.
        if before is after or self._net is None or self._gross is None:
            return
        self._net.remove(before)
        self._net.add(after)
        self._gross.remove(MONEY.abs(before))
        self._gross.add(MONEY.abs(after))

    @property
    def equity(self) -> Decimal:
        """Return cash plus the market value of every position."""
        return MONEY.add(self.cash, self.net_exposure)

    @property
    def gross_exposure(self) -> Decimal:
        """Return the sum of the absolute market values."""
        return _total(self._exposure_sums()[1], self._gross_terms)

    @property
    def net_exposure(self) -> Decimal:
        """Return the sum of the signed market values."""
        # Only an exact gross sum bounds the scan's partial sums (so they are exact too).
        net, gross = self._exposure_sums()
        if gross.stale:
            gross.rebuild(self._gross_terms())
        if gross.stale:
            return scan_sum(p.market_value for p in self.positions.values())
        return _total(net, self._net_terms)

    def _exposure_sums(self) -> tuple[ExactSum, ExactSum]:
        # Net and gross exposure, built stale (rebuilt from the positions) when first read.
        if self._net is None or self._gross is None:
            self._net, self._gross = ExactSum(stale=True), ExactSum(stale=True)
        return self._net, self._gross

    def _gross_terms(self) -> Iterable[Decimal]:
        return [MONEY.abs(p.market_value) for p in self.positions.values()]

    def _net_terms(self) -> Iterable[Decimal]:
        return [p.market_value for p in self.positions.values()]

    def _realized_terms(self) -> list[Decimal]:
        return [p.realized_pnl for p in self.positions.values()]

    def _unrealized_terms(self) -> list[Decimal]:
        return [p.unrealized_pnl for p in self.positions.values()]

    @property
    def realized_pnl(self) -> Decimal:
        """Return the realised PnL of every position (gross of fees)."""
        return self._pnl_total(0, self._realized_terms)

    @property
    def unrealized_pnl(self) -> Decimal:
        """Return the unrealised PnL of every position (a running sum, as the scan)."""
        return self._pnl_total(1, self._unrealized_terms)

    def _pnl_total(self, which: int, terms: Callable[[], list[Decimal]]) -> Decimal:
        # The running sum ``which`` (0 realised, 1 unrealised), or the scan below PNL_SUMS_FROM.
        pnl = self._pnl_sums()
        return scan_sum(terms()) if pnl is None else pnl[which].total(terms)

    @property
    def fees(self) -> Decimal:
        """Return the fees paid on every fill."""
        return scan_sum(p.fees for p in self.positions.values())

    def margin_used(self, max_leverage: Decimal | None) -> Decimal:
        """Return ``gross exposure / max leverage``.

        Without a usable leverage limit (None or zero) no leverage is granted, so the
        margin used is the whole gross exposure.
        """
        gross = self.gross_exposure
        if max_leverage is None or max_leverage <= 0:
            return gross
        return MONEY.divide(gross, max_leverage)

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
        return MONEY.divide(gross, equity)

    def check_sums(self) -> None:
        """Raise ``AssertionError`` if a running sum differs from a scan (debug, tests)."""
        with localcontext(MONEY):
            values = [p.market_value for p in self.positions.values()]
            scans = (sum(values, ZERO), sum((abs(v) for v in values), ZERO),
                     sum(self._realized_terms(), ZERO), sum(self._unrealized_terms(), ZERO))
        held = (self.net_exposure, self.gross_exposure, self.realized_pnl, self.unrealized_pnl)
        if [str(v) for v in held] != [str(v) for v in scans]:
            raise AssertionError(f"ledger sums (net, gross, realized, unrealized) {held} "
                                 f"!= scan {scans}")

    def snapshot(self) -> dict[str, Any]:
        """Return the ledger as plain picklable data (a deep copy)."""
        return {
            "cash": self.cash,
            "positions": [p.to_dict() for p in self.positions.values()],
            "marks": {s: [px, ts] for s, (px, ts) in self.marks.items()},
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Ledger:
        """Rebuild a ledger from ``snapshot`` output (the running sums are rebuilt)."""
        positions = [Position.from_dict(p) for p in data["positions"]]
        return cls(
            cash=data["cash"],
            positions={p.symbol: p for p in positions},
            marks={s: (px, ts) for s, (px, ts) in data["marks"].items()},
        )
