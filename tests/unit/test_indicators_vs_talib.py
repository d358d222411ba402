"""The indicator command's output against TA-Lib on a real price history.

The history is Google's daily prices 2004-2013 as shipped inside the ``backtesting``
package (a dev dependency), so the test needs no network.
"""

from __future__ import annotations

from pathlib import Path

import backtesting
import numpy as np
import pandas as pd
import pytest
import talib

from tradeflow.cli import main

GOOG = Path(backtesting.__file__).parent / "test" / "GOOG.csv"


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(GOOG)
    ticks = pd.DataFrame(
        {
            "time": pd.to_datetime(raw.iloc[:, 0], utc=True),
            "symbol": "GOOG",
            "price": raw["Close"],
            "volume": raw["Volume"],
        }
    )
    d = tmp_path_factory.mktemp("goog")
    ticks.to_csv(d / "ticks.csv", index=False)
    out = d / "out.csv"
    rc = main(
        ["indicators", "--input", str(d / "ticks.csv"), "--output", str(out),
         "--sma", "5,10,20,50", "--ema", "12,26", "--rsi", "14"]
    )
    assert rc == 0
    return ticks, pd.read_csv(out)


def test_indicator_command_writes_one_row_per_tick(computed: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ticks, out = computed
    assert len(out) == len(ticks) > 2000
    assert list(out.columns) == [
        "time", "symbol", "price", "sma_5", "sma_10", "sma_20", "sma_50",
        "ema_12", "ema_26", "rsi_14", "vwap",
    ]


@pytest.mark.parametrize(
    ("column", "fn", "period", "rel"),
    [
        ("sma_5", talib.SMA, 5, 1e-9),
        ("sma_50", talib.SMA, 50, 1e-9),
        ("ema_12", talib.EMA, 12, 1e-9),
        ("ema_26", talib.EMA, 26, 1e-9),
        ("rsi_14", talib.RSI, 14, 1e-6),
    ],
)
def test_indicator_matches_talib_after_warmup(
    computed: tuple[pd.DataFrame, pd.DataFrame], column: str, fn: object, period: int, rel: float
) -> None:
    ticks, out = computed
    want = fn(ticks["price"].to_numpy(dtype=float), timeperiod=period)  # type: ignore[operator]
    got = out[column].to_numpy(dtype=float)
    first = int(np.argmax(~np.isnan(want)))
    # Same warm-up: null exactly where TA-Lib has no value yet.
    assert np.isnan(got[:first]).all()
    # Wilder's RSI converges from its seed; compare after a long warm-up as is usual.
    start = first + (10 * period if column.startswith("rsi") else 0)
    np.testing.assert_allclose(got[start:], want[start:], rtol=rel, atol=0)


def test_rsi_matches_talib_from_its_first_value(computed: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # Same seed convention as TA-Lib: simple average of the first n gains and losses.
    ticks, out = computed
    want = talib.RSI(ticks["price"].to_numpy(dtype=float), timeperiod=14)
    got = out["rsi_14"].to_numpy(dtype=float)
    np.testing.assert_allclose(got[14:], want[14:], rtol=1e-6)
