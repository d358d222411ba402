"""Market feeds: replay a file of ticks or bars, or generate a seeded synthetic market.

Files: CSV or Parquet with ``time,symbol,price,volume`` (ticks) or
``time,symbol,open,high,low,close,volume`` (OHLCV bars; each bar becomes one tick at
its close price and volume, stamped with the bar's time). Times without a zone are
read as UTC.

Every tick carries a watermark ``wm``: the latest event time the feed has emitted
minus the allowed lateness (0 by default, i.e. the feed is in order).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from connectors.base import StreamWriter, stamp_entered
from schemas import MarketData

TICK_COLUMNS = ("time", "symbol", "price", "volume")
BAR_COLUMNS = ("time", "symbol", "open", "high", "low", "close", "volume")


class FeedError(ValueError):
    """A feed file cannot be read as ticks or bars."""


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file of ticks or bars into ``time,symbol,price,volume``."""
    if not path.exists():
        raise FeedError(f"no such file: {path}")
    if path.suffix.lower() in {".parquet", ".pq"}:
        try:
            df = pd.read_parquet(path)
        except ImportError as exc:  # pyarrow is the parquet extra, not in the job image
            raise FeedError(f"reading {path.name} needs pyarrow: pip install 'tradeflow[parquet]' "
                            f"({exc})") from exc
    else:
        df = pd.read_csv(path)
    df.columns = [str(c).strip().lower() for c in df.columns]
    if set(BAR_COLUMNS) <= set(df.columns):
        df = df.rename(columns={"close": "price"})
    missing = [c for c in TICK_COLUMNS if c not in df.columns]
    if missing:
        raise FeedError(
            f"{path}: missing column(s) {', '.join(missing)}; expected "
            f"{','.join(TICK_COLUMNS)} or {','.join(BAR_COLUMNS)}"
        )
    out = df[list(TICK_COLUMNS)].copy()
    out["time"] = pd.to_datetime(out["time"], utc=True, format="mixed")
    return out


def ticks_from_frame(df: pd.DataFrame, *, lateness: timedelta = timedelta(0)) -> Iterator[MarketData]:
    """Yield validated ticks from a frame, each with the feed's watermark."""
    high: datetime | None = None
    for ts, symbol, price, volume in df.itertuples(index=False, name=None):
        t = ts.to_pydatetime()
        high = t if high is None or t > high else high
        yield MarketData(
            symbol=str(symbol),
            ts=t,
            price=Decimal(str(price)),
            volume=Decimal(str(volume)),
            wm=high - lateness,
        )


@dataclass(frozen=True)
class SyntheticMarket:
    """A seeded random-walk market: many symbols, trades at random times.

    Prices follow a geometric random walk with per-symbol volatility; inter-trade gaps
    are exponential (a Poisson process, ``ticks_per_s`` per symbol on average); volumes
    are log-normal lots of 100. The same seed gives the same ticks.
    """

    symbols: int = 20
    ticks: int = 10_000
    seed: int = 7
    start: datetime = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    ticks_per_s: float = 2.0
    lateness: timedelta = timedelta(0)

    def symbol_names(self) -> list[str]:
        """Return the symbols' names (SYM000, SYM001...)."""
        return [f"SYM{i:03d}" for i in range(self.symbols)]

    def __iter__(self) -> Iterator[MarketData]:
        rng = random.Random(self.seed)  # noqa: S311 - simulation, not crypto
        names = self.symbol_names()
        price = {s: rng.uniform(20, 500) for s in names}
        vol = {s: rng.uniform(0.0005, 0.003) for s in names}
        clock = self.start
        rate = self.ticks_per_s * len(names)
        for _ in range(self.ticks):
            clock += timedelta(microseconds=int(rng.expovariate(rate) * 1e6) + 1000)
            sym = names[rng.randrange(len(names))]
            price[sym] *= math.exp(rng.gauss(0, vol[sym]))
            lots = max(1, int(rng.lognormvariate(1.0, 1.0)))
            yield MarketData(
                symbol=sym,
                ts=clock,
                price=Decimal(f"{price[sym]:.2f}") if price[sym] >= 0.01 else Decimal("0.01"),
                volume=Decimal(lots * 100),
                wm=clock - self.lateness,
            )


def replay(
    ticks: Iterable[MarketData],
    writer: StreamWriter,
    *,
    total: int | None = None,
    speed: float | None = None,
    batch: int = 1000,
    progress: bool = True,
    close: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> int:
    """Write ticks into a stream; return how many were written.

    ``speed`` None replays at full speed; otherwise event time is paced against the
    wall clock (1.0 = real time, 10.0 = ten times faster). With ``close`` the stream
    is closed at the end, so bounded readers stop there. Each batch is stamped
    ``entered_at`` = ``clock()`` (the wall clock by default) as it is written: the time
    the ticks entered the system, which every job carries on (README, "Latency").
    """
    now = clock or _wall_clock
    count = 0
    buf: list[MarketData] = []
    first_ts: datetime | None = None
    started = time.monotonic()
    bar = tqdm(total=total, unit="tick", desc="market_data", disable=not progress)
    for tick in ticks:
        if speed is not None:
            first_ts = first_ts or tick.ts
            due = (tick.ts - first_ts).total_seconds() / speed
            lag = due - (time.monotonic() - started)
            if lag > 0:
                if buf:
                    writer.write(stamp_entered(buf, now()))
                    bar.update(len(buf))
                    buf = []
                time.sleep(lag)
        buf.append(tick)
        count += 1
        if len(buf) >= batch:
            writer.write(stamp_entered(buf, now()))
            bar.update(len(buf))
            buf = []
    if buf:
        writer.write(stamp_entered(buf, now()))
        bar.update(len(buf))
    bar.close()
    if close:
        writer.close_stream()
    else:
        writer.finished()
    return count


def _wall_clock() -> datetime:
    return datetime.now(UTC)
