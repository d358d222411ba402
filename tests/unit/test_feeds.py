"""Feeds: files of ticks or bars, the synthetic market, paced replay."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.feeds import FeedError, SyntheticMarket, read_frame, replay, ticks_from_frame
from connectors.registry import Connectors
from tests.helpers import read_all


def test_synthetic_market_is_reproducible_and_valid() -> None:
    a = list(SyntheticMarket(symbols=5, ticks=500, seed=3))
    b = list(SyntheticMarket(symbols=5, ticks=500, seed=3))
    c = list(SyntheticMarket(symbols=5, ticks=500, seed=4))
    assert a == b
    assert a != c
    assert {t.symbol for t in a} == {f"SYM{i:03d}" for i in range(5)}
    assert all(t.price > 0 and t.volume > 0 for t in a)
    assert [t.ts for t in a] == sorted(t.ts for t in a)


def test_ticks_csv_becomes_watermarked_market_data(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,symbol,price,volume\n2026-01-05 14:30:00,A,10.5,100\n2026-01-05 14:30:01,B,20,5\n")
    ticks = list(ticks_from_frame(read_frame(path), lateness=timedelta(milliseconds=500)))
    assert [t.symbol for t in ticks] == ["A", "B"]
    assert ticks[0].price == Decimal("10.5")
    assert ticks[0].ts.tzinfo is not None
    assert ticks[1].wm == ticks[1].ts - timedelta(milliseconds=500)


def test_ohlcv_parquet_bars_become_ticks_at_the_close(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    pd.DataFrame(
        {
            "time": pd.to_datetime(["2026-01-05", "2026-01-06"], utc=True),
            "symbol": ["A", "A"],
            "open": [1.0, 2.0], "high": [3.0, 3.0], "low": [0.5, 1.5], "close": [2.0, 2.5],
            "volume": [10, 20],
        }
    ).to_parquet(path)
    ticks = list(ticks_from_frame(read_frame(path)))
    assert [t.price for t in ticks] == [Decimal("2.0"), Decimal("2.5")]


def test_file_without_the_needed_columns_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("when,what\n1,2\n")
    with pytest.raises(FeedError, match="missing column"):
        read_frame(path)


def test_paced_replay_follows_event_time(connectors: Connectors) -> None:
    ticks = list(SyntheticMarket(symbols=2, ticks=30, seed=1, ticks_per_s=5))
    span = (ticks[-1].ts - ticks[0].ts).total_seconds()
    started = time.monotonic()
    replay(ticks, connectors.writer("market_data"), speed=span / 0.5, progress=False)
    assert time.monotonic() - started >= 0.45
    assert len(read_all(connectors, "market_data")) == 30
    assert connectors.reader("market_data").is_closed()


def test_replay_stamps_each_batch_entered_at_with_the_clock_given(connectors: Connectors) -> None:
    ticks = list(SyntheticMarket(symbols=2, ticks=25, seed=1))
    times = iter([ticks[0].ts + timedelta(seconds=s, microseconds=1234) for s in range(3)])
    replay(ticks, connectors.writer("market_data"), batch=10, progress=False, clock=lambda: next(times))
    got = read_all(connectors, "market_data")
    entered = [t.entered_at for t in got]  # type: ignore[attr-defined]
    base = ticks[0].ts + timedelta(milliseconds=1)  # kept to whole milliseconds, as written
    assert entered == [base] * 10 + [base + timedelta(seconds=1)] * 10 + [base + timedelta(seconds=2)] * 5
    assert [t.model_copy(update={"entered_at": None}) for t in got] == ticks  # nothing else changed
