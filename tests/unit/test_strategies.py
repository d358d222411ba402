"""Job B domain: each strategy against a vectorised pandas version of its rule, params,
registry, sizing, gating and the config/control state of a shard."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.feeds import SyntheticMarket
from operators.indicators import IndicatorConfig
from operators.strategies import (
    STRATEGIES,
    Intent,
    Param,
    ParamError,
    Strategy,
    StrategyError,
    StrategyShard,
    UnknownStrategyError,
    activate,
    create,
    limit_price,
    order_qty,
    register,
)
from schemas import Control, OrderType, Side, Sizing, SmaWide, StrategyConfig, TradingState
from tests.helpers import indicator_rows

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
INDICATORS = IndicatorConfig(sma=(5, 10, 20, 50), ema=(12, 26), rsi=(7, 14), vwap=True)
Fired = set[tuple[str, int, str]]
"""(symbol, seq, side) of every signal."""


# --- sma_wide rows built by Job A's operators -------------------------------------


def market_rows(symbols: int = 4, ticks: int = 4000, seed: int = 5) -> list[SmaWide]:
    """Return sma_wide rows for a synthetic market, computed by Job A's IndicatorSet."""
    return indicator_rows(SyntheticMarket(symbols=symbols, ticks=ticks, seed=seed), INDICATORS)


def frame(rows: Iterable[SmaWide]) -> pd.DataFrame:
    data = [{"symbol": r.symbol, "seq": r.seq, "price": r.price, **r.indicators()} for r in rows]
    df = pd.DataFrame(data)
    return df.astype({c: float for c in df.columns if c not in ("symbol", "seq")})


# --- the same rules, vectorised -------------------------------------------------------


def _fired(g: pd.DataFrame, buy: pd.Series, sell: pd.Series) -> Fired:
    sym = g["symbol"].iloc[0] if len(g) else ""
    return {(sym, int(s), "BUY") for s in g["seq"][buy]} | {(sym, int(s), "SELL") for s in g["seq"][sell]}


def ref_sma_cross(df: pd.DataFrame, fast: int, slow: int) -> Fired:
    out: Fired = set()
    for _, g in df.groupby("symbol"):
        g = g.dropna(subset=[f"sma_{fast}", f"sma_{slow}"])
        sign = np.sign(g[f"sma_{fast}"] - g[f"sma_{slow}"])
        last = sign.replace(0.0, np.nan).ffill().shift(1)
        out |= _fired(g, (sign > 0) & (last < 0), (sign < 0) & (last > 0))
    return out


def ref_rsi(df: pd.DataFrame, period: int, oversold: float, overbought: float) -> Fired:
    out: Fired = set()
    col = f"rsi_{period}"
    for _, g in df.groupby("symbol"):
        g = g.dropna(subset=[col])
        rsi, prev = g[col], g[col].shift(1)
        out |= _fired(g, (prev >= oversold) & (rsi < oversold), (prev <= overbought) & (rsi > overbought))
    return out


def _latch(fire_zone: pd.Series, rearm_zone: pd.Series) -> pd.Series:
    """Rows where a one-shot trigger fires: in the fire zone, and not already fired
    since the last row in the re-arm zone."""
    mark = pd.Series(np.where(fire_zone, 1.0, np.where(rearm_zone, 0.0, np.nan)), index=fire_zone.index)
    before = mark.ffill().shift(1).fillna(0.0)
    return fire_zone & (before != 1.0)


def ref_vwap(df: pd.DataFrame, threshold: float, rearm: float) -> Fired:
    out: Fired = set()
    for _, g in df.groupby("symbol"):
        g = g[g["vwap"].notna() & (g["vwap"] > 0)]
        dev = (g["price"] - g["vwap"]) / g["vwap"] * 1e4
        out |= _fired(g, _latch(dev < -threshold, dev >= -rearm), _latch(dev > threshold, dev <= rearm))
    return out


def run_strategy(strategy: Strategy[Any], rows: Iterable[SmaWide]) -> tuple[Fired, list[Intent]]:
    states: dict[str, Any] = {}
    fired: Fired = set()
    intents: list[Intent] = []
    for row in rows:
        state = states.setdefault(row.symbol, strategy.new_state())
        intent = strategy.on_row(state, row)
        if intent is not None:
            fired.add((row.symbol, row.seq, intent.side.value))
            intents.append(intent)
    return fired, intents


@pytest.fixture(scope="module")
def rows() -> list[SmaWide]:
    return market_rows()


@pytest.mark.parametrize(("fast", "slow"), [(5, 20), (10, 50), (5, 10)])
def test_sma_cross_matches_the_vectorised_rule(rows: list[SmaWide], fast: int, slow: int) -> None:
    got, intents = run_strategy(create("sma_cross", {"fast": fast, "slow": slow}), rows)
    assert len(got) > 50
    assert got == ref_sma_cross(frame(rows), fast, slow)
    assert set(intents[0].indicators) == {f"sma_{fast}", f"sma_{slow}"}


@pytest.mark.parametrize(("period", "low", "high"), [(14, 30, 70), (7, 25.5, 80)])
def test_rsi_reversion_matches_the_vectorised_rule(
    rows: list[SmaWide], period: int, low: float, high: float
) -> None:
    params = {"period": period, "oversold": low, "overbought": high}
    got, _ = run_strategy(create("rsi_reversion", params), rows)
    assert len(got) > 50
    assert got == ref_rsi(frame(rows), period, low, high)


@pytest.mark.parametrize(("threshold", "rearm"), [(30.0, 0.0), (50.0, 20.0), (10.0, 9.0)])
def test_vwap_deviation_matches_the_vectorised_rule(
    rows: list[SmaWide], threshold: float, rearm: float
) -> None:
    params = {"threshold_bps": threshold, "rearm_bps": rearm}
    got, _ = run_strategy(create("vwap_deviation", params), rows)
    assert len(got) > 20
    assert got == ref_vwap(frame(rows), threshold, rearm)


def _row(seq: int, price: float = 100.0, **cols: float | None) -> SmaWide:
    vwap = cols.pop("vwap", None)
    return SmaWide(
        symbol="X", ts=T0 + timedelta(seconds=seq), price=price, volume=1.0, vwap=vwap, seq=seq, **cols
    )


maybe_float = st.one_of(st.none(), st.sampled_from([99.0, 100.0, 101.0]), st.floats(90, 110))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(maybe_float, maybe_float), max_size=40))
def test_sma_cross_on_arbitrary_series_with_ties_and_gaps(
    pairs: list[tuple[float | None, float | None]],
) -> None:
    rows = [_row(i, sma_5=f, sma_20=s) for i, (f, s) in enumerate(pairs)]
    got, _ = run_strategy(create("sma_cross", {"fast": 5, "slow": 20}), rows)
    if rows:
        assert got == ref_sma_cross(frame(rows), 5, 20)
    sides = [side for _, _, side in sorted(got)]
    assert all(a != b for a, b in zip(sides, sides[1:], strict=False)), "crosses alternate"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-80, 80)), max_size=40))
def test_vwap_deviation_on_arbitrary_series(devs: list[float | None]) -> None:
    rows = [
        _row(i, price=100.0 * (1 + d / 1e4) if d is not None else 100.0, vwap=None if d is None else 100.0)
        for i, d in enumerate(devs)
    ]
    got, _ = run_strategy(create("vwap_deviation", {"threshold_bps": 30, "rearm_bps": 10}), rows)
    if rows:
        assert got == ref_vwap(frame(rows), 30, 10)


def test_rsi_staying_oversold_fires_once_and_needs_a_new_cross() -> None:
    rsi = [50, 29, 20, 25, 31, 29, 75, 80, 69, 71]
    rows = [_row(i, rsi_14=v) for i, v in enumerate(rsi)]
    got, intents = run_strategy(create("rsi_reversion", {}), rows)
    assert sorted(got) == [("X", 1, "BUY"), ("X", 5, "BUY"), ("X", 6, "SELL"), ("X", 9, "SELL")]
    assert "rsi_14 29.00 crossed below oversold 30" in intents[0].reason


# --- params and registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "why"),
    [
        ("sma_cross", {"fast": 5}, "missing slow"),
        ("sma_cross", {"fast": 5, "slow": 20, "fats": 3}, "unknown param(s) fats"),
        ("sma_cross", {"fast": 20, "slow": 5}, "fast must be less than slow"),
        ("sma_cross", {"fast": 5.5, "slow": 20}, "fast must be an integer"),
        ("sma_cross", {"fast": "5", "slow": 20}, "fast must be a number"),
        ("sma_cross", {"fast": True, "slow": 20}, "fast must be a number"),
        ("sma_cross", {"fast": 0, "slow": 20}, "fast must be >= 1"),
        ("rsi_reversion", {"oversold": 80}, "oversold must be less than overbought"),
        ("rsi_reversion", {"overbought": 100}, "overbought must be < 100"),
        ("rsi_reversion", {"period": float("nan")}, "period must be finite"),
        ("vwap_deviation", {}, "missing threshold_bps"),
        ("vwap_deviation", {"threshold_bps": 0}, "threshold_bps must be > 0"),
        ("vwap_deviation", {"threshold_bps": 10, "rearm_bps": 10}, "rearm_bps must be less"),
    ],
)
def test_invalid_params_are_refused_with_the_reason(name: str, params: dict[str, Any], why: str) -> None:
    with pytest.raises(ParamError, match=why.replace("(", r"\(").replace(")", r"\)")):
        create(name, params)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ParamError) as err:
        create("sma_cross", {"fats": 1, "slow": "x"})
    assert str(err.value) == (
        "sma_cross: unknown param(s) fats (known: fast, slow); missing fast; slow must be a number, got 'x'"
    )


def test_integral_float_is_an_int_param_and_defaults_fill_in() -> None:
    s = create("sma_cross", {"fast": 5.0, "slow": 20})
    assert s.params == {"fast": 5, "slow": 20}
    assert isinstance(s.params["fast"], int)
    assert create("rsi_reversion", {}).params == {"period": 14, "oversold": 30.0, "overbought": 70.0}


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'nope' .known: .*sma_cross"):
        create("nope", {})


@dataclass
class _Count:
    n: int = 0


def test_a_new_strategy_is_one_class_and_one_registration() -> None:
    @register("every_nth")
    class EveryNth(Strategy[_Count]):
        PARAMS: ClassVar[Mapping[str, Param]] = {"n": Param(int, default=3, ge=1)}

        def columns(self) -> tuple[str, ...]:
            return ()

        def new_state(self) -> _Count:
            return _Count()

        def on_row(self, state: _Count, row: SmaWide) -> Intent | None:
            state.n += 1
            return Intent(Side.BUY, "nth", {}) if state.n % self.params["n"] == 0 else None

    try:
        got, _ = run_strategy(create("every_nth", {"n": 2}), [_row(i) for i in range(5)])
        assert got == {("X", 1, "BUY"), ("X", 3, "BUY")}
        with pytest.raises(ValueError, match="already registered"):
            register("every_nth")(type("Other", (EveryNth,), {}))
    finally:
        del STRATEGIES["every_nth"]


def test_strategies_and_their_state_pickle() -> None:
    for name, params in [("sma_cross", {"fast": 5, "slow": 20}), ("vwap_deviation", {"threshold_bps": 5})]:
        s = create(name, params)
        state = s.new_state()
        s.on_row(state, _row(0, sma_5=1.0, sma_20=2.0, vwap=100.0))
        s2, state2 = pickle.loads(pickle.dumps((s, state)))  # noqa: S301 - our own bytes
        assert s2.key == s.key
        assert state2 == state


# --- the engine: config, sizing, gates --------------------------------------------------


def config(**kw: Any) -> StrategyConfig:
    base: dict[str, Any] = {
        "strategy_id": "s1",
        "strategy": "sma_cross",
        "params": {"fast": 5, "slow": 20},
        "account": "A1",
        "qty": 10,
        "ts": T0,
    }
    return StrategyConfig(**(base | kw))


def cross_rows(start: int = 0, n: int = 6, symbol: str = "X") -> list[SmaWide]:
    """Rows whose fast - slow alternates sign every row: each row after the first fires."""
    return [
        SmaWide(
            symbol=symbol,
            ts=T0 + timedelta(seconds=i),
            price=100.0 + i,
            volume=1.0,
            seq=i,
            sma_5=1.0 if i % 2 else -1.0,
            sma_20=0.0,
        )
        for i in range(start, start + n)
    ]


def run_shard(shard: StrategyShard, rows: Iterable[SmaWide]) -> list[Any]:
    return [s for s in (shard.on_row(r) for r in rows) if s is not None]


def shard_with(cfg: StrategyConfig | None = None, **kw: Any) -> StrategyShard:
    shard = StrategyShard("s1")
    shard.apply_config(0, activate(cfg if cfg is not None else config(**kw)))
    return shard


def test_signals_carry_deterministic_ids_and_everything_job_c_needs() -> None:
    sigs = run_shard(shard_with(), cross_rows())
    assert [s.signal_id for s in sigs] == [f"s1:X:{i}" for i in range(1, 6)]
    first = sigs[0]
    assert (first.side, first.qty, first.account, first.strategy_id) == (Side.BUY, Decimal(10), "A1", "s1")
    assert first.order_type is OrderType.MARKET
    assert first.limit_px is None
    assert first.ref_px == Decimal("101.0")
    assert first.ts == T0 + timedelta(seconds=1)
    assert first.indicators == {"sma_5": 1.0, "sma_20": 0.0}
    assert first.reason.startswith("sma_cross: sma_5 1.0000 crossed above sma_20")
    assert run_shard(shard_with(), cross_rows()) == sigs


def test_no_config_no_signal() -> None:
    assert run_shard(StrategyShard("s1"), cross_rows()) == []


def test_fixed_notional_rounds_down_to_whole_units_and_skips_zero() -> None:
    cfg = config(sizing=Sizing.FIXED_NOTIONAL, qty=None, notional=Decimal("1000"))
    assert order_qty(cfg, Decimal("101")) == Decimal(9)
    assert order_qty(cfg, Decimal("100")) == Decimal(10)
    assert order_qty(cfg, Decimal("1000.01")) is None
    sigs = run_shard(shard_with(cfg), cross_rows())
    assert [s.qty for s in sigs] == [Decimal(9)] * 5  # 1000 // 101..105


def test_limit_prices_round_away_from_aggression() -> None:
    cfg = config(order_type=OrderType.LIMIT, limit_offset_bps=Decimal(15))
    # 100.37 * 0.9985 = 100.219445 -> 100.21; 100.37 * 1.0015 = 100.520555 -> 100.53
    assert limit_price(cfg, Side.BUY, Decimal("100.37")) == Decimal("100.21")
    assert limit_price(cfg, Side.SELL, Decimal("100.37")) == Decimal("100.53")
    assert limit_price(config(), Side.BUY, Decimal("100.37")) is None
    sigs = run_shard(shard_with(cfg), cross_rows(n=3))
    assert [(s.side, s.limit_px) for s in sigs] == [
        (Side.BUY, Decimal("100.84")),
        (Side.SELL, Decimal("102.16")),
    ]


def test_limit_offset_of_100_percent_is_refused() -> None:
    with pytest.raises(StrategyError, match="limit_offset_bps must be below 10000"):
        activate(config(order_type=OrderType.LIMIT, limit_offset_bps=Decimal(10000)))


def test_config_reading_a_column_job_a_does_not_compute_is_refused() -> None:
    with pytest.raises(StrategyError, match="reads sma_7, which Job A does not compute"):
        activate(config(params={"fast": 7, "slow": 20}), columns=INDICATORS.columns())


def test_max_position_caps_the_signalled_net_and_lets_reductions_through() -> None:
    assert run_shard(shard_with(max_position=Decimal(5)), cross_rows()) == []  # qty 10 > 5
    shard = shard_with(max_position=Decimal(15))
    sigs = run_shard(shard, cross_rows(n=3))  # BUY 10, SELL 10: within 15
    assert [s.side for s in sigs] == [Side.BUY, Side.SELL]
    assert shard.symbols["X"].net_qty == 0
    shard.symbols["X"].net_qty = Decimal(20)  # e.g. the cap was lowered meanwhile
    # row 3 BUY -> 30: refused; row 4 SELL -> 10: passes; row 5 BUY -> 20: refused
    sigs = run_shard(shard, cross_rows(start=3, n=3))
    assert [(s.signal_id, s.side) for s in sigs] == [("s1:X:4", Side.SELL)]
    assert shard.symbols["X"].net_qty == Decimal(10)
    shard.symbols["X"].net_qty = Decimal(40)
    shard.apply_config(1, activate(config(qty=50, max_position=Decimal(15))))
    # a reduction that overshoots the cap on the other side still reduces |net|: 40 -> -10
    assert [s.side for s in run_shard(shard, cross_rows(start=6, n=1))] == [Side.SELL]


def test_disabled_config_keeps_evaluating_but_emits_nothing() -> None:
    shard = shard_with(enabled=False)
    assert run_shard(shard, cross_rows(n=2)) == []  # a cross at row 1, suppressed
    shard.apply_config(1, activate(config(enabled=True, version=2)))
    # the state kept up: row 2 continues the alternation, no stale cross replayed
    assert [s.signal_id for s in run_shard(shard, cross_rows(start=2, n=2))] == ["s1:X:2", "s1:X:3"]


def test_a_params_change_restarts_the_rule_state_other_changes_keep_it() -> None:
    shard = shard_with()
    run_shard(shard, cross_rows(n=2))
    shard.apply_config(1, activate(config(qty=5)))
    assert [s.qty for s in run_shard(shard, cross_rows(start=2, n=1))] == [Decimal(5)]
    shard.apply_config(2, activate(config(params={"fast": 5, "slow": 21})))
    rows = [SmaWide(**r.model_dump(exclude={"sma_20"}), sma_21=0.0) for r in cross_rows(start=3, n=3)]
    assert [s.signal_id for s in run_shard(shard, rows)] == ["s1:X:4", "s1:X:5"]  # row 3 only sets the state


def test_symbols_filter_and_removal_drops_the_rule_state() -> None:
    shard = shard_with(symbols=["Y"])
    assert run_shard(shard, cross_rows()) == []
    assert len(run_shard(shard, cross_rows(symbol="Y"))) == 5
    assert "X" not in shard.symbols
    shard.apply_config(1, activate(config(symbols=["X"])))
    assert run_shard(shard, cross_rows(start=6, n=1, symbol="Y")) == []
    assert shard.symbols["Y"].state is None
    assert shard.symbols["Y"].net_qty == Decimal(10)


@pytest.mark.parametrize(
    ("scope", "state", "fires"),
    [
        ("global", TradingState.HALTED, False),
        ("global", TradingState.REDUCING, False),
        ("strategy:s1", TradingState.HALTED, False),
        ("strategy:other", TradingState.HALTED, True),
        ("account:A1", TradingState.HALTED, False),
        ("account:A2", TradingState.HALTED, True),
        ("global", TradingState.ACTIVE, True),
    ],
)
def test_control_state_gates_signals(scope: str, state: TradingState, fires: bool) -> None:
    shard = shard_with()
    shard.apply_control(0, Control(scope=scope, state=state, ts=T0))
    assert bool(run_shard(shard, cross_rows())) is fires


def test_halt_then_resume_applies_to_the_next_row() -> None:
    shard = shard_with()
    shard.apply_control(0, Control(scope="global", state=TradingState.HALTED, ts=T0))
    assert run_shard(shard, cross_rows(n=3)) == []
    shard.apply_control(1, Control(scope="global", state=TradingState.ACTIVE, ts=T0))
    assert [s.signal_id for s in run_shard(shard, cross_rows(start=3, n=2))] == ["s1:X:3", "s1:X:4"]


def test_updates_at_offsets_already_applied_are_ignored() -> None:
    shard = shard_with()
    shard.apply_config(3, activate(config(qty=7)))
    assert not shard.apply_config(2, activate(config(qty=1)))
    assert not shard.apply_config(3, activate(config(qty=1)))
    assert shard.config is not None
    assert shard.config.config.qty == Decimal(7)
    shard.skip_config(5)
    assert not shard.apply_config(4, activate(config(qty=1)))
    assert shard.apply_control(0, Control(scope="global", state=TradingState.HALTED, ts=T0))
    assert not shard.apply_control(0, Control(scope="global", state=TradingState.ACTIVE, ts=T0))
    assert shard.trading_state() is TradingState.HALTED


def test_a_shard_snapshot_is_a_copy_and_resumes_identically() -> None:
    shard = shard_with(max_position=Decimal(30))
    rows = cross_rows(n=10)
    run_shard(shard, rows[:5])
    snap = pickle.loads(pickle.dumps(copy.deepcopy(shard)))  # noqa: S301 - our own bytes
    rest = run_shard(shard, rows[5:])
    assert run_shard(snap, rows[5:]) == rest


def test_replayed_rows_are_dropped_by_symbol_and_seq() -> None:
    """Job A re-emits rows from its snapshot after a restart: older rows after newer ones
    must neither move the rule state nor fire (they once invented crossovers)."""
    rows = cross_rows(n=10)
    clean = run_shard(shard_with(), rows)
    shard = shard_with()
    replayed = rows[:6] + rows[2:6] + rows[6:] + rows[8:]
    assert run_shard(shard, replayed) == clean
    assert shard.replayed_rows == 4 + 2
    other = SmaWide(symbol="Y", ts=T0, price=100.0, volume=1.0, seq=0)
    shard.on_row(other)
    assert shard.row_seqs == {"X": 9, "Y": 0}


def test_sizes_and_prices_beyond_decimal_18_8_give_no_signal_rather_than_a_crash() -> None:
    # issue 17: 9e9 of notional at a price of 1e-8 is 9e17 units, which no record can hold
    cfg = config(sizing=Sizing.FIXED_NOTIONAL, qty=None, notional=Decimal("9000000000"))
    rows = [r.model_copy(update={"price": 0.00000001}) for r in cross_rows()]
    assert run_shard(shard_with(cfg), rows) == []
    huge = [r.model_copy(update={"price": 9999999999.99999999}) for r in cross_rows()]
    assert run_shard(shard_with(), huge) == []  # the float rounds to 1e10: out of range
    tail = [r.model_copy(update={"price": 100.123456789}) for r in cross_rows(n=2)]
    assert [s.ref_px for s in run_shard(shard_with(), tail)] == [Decimal("100.12345679")]


def test_a_signal_carries_the_entered_at_of_the_row_it_fired_on() -> None:
    rows = [r.model_copy(update={"entered_at": T0 + timedelta(minutes=r.seq)}) for r in cross_rows()]
    sigs = run_shard(shard_with(), rows)
    assert [s.entered_at for s in sigs] == [T0 + timedelta(minutes=i) for i in range(1, 6)]
    assert all(s.entered_at is None for s in run_shard(shard_with(), cross_rows()))
