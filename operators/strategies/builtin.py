"""The built-in strategies: SMA crossover, RSI mean reversion, VWAP deviation.

Every rule skips rows where an indicator it reads is null (the window is not full
yet): such rows leave its state unchanged. The first usable row of a symbol only
sets the state; a rule never fires on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from operators.strategies.base import Intent, Param, Strategy, register
from schemas.base import Side
from schemas.market import SmaWide


@dataclass
class CrossState:
    """Per-symbol state of ``sma_cross``: the last non-zero sign of fast - slow (0: none)."""

    last_sign: int = 0


@register("sma_cross")
class SmaCross(Strategy[CrossState]):
    """SMA crossover: buy when ``sma_<fast>`` crosses above ``sma_<slow>``, sell below.

    On each row where both are non-null, ``d = sma_fast - sma_slow``. The rule
    remembers the sign of the last non-zero ``d``. It buys on a row with ``d > 0``
    when that remembered sign is negative, and sells on a row with ``d < 0`` when it
    is positive. ``d == 0`` is no side: it neither fires nor changes the remembered
    sign, so ``-, 0, +`` is one cross (at the ``+`` row).

    Params: ``fast`` (int >= 1), ``slow`` (int > fast).
    """

    PARAMS: ClassVar[Mapping[str, Param]] = {
        "fast": Param(int, ge=1, doc="period of the fast SMA"),
        "slow": Param(int, ge=2, doc="period of the slow SMA, greater than fast"),
    }

    def __init__(self, params: Mapping[str, object]) -> None:
        super().__init__(params)
        self._require_less("fast", "slow")
        self.fast = int(self.params["fast"])
        self.slow = int(self.params["slow"])
        self.fast_col = f"sma_{self.fast}"
        self.slow_col = f"sma_{self.slow}"

    def columns(self) -> tuple[str, ...]:
        """Return the two SMA columns."""
        return self.fast_col, self.slow_col

    def new_state(self) -> CrossState:
        """Return a state with no sign seen yet."""
        return CrossState()

    def on_row(self, state: CrossState, row: SmaWide) -> Intent | None:
        """Fire on a change of the sign of fast - slow."""
        fast = row.indicator(self.fast_col)
        slow = row.indicator(self.slow_col)
        if fast is None or slow is None:
            return None
        diff = fast - slow
        sign = (diff > 0) - (diff < 0)
        if sign == 0:
            return None
        last, state.last_sign = state.last_sign, sign
        if last == 0 or last == sign:
            return None
        side = Side.BUY if sign > 0 else Side.SELL
        verb = "above" if sign > 0 else "below"
        return Intent(
            side,
            f"{self.fast_col} {fast:.4f} crossed {verb} {self.slow_col} {slow:.4f}",
            {self.fast_col: fast, self.slow_col: slow},
        )


@dataclass
class RsiState:
    """Per-symbol state of ``rsi_reversion``: the previous non-null RSI."""

    prev: float | None = None


@register("rsi_reversion")
class RsiReversion(Strategy[RsiState]):
    """RSI mean reversion on ``rsi_<period>``.

    With ``prev`` the RSI of the previous row where it was non-null and ``rsi`` the
    current one: buy when ``prev >= oversold`` and ``rsi < oversold`` (RSI crosses
    below the oversold line); sell when ``prev <= overbought`` and
    ``rsi > overbought`` (crosses above the overbought line). Staying beyond a line
    does not fire again; the RSI has to come back and cross it anew.

    Params: ``period`` (int >= 1, default 14), ``oversold`` (default 30) and
    ``overbought`` (default 70), with ``0 < oversold < overbought < 100``.
    """

    PARAMS: ClassVar[Mapping[str, Param]] = {
        "period": Param(int, default=14, ge=1, doc="RSI period (column rsi_<period>)"),
        "oversold": Param(float, default=30.0, gt=0, lt=100, doc="buy below this line"),
        "overbought": Param(float, default=70.0, gt=0, lt=100, doc="sell above this line"),
    }

    def __init__(self, params: Mapping[str, object]) -> None:
        super().__init__(params)
        self.period = int(self.params["period"])
        self._require_less("oversold", "overbought")
        self.oversold = float(self.params["oversold"])
        self.overbought = float(self.params["overbought"])
        self.col = f"rsi_{self.period}"

    def columns(self) -> tuple[str, ...]:
        """Return the RSI column."""
        return (self.col,)

    def new_state(self) -> RsiState:
        """Return a state with no RSI seen yet."""
        return RsiState()

    def on_row(self, state: RsiState, row: SmaWide) -> Intent | None:
        """Fire when the RSI crosses into the oversold or overbought zone."""
        rsi = row.indicator(self.col)
        if rsi is None:
            return None
        prev, state.prev = state.prev, rsi
        if prev is None:
            return None
        if prev >= self.oversold > rsi:
            line, side, verb = self.oversold, Side.BUY, "below oversold"
        elif prev <= self.overbought < rsi:
            line, side, verb = self.overbought, Side.SELL, "above overbought"
        else:
            return None
        return Intent(
            side,
            f"{self.col} {rsi:.2f} crossed {verb} {line:g} (previous {prev:.2f})",
            {self.col: rsi, f"{self.col}_prev": prev},
        )


@dataclass
class VwapState:
    """Per-symbol state of ``vwap_deviation``: which sides may fire."""

    buy_armed: bool = True
    sell_armed: bool = True


@register("vwap_deviation")
class VwapDeviation(Strategy[VwapState]):
    """Trade deviations of the price from the session VWAP, with re-arming.

    On each row with a VWAP, ``dev_bps = (price - vwap) / vwap * 1e4``. Both sides
    start armed.

    - Buy side: ``dev_bps < -threshold_bps`` fires a BUY if the side is armed and
      disarms it; ``dev_bps >= -rearm_bps`` re-arms it (the price came back to within
      ``rearm_bps`` below VWAP, or above it).
    - Sell side, mirrored: ``dev_bps > threshold_bps`` fires a SELL if armed and
      disarms it; ``dev_bps <= rearm_bps`` re-arms it.

    Between the two lines a side keeps its state, so a price hovering beyond the
    threshold fires once, not on every row.

    Params: ``threshold_bps`` (> 0), ``rearm_bps`` (>= 0, less than threshold_bps,
    default 0: re-arm once the price is back at VWAP).
    """

    PARAMS: ClassVar[Mapping[str, Param]] = {
        "threshold_bps": Param(float, gt=0, doc="fire beyond this deviation from VWAP"),
        "rearm_bps": Param(float, default=0.0, ge=0, doc="re-arm within this deviation"),
    }

    def __init__(self, params: Mapping[str, object]) -> None:
        super().__init__(params)
        self._require_less("rearm_bps", "threshold_bps")
        self.threshold = float(self.params["threshold_bps"])
        self.rearm = float(self.params["rearm_bps"])

    def columns(self) -> tuple[str, ...]:
        """Return the VWAP column."""
        return ("vwap",)

    def new_state(self) -> VwapState:
        """Return a state with both sides armed."""
        return VwapState()

    def on_row(self, state: VwapState, row: SmaWide) -> Intent | None:
        """Fire once per excursion beyond the threshold; re-arm near VWAP."""
        vwap = row.vwap
        if vwap is None or vwap <= 0:
            return None
        dev = (row.price - vwap) / vwap * 1e4
        side: Side | None = None
        if dev < -self.threshold:
            if state.buy_armed:
                state.buy_armed = False
                side = Side.BUY
        elif dev >= -self.rearm:
            state.buy_armed = True
        if dev > self.threshold:
            if state.sell_armed:
                state.sell_armed = False
                side = Side.SELL
        elif dev <= self.rearm:
            state.sell_armed = True
        if side is None:
            return None
        where = "below" if side is Side.BUY else "above"
        return Intent(
            side,
            f"price {row.price:g} is {abs(dev):.1f} bps {where} vwap {vwap:.4f} "
            f"(threshold {self.threshold:g} bps)",
            {"price": row.price, "vwap": vwap, "dev_bps": dev},
        )
