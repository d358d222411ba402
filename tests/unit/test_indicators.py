"""Indicator math against straightforward reference computations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.indicators import (
    EMA,
    RSI,
    SMA,
    IndicatorConfig,
    Late,
    Row,
    SessionVWAP,
    SymbolIndicators,
    Tick,
)

prices = st.lists(
    st.floats(min_value=0.01, max_value=1e5, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)
periods = st.integers(min_value=1, max_value=30)


def ref_sma(xs: list[float], n: int) -> list[float | None]:
    return [None if i + 1 < n else math.fsum(xs[i + 1 - n : i + 1]) / n for i in range(len(xs))]


def ref_ema(xs: list[float], n: int) -> list[float | None]:
    out: list[float | None] = []
    value = None
    alpha = 2 / (n + 1)
    for i, x in enumerate(xs):
        if i + 1 == n:
            value = math.fsum(xs[:n]) / n
        elif value is not None:
            value = alpha * x + (1 - alpha) * value
        out.append(value)
    return out


def ref_rsi(xs: list[float], n: int) -> list[float | None]:
    out: list[float | None] = [None] * len(xs)
    if len(xs) <= n:
        return out
    changes = [xs[i] - xs[i - 1] for i in range(1, len(xs))]
    gain = sum(max(c, 0) for c in changes[:n]) / n
    loss = sum(max(-c, 0) for c in changes[:n]) / n

    def rsi(g: float, lo: float) -> float:
        return 50.0 if g + lo == 0 else 100 * g / (g + lo)

    out[n] = rsi(gain, loss)
    for i in range(n + 1, len(xs)):
        c = changes[i - 1]
        gain = (gain * (n - 1) + max(c, 0)) / n
        loss = (loss * (n - 1) + max(-c, 0)) / n
        out[i] = rsi(gain, loss)
    return out


def assert_series_close(got: list[float | None], want: list[float | None], rel: float) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None, f"index {i}: expected null, got {g}"
        else:
            assert g is not None, f"index {i}: expected {w}, got null"
            assert g == pytest.approx(w, rel=rel, abs=1e-9), f"index {i}"


@settings(max_examples=200, deadline=None)
@given(prices, periods)
def test_sma_matches_reference_on_random_series(xs: list[float], n: int) -> None:
    sma = SMA(n)
    assert_series_close([sma.update(x) for x in xs], ref_sma(xs, n), rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(prices, periods)
def test_ema_matches_reference_on_random_series(xs: list[float], n: int) -> None:
    ema = EMA(n)
    assert_series_close([ema.update(x) for x in xs], ref_ema(xs, n), rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(prices, periods)
def test_rsi_matches_reference_on_random_series(xs: list[float], n: int) -> None:
    rsi = RSI(n)
    assert_series_close([rsi.update(x) for x in xs], ref_rsi(xs, n), rel=1e-9)


def test_sma_stays_exact_over_a_long_series() -> None:
    xs = [100 + math.sin(i / 7) * 1e-3 + (i % 13) * 1e6 for i in range(20_000)]
    sma = SMA(20)
    got = [sma.update(x) for x in xs][-1]
    assert got == pytest.approx(math.fsum(xs[-20:]) / 20, rel=1e-12)


def test_rsi_on_flat_prices_is_50() -> None:
    rsi = RSI(3)
    assert [rsi.update(10.0) for _ in range(5)] == [None, None, None, 50.0, 50.0]


def test_rsi_only_rising_prices_is_100() -> None:
    rsi = RSI(2)
    assert [rsi.update(float(x)) for x in (1, 2, 3, 4)] == [None, None, 100.0, 100.0]


def test_vwap_resets_at_utc_midnight() -> None:
    vwap = SessionVWAP()
    d1 = datetime(2026, 1, 5, 23, 59, tzinfo=UTC)
    assert vwap.update(10.0, 100.0, d1) == 10.0
    assert vwap.update(20.0, 300.0, d1) == pytest.approx(17.5)
    assert vwap.update(30.0, 10.0, d1 + timedelta(minutes=2)) == 30.0


def test_vwap_is_null_before_any_volume() -> None:
    vwap = SessionVWAP()
    assert vwap.update(10.0, 0.0, datetime(2026, 1, 5, tzinfo=UTC)) is None


def test_indicator_config_columns_in_output_order() -> None:
    cfg = IndicatorConfig(sma=(3,), ema=(4,), rsi=(2,), vwap=True)
    assert cfg.columns() == ["sma_3", "ema_4", "rsi_2", "vwap"]


T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def tick(ms: int, price: float, wm_ms: int | None = None) -> Tick:
    wm = None if wm_ms is None else T0 + timedelta(milliseconds=wm_ms)
    return Tick("X", T0 + timedelta(milliseconds=ms), price, 1.0, wm)


def rows(results: list[Row | Late]) -> list[float]:
    return [r.tick.price for r in results if isinstance(r, Row)]


def test_in_order_ticks_without_watermark_are_applied_at_once() -> None:
    s = SymbolIndicators(IndicatorConfig(sma=(2,), ema=(), rsi=(), vwap=False))
    assert rows(s.on_tick(tick(0, 1.0))) == [1.0]
    assert rows(s.on_tick(tick(5, 2.0))) == [2.0]


def test_out_of_order_tick_within_lateness_is_reordered() -> None:
    s = SymbolIndicators(IndicatorConfig(sma=(2,), ema=(), rsi=(), vwap=False))
    # Watermark lags event time by 100 ms: ticks wait until it passes them.
    assert rows(s.on_tick(tick(100, 1.0, wm_ms=0))) == []
    assert rows(s.on_tick(tick(50, 2.0, wm_ms=0))) == []
    out = s.on_tick(tick(300, 3.0, wm_ms=200))
    assert rows(out) == [2.0, 1.0]
    assert [r.seq for r in out if isinstance(r, Row)] == [0, 1]
    assert rows(s.flush()) == [3.0]


def test_tick_older_than_an_applied_one_is_late_with_a_reason() -> None:
    s = SymbolIndicators(IndicatorConfig(sma=(2,), ema=(), rsi=(), vwap=False))
    s.on_tick(tick(100, 1.0))
    out = s.on_tick(tick(50, 2.0))
    assert len(out) == 1
    assert isinstance(out[0], Late)
    assert "late tick" in out[0].reason
    # The late tick did not touch the indicators: the next SMA(2) pairs 1.0 and 4.0.
    nxt = s.on_tick(tick(200, 4.0))
    assert isinstance(nxt[0], Row)
    assert nxt[0].values["sma_2"] == pytest.approx(2.5)


def test_ticks_with_equal_timestamps_keep_arrival_order() -> None:
    s = SymbolIndicators(IndicatorConfig(sma=(1,), ema=(), rsi=(), vwap=False))
    assert rows(s.on_tick(tick(10, 1.0, wm_ms=0))) == []
    assert rows(s.on_tick(tick(10, 2.0, wm_ms=0))) == []
    assert rows(s.flush()) == [1.0, 2.0]


# -- issue 17: ticks from the future -------------------------------------------------------

CFG = IndicatorConfig(sma=(2,), ema=(), rsi=(), vwap=False)  # max_future_skew_s = 60
HOUR = 3_600_000


def test_live_a_tick_far_ahead_of_the_wall_clock_is_refused_and_moves_no_watermark() -> None:
    s = SymbolIndicators(CFG)
    now = T0
    assert rows(s.on_tick(tick(0, 1.0), now)) == [1.0]
    (late,) = s.on_tick(tick(10 * HOUR, 99.0), now)
    assert isinstance(late, Late)
    assert "future tick: ts" in late.reason
    assert "60 s ahead of the wall clock" in late.reason
    assert s.watermark == T0
    assert rows(s.on_tick(tick(1000, 2.0), now)) == [2.0]  # not late: the watermark did not move
    (late_wm,) = s.on_tick(tick(2000, 3.0, wm_ms=10 * HOUR), now)  # a future watermark, too
    assert isinstance(late_wm, Late)
    assert "future tick: wm" in late_wm.reason
    assert rows(s.on_tick(tick(59_000, 4.0), now)) == [4.0]  # within the skew


def test_replay_a_spike_into_the_future_is_refused_when_time_comes_back() -> None:
    s = SymbolIndicators(CFG)
    assert rows(s.on_tick(tick(0, 1.0))) == [1.0]
    assert s.on_tick(tick(10 * HOUR, 99.0)) == []  # held: no watermark moved
    assert s.watermark == T0
    out = s.on_tick(tick(1000, 2.0))
    assert isinstance(out[0], Late)
    assert "future tick" in out[0].reason
    assert out[0].tick.price == 99.0
    assert rows(out) == [2.0]
    assert s.on_tick(tick(2000, 3.0))[0].values["sma_2"] == pytest.approx(2.5)  # type: ignore[union-attr]


def test_replay_a_real_gap_forward_is_confirmed_by_the_next_tick() -> None:
    s = SymbolIndicators(CFG)
    day = 24 * HOUR
    assert rows(s.on_tick(tick(0, 1.0))) == [1.0]
    assert rows(s.on_tick(tick(day, 2.0))) == []  # daily bars: held for one tick
    assert rows(s.on_tick(tick(2 * day, 3.0))) == [2.0]
    assert rows(s.on_tick(tick(2 * day + 1000, 4.0))) == [3.0, 4.0]
    assert rows(s.on_tick(tick(3 * day, 5.0))) == []
    assert rows(s.flush()) == [5.0]  # end of input: nothing contradicts it


def test_no_skew_check_when_disabled() -> None:
    s = SymbolIndicators(IndicatorConfig(sma=(2,), ema=(), rsi=(), vwap=False, max_future_skew_s=None))
    assert rows(s.on_tick(tick(0, 1.0), T0)) == [1.0]
    assert rows(s.on_tick(tick(10 * HOUR, 2.0), T0)) == [2.0]


def test_the_latest_representable_time_does_not_overflow() -> None:
    s = SymbolIndicators(CFG)
    far = Tick("X", datetime.max.replace(tzinfo=UTC), 1.0, 1.0)
    s.on_tick(tick(0, 1.0))
    assert s.on_tick(far) == []  # held
    assert isinstance(s.on_tick(tick(5, 1.0))[0], Late)
    assert isinstance(s.on_tick(far, T0)[0], Late)
