"""Incremental technical indicators: O(1) work per price, float64, no I/O.

Conventions follow the standard technical-analysis libraries (TA-Lib):

- SMA(n): mean of the last n prices; null until n prices were seen.
- EMA(n): alpha = 2 / (n + 1), seeded by the SMA of the first n prices (so the first
  value appears at the n-th price and equals that SMA).
- RSI(n): Wilder's smoothing. The first value needs n price changes (n + 1 prices)
  and uses their simple average gain and loss; afterwards
  ``avg = (avg * (n - 1) + current) / n``. RSI = 100 * avg_gain / (avg_gain + avg_loss);
  on a window with no movement at all it is 50 (neither side dominates).
- VWAP: sum(price * volume) / sum(volume) over the UTC day of the tick ("session
  VWAP", reset at 00:00 UTC); null until some volume has traded that day.

``SymbolIndicators`` adds event time: the ordering policy for late and out-of-order
ticks (see its docstring).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

RESUM_EVERY = 1024
"""SMA recomputes its running sum from the window this often, to stop float drift."""


class SMA:
    """Simple moving average over the last ``period`` values."""

    __slots__ = ("_since_resum", "_sum", "_window", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._since_resum = 0

    def update(self, x: float) -> float | None:
        """Add a value; return the average once the window is full, else None."""
        window = self._window
        if len(window) == self.period:
            self._sum -= window[0]
        window.append(x)
        self._sum += x
        self._since_resum += 1
        if self._since_resum >= RESUM_EVERY:
            self._sum = sum(window)
            self._since_resum = 0
        if len(window) < self.period:
            return None
        return self._sum / self.period


class EMA:
    """Exponential moving average seeded by the SMA of the first ``period`` values."""

    __slots__ = ("_alpha", "_count", "_seed", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = period
        self._alpha = 2.0 / (period + 1)
        self._count = 0
        self._seed = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        """Add a value; return the EMA once seeded, else None."""
        if self.value is not None:
            self.value += self._alpha * (x - self.value)
            return self.value
        self._count += 1
        self._seed += x
        if self._count == self.period:
            self.value = self._seed / self.period
        return self.value


class RSI:
    """Relative strength index with Wilder's smoothing."""

    __slots__ = ("_avg_gain", "_avg_loss", "_count", "_prev", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._prev: float | None = None
        self._count = 0
        self._avg_gain = 0.0
        self._avg_loss = 0.0

    def update(self, x: float) -> float | None:
        """Add a price; return the RSI once ``period`` changes were seen, else None."""
        prev, self._prev = self._prev, x
        if prev is None:
            return None
        change = x - prev
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        n = self.period
        if self._count < n:
            self._count += 1
            self._avg_gain += gain
            self._avg_loss += loss
            if self._count < n:
                return None
            self._avg_gain /= n
            self._avg_loss /= n
        else:
            self._avg_gain = (self._avg_gain * (n - 1) + gain) / n
            self._avg_loss = (self._avg_loss * (n - 1) + loss) / n
        total = self._avg_gain + self._avg_loss
        return 50.0 if total == 0.0 else 100.0 * self._avg_gain / total


class SessionVWAP:
    """Volume-weighted average price since 00:00 UTC of the current tick's day."""

    __slots__ = ("_day", "_pv", "_v")

    def __init__(self) -> None:
        self._day: date | None = None
        self._pv = 0.0
        self._v = 0.0

    def update(self, price: float, volume: float, ts: datetime) -> float | None:
        """Add a trade; return the day's VWAP so far (None before any volume)."""
        day = ts.date()
        if day != self._day:
            self._day = day
            self._pv = 0.0
            self._v = 0.0
        self._pv += price * volume
        self._v += volume
        return self._pv / self._v if self._v > 0 else None


@dataclass(frozen=True)
class IndicatorConfig:
    """Which indicators to compute, by period."""

    sma: tuple[int, ...] = (5, 10, 20, 50)
    ema: tuple[int, ...] = (12, 26)
    rsi: tuple[int, ...] = (14,)
    vwap: bool = True
    max_future_skew_s: float | None = 60.0
    """How far (seconds) a tick may be ahead of its reference time; None: no check.
    See ``SymbolIndicators`` for which reference."""

    def columns(self) -> list[str]:
        """Return the output column names, in output order."""
        cols = [f"sma_{n}" for n in self.sma] + [f"ema_{n}" for n in self.ema]
        cols += [f"rsi_{n}" for n in self.rsi]
        return cols + (["vwap"] if self.vwap else [])


def _ahead(tick: Tick, ref: datetime, skew: timedelta) -> bool:
    """Tell whether the tick's ts or wm is more than ``skew`` after ``ref``."""
    latest = tick.ts if tick.wm is None or tick.wm <= tick.ts else tick.wm
    try:
        return latest - ref > skew
    except OverflowError:
        return False


def _future(tick: Tick, ref: str, skew_s: float) -> str:
    what = "wm" if tick.wm is not None and tick.wm > tick.ts else "ts"
    value = tick.wm if what == "wm" and tick.wm is not None else tick.ts
    return (
        f"future tick: {what} {value.isoformat()} of {tick.symbol} is more than "
        f"{skew_s:g} s ahead of {ref}"
    )


class IndicatorSet:
    """All configured indicators of one symbol, updated together."""

    def __init__(self, config: IndicatorConfig) -> None:
        self.config = config
        self._series: list[tuple[str, SMA | EMA | RSI]] = (
            [(f"sma_{n}", SMA(n)) for n in config.sma]
            + [(f"ema_{n}", EMA(n)) for n in config.ema]
            + [(f"rsi_{n}", RSI(n)) for n in config.rsi]
        )
        self._vwap = SessionVWAP() if config.vwap else None

    def update(self, price: float, volume: float, ts: datetime) -> dict[str, float | None]:
        """Add one tick; return every column's value after it."""
        out = {name: ind.update(price) for name, ind in self._series}
        if self._vwap is not None:
            out["vwap"] = self._vwap.update(price, volume, ts)
        return out


@dataclass(frozen=True, slots=True)
class Tick:
    """The part of a market_data record the indicators need."""

    symbol: str
    ts: datetime
    price: float
    volume: float
    wm: datetime | None = None
    src: tuple[int, int] | None = None
    """Partition and offset the tick was read from (for its dead letter), if known."""
    entered_at: datetime | None = None
    """When the tick entered the system (``MarketData.entered_at``), carried to its row."""


@dataclass(frozen=True, slots=True)
class Row:
    """One output row: the tick, its position in the symbol's stream, the values."""

    tick: Tick
    seq: int
    values: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Late:
    """A tick refused by the ordering policy, with the reason."""

    tick: Tick
    reason: str


@dataclass
class SymbolIndicators:
    """Indicators of one symbol with the event-time ordering policy.

    Indicators depend on order, so ticks are applied in event-time order:

    - Each tick carries the feed's watermark ``wm`` (no tick with ``ts < wm`` will
      follow); a tick without one is its own watermark (``wm = ts``: the feed claims
      to be in order).
    - An arriving tick waits in a small per-symbol buffer until the watermark seen
      for the symbol reaches its ``ts``; then buffered ticks are applied in ``ts``
      order (ties in arrival order). So out-of-order ticks within the feed's allowed
      lateness are re-ordered, at the cost of that much latency.
    - A tick older than a tick already applied cannot be re-ordered any more: it is
      late and goes to dead_letters with the reason (never silently dropped).
    - At end of input, everything still buffered is applied.

    Time sanity (``config.max_future_skew_s``, default 60 s): a tick from the future
    would move the watermark and make every honest tick after it late.

    - Following live (``now`` given): a tick whose ``ts`` or ``wm`` is more than the
      skew ahead of the wall clock is refused (``Late``, reason ``future tick``) and
      moves nothing.
    - Replaying (no ``now``): a gap forward is normal (overnight, daily bars), so a
      tick more than the skew ahead of the newest accepted tick of its symbol is
      *held*, moving no watermark, until the next tick of the symbol decides: a next
      tick at or after ``held ts - skew`` confirms that time moved on (the held tick is
      then applied as usual, before it); a next tick further back refutes it (the held
      tick is refused with the reason). At end of input a held tick is applied.
    """

    config: IndicatorConfig
    indicators: IndicatorSet = field(init=False)
    last_ts: datetime | None = None
    watermark: datetime | None = None
    seq: int = 0
    newest_ts: datetime | None = None
    """Newest ``ts`` accepted for the symbol (applied or buffered)."""
    held: Tick | None = None
    """A tick far ahead of ``newest_ts`` waiting for the next tick to confirm it."""
    _arrivals: int = 0
    _buffer: list[tuple[datetime, int, Tick]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.indicators = IndicatorSet(self.config)

    def on_tick(self, tick: Tick, now: datetime | None = None) -> list[Row | Late]:
        """Take one tick; return rows now ready (and ticks refused, as ``Late``).

        ``now`` is the wall clock when following live (None in a replay).
        """
        skew_s = getattr(self.config, "max_future_skew_s", None)  # older snapshots
        if skew_s is None:
            return self._accept(tick)
        skew = timedelta(seconds=skew_s)
        if now is not None and _ahead(tick, now, skew):
            return [Late(tick, _future(tick, f"the wall clock {now.isoformat()}", skew_s))]
        out: list[Row | Late] = []
        held = getattr(self, "held", None)
        if held is not None:
            self.held = None
            if _ahead(held, tick.ts, skew):  # time went back: the held tick was a spike
                out.append(Late(held, _future(held, f"the ticks around it ({tick.ts.isoformat()})", skew_s)))
            else:
                out += self._accept(held)
        newest = getattr(self, "newest_ts", None)
        if now is None and newest is not None and _ahead(tick, newest, skew):
            self.held = tick
            return out
        return out + self._accept(tick)

    def _accept(self, tick: Tick) -> list[Row | Late]:
        if self.last_ts is not None and tick.ts < self.last_ts:
            return [
                Late(
                    tick,
                    f"late tick: ts {tick.ts.isoformat()} is before "
                    f"{self.last_ts.isoformat()}, already applied for {tick.symbol}",
                )
            ]
        newest = getattr(self, "newest_ts", None)
        if newest is None or tick.ts > newest:
            self.newest_ts = tick.ts
        wm = tick.wm if tick.wm is not None else tick.ts
        if self.watermark is None or wm > self.watermark:
            self.watermark = wm
        if not self._buffer and tick.ts <= self.watermark:
            return [self._apply(tick)]  # the common case: in order, no buffering
        self._arrivals += 1
        heapq.heappush(self._buffer, (tick.ts, self._arrivals, tick))
        return self._release(self.watermark)

    def flush(self) -> list[Row | Late]:
        """Apply every buffered (and a held) tick (end of input)."""
        held = getattr(self, "held", None)
        out: list[Row | Late] = []
        if held is not None:
            self.held = None
            out = self._accept(held)
        return out + self._release(None)

    def _release(self, upto: datetime | None) -> list[Row | Late]:
        out: list[Row | Late] = []
        buf = self._buffer
        while buf and (upto is None or buf[0][0] <= upto):
            out.append(self._apply(heapq.heappop(buf)[2]))
        return out

    def _apply(self, tick: Tick) -> Row:
        self.last_ts = tick.ts
        row = Row(tick, self.seq, self.indicators.update(tick.price, tick.volume, tick.ts))
        self.seq += 1
        return row
