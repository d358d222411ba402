"""Instrument reference data: what a tick or an order must look like to be believed.

Pure domain code (schemas and the standard library only). ``flows/indicators.py``
(Job A) keeps one ``TickGate`` per symbol in front of the indicators; the pre-trade
rules of Job C (``operators.risk``: INSTRUMENT_STATUS, TICK_SIZE, LOT_SIZE,
MIN_NOTIONAL) use the grid helpers here.

A tick is refused (the flow dead-letters it with the reason, and it moves no
watermark, no indicator and no band reference) when:

- it repeats a tick already applied: same symbol, ``ts``, price and volume
  ("duplicate tick"; the same trade written twice to market_data, at two offsets). The
  gate remembers the last ``DUPLICATES_KEPT`` applied ticks per symbol, so a repeat
  arriving later than that is not recognised;
- the instruments table has rows (``enforce``) and none is for the tick's symbol
  ("unknown symbol"). With an empty table this check is off, so pipelines that never
  published instruments run as before;
- the symbol's instrument is HALTED or CLOSED;
- its price is off the grid: not a whole multiple of ``tick_size``, or with more
  decimal places than ``price_precision`` ("off-precision price");
- it moves more than ``price_band_pct`` percent away from the last price the gate
  accepted for the symbol ("outlier"). The first tick of a symbol, and the first tick
  after a new instrument row (a resume after a halt, or ops acknowledging a real gap),
  sets the reference without a band check.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal, InvalidOperation

from schemas.trading import Instrument, InstrumentStatus

DUPLICATES_KEPT = 4096
"""Applied ticks remembered per symbol to recognise the same tick written twice."""

HUNDRED = Decimal(100)

_EXACT = Context(prec=60)
"""Wide enough for any quotient or product of DECIMAL(18,8) values, exactly."""


def places(value: Decimal) -> int:
    """Return how many decimal places ``value`` needs (trailing zeros do not count)."""
    exponent = value.normalize(_EXACT).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def on_grid(value: Decimal, step: Decimal) -> bool:
    """Tell whether ``value`` is a whole multiple of ``step`` (> 0), exactly."""
    try:
        return _EXACT.remainder(value, step) == 0
    except InvalidOperation:  # quotient too large for the context: not a sane value
        return False


def _off_grid(value: Decimal, precision: tuple[str, int], step: tuple[str, Decimal]) -> str | None:
    """Return why ``value`` has too many decimal places or is off the grid, or None.

    ``precision`` and ``step`` are (instruments field, value): how the reason names them.
    """
    (precision_field, most), (step_field, size) = precision, step
    if places(value) > most:
        return f"has more than {precision_field} {most} decimal places"
    if not on_grid(value, size):
        return f"is not a multiple of {step_field} {fmt(size)}"
    return None


def price_off_grid(price: Decimal, inst: Instrument) -> str | None:
    """Return why ``price`` is not a valid price of ``inst``, or None if it is."""
    return _off_grid(price, ("price_precision", inst.price_precision), ("tick_size", inst.tick_size))


def qty_off_lot(qty: Decimal, inst: Instrument) -> str | None:
    """Return why ``qty`` is not a valid order quantity of ``inst``, or None if it is."""
    off = _off_grid(qty, ("qty_precision", inst.qty_precision), ("lot_size", inst.lot_size))
    if off is not None:
        return off
    if inst.min_qty is not None and qty < inst.min_qty:
        return f"is below min_qty {fmt(inst.min_qty)}"
    if inst.max_qty is not None and qty > inst.max_qty:
        return f"is above max_qty {fmt(inst.max_qty)}"
    return None


def band_move_pct(price: Decimal, last: Decimal) -> Decimal:
    """Return ``|price - last| / last`` in percent (``last`` > 0), rounded for display."""
    return _EXACT.divide(_EXACT.multiply(_EXACT.abs(_EXACT.subtract(price, last)), HUNDRED), last)


def beyond_band(price: Decimal, last: Decimal, band_pct: Decimal) -> bool:
    """Tell whether ``price`` is more than ``band_pct`` percent away from ``last``, exactly."""
    move = _EXACT.multiply(_EXACT.abs(_EXACT.subtract(price, last)), HUNDRED)
    return move > _EXACT.multiply(last, band_pct)


def fmt(value: Decimal) -> str:
    """Return an exact, non-scientific decimal string."""
    return format(value, "f")


@dataclass
class TickGate:
    """One symbol's checks of its ticks against the instruments table (see the module).

    ``instrument`` is the symbol's latest row (None: none seen); ``enforce`` says the
    table has rows, so a symbol without one is unknown.
    """

    enforce: bool = False
    instrument: Instrument | None = None
    last_price: Decimal | None = None
    """The last price accepted: the band's reference (reset by a new instrument row)."""
    recent: deque[tuple[datetime, Decimal, Decimal]] = field(default_factory=deque)
    _recent_set: set[tuple[datetime, Decimal, Decimal]] = field(default_factory=set)

    def on_instrument(self, row: Instrument) -> None:
        """Take a new row of the symbol; the next tick sets the band's reference."""
        self.instrument = row
        self.enforce = True
        self.last_price = None

    def check(self, symbol: str, ts: datetime, price: Decimal, volume: Decimal) -> str | None:
        """Return why a tick is refused, or None if it is accepted (and then remember it)."""
        key = (ts, price, volume)
        if key in self._recent_set:
            return (f"duplicate tick: {symbol} at {ts.isoformat()} price {fmt(price)} volume "
                    f"{fmt(volume)} was already applied")
        reason = self._refusal(symbol, price)
        if reason is not None:
            return reason
        self.last_price = price
        self.recent.append(key)
        self._recent_set.add(key)
        if len(self.recent) > DUPLICATES_KEPT:
            self._recent_set.discard(self.recent.popleft())
        return None

    def _refusal(self, symbol: str, price: Decimal) -> str | None:
        inst = self.instrument
        if inst is None:
            if self.enforce:
                return f"unknown symbol {symbol}: the instruments table has no row for it"
            return None
        if inst.status is not InstrumentStatus.TRADING:
            return f"instrument {symbol} is {inst.status.value}: no tick accepted"
        off = price_off_grid(price, inst)
        if off is not None:
            return f"off-precision price: {fmt(price)} of {symbol} {off}"
        last, band = self.last_price, inst.price_band_pct
        if last is not None and band is not None and beyond_band(price, last, band):
            move = band_move_pct(price, last).quantize(Decimal("0.01"), context=_EXACT)
            return (f"outlier: price {fmt(price)} of {symbol} moves {fmt(move)}% from the last "
                    f"accepted price {fmt(last)}, beyond the band of {fmt(band)}%")
        return None

    def copy(self) -> TickGate:
        """Return a copy (for snapshots)."""
        return TickGate(self.enforce, self.instrument, self.last_price, deque(self.recent),
                        set(self._recent_set))


@dataclass(frozen=True)
class StartupTable:
    """The instruments table as a job read it at start-up: rows up to ``ends``, per partition.

    Job A reads the table before its dataflow starts (so its first tick is already
    checked against every row written before it: fail closed), then follows the
    table's changelog for halts, resumes and new symbols while it runs. Rows of the
    changelog before ``ends`` are in ``rows`` already; a later row is news.
    """

    ends: dict[int, int] = field(default_factory=dict)
    rows: dict[str, Instrument] = field(default_factory=dict)

    def seen(self, partition: int, offset: int) -> bool:
        """Tell whether the changelog record at ``(partition, offset)`` is in ``rows``."""
        return offset < self.ends.get(partition, 0)

    def gate(self, symbol: str, resume: TickGate | None = None) -> TickGate:
        """Return the gate of ``symbol``: fresh, or ``resume`` brought up to this table.

        The table has rows (``enforce``) when it had any at start-up or the gate saw
        one since; a row newer than the resumed gate's replaces it.
        """
        gate = resume.copy() if resume is not None else TickGate()
        gate.enforce = gate.enforce or bool(self.rows)
        row = self.rows.get(symbol)
        if row is not None and row != gate.instrument:
            gate.on_instrument(row)
        return gate
