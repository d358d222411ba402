"""Job B end to end on the embedded store: signals, live config, control, dead letters,
1 and 2 workers.

Config changes "while running" are made deterministic by running the flow in phases
with a recovery directory: each phase is a bounded run that resumes from the state the
previous one ended with, so an update written between two phases reaches the shards
before the rows written after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import _locate_dataflow
from bytewax.testing import cluster_main, run_main

from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from flows.strategy import build_flow
from operators.strategies import STRATEGIES, Intent, Param, Strategy, register
from schemas import (
    Control,
    DeadLetter,
    OrderType,
    Side,
    Sizing,
    SmaWide,
    TradeSignal,
    TradingState,
    encode,
)
from tests.helpers import read_all
from tests.recovery.procs import env_for, init_recovery, start
from tests.unit.test_strategies import (
    INDICATORS,
    Fired,
    config,
    frame,
    market_rows,
    ref_rsi,
    ref_sma_cross,
    ref_vwap,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SID = "s1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    ind = {"sma": INDICATORS.sma, "ema": INDICATORS.ema, "rsi": INDICATORS.rsi}
    return load_settings(data_dir=tmp_path / "data", profile="local", indicators=ind)


@pytest.fixture(scope="module")
def rows() -> list[SmaWide]:
    return market_rows(symbols=6, ticks=4000, seed=9)


def put(conn: Connectors, stream: str, records: list[Any]) -> None:
    writer = conn.writer(stream)
    try:
        writer.write(records)
    finally:
        writer.close()


class Runner:
    """Run the strategy flow in bounded phases that share one recovery directory."""

    def __init__(self, settings: Settings, tmp: Path, strategy_id: str = SID, workers: int = 1):
        self.settings = settings
        self.strategy_id = strategy_id
        self.workers = workers
        self.recovery = tmp / f"recovery-{strategy_id}"
        self.recovery.mkdir()
        init_db_dir(self.recovery, 1)

    def run(self) -> None:
        flow = build_flow(self.strategy_id, self.settings)
        rc = RecoveryConfig(self.recovery)
        if self.workers == 1:
            run_main(flow, recovery_config=rc)
        else:
            cluster_main(flow, [], 0, recovery_config=rc, worker_count_per_proc=self.workers)


def signals(conn: Connectors) -> list[TradeSignal]:
    return read_all(conn, "trade_signals")  # type: ignore[return-value]


def fired(sigs: list[TradeSignal]) -> Fired:
    return {(s.symbol, int(s.signal_id.rsplit(":", 1)[1]), s.side.value) for s in sigs}


def letters(conn: Connectors) -> list[DeadLetter]:
    return read_all(conn, "dead_letters")  # type: ignore[return-value]


CASES = {
    "sma_cross": ({"fast": 5, "slow": 20}, lambda df: ref_sma_cross(df, 5, 20)),
    "rsi_reversion": ({"period": 7, "oversold": 25, "overbought": 75}, lambda df: ref_rsi(df, 7, 25, 75)),
    "vwap_deviation": ({"threshold_bps": 40, "rearm_bps": 5}, lambda df: ref_vwap(df, 40, 5)),
}


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_flow_signals_match_the_vectorised_rule(
    settings: Settings, connectors: Connectors, rows: list[SmaWide], strategy: str
) -> None:
    params, ref = CASES[strategy]
    put(connectors, "strategy_config", [config(strategy=strategy, params=params)])
    put(connectors, "sma_wide", rows)
    run_main(build_flow(SID, settings))
    sigs = signals(connectors)
    assert len(sigs) > 20
    assert fired(sigs) == ref(frame(rows))
    assert len({s.signal_id for s in sigs}) == len(sigs)
    assert letters(connectors) == []


def test_two_workers_give_the_same_signals_as_one(
    settings: Settings, tmp_path: Path, rows: list[SmaWide]
) -> None:
    got = {}
    for workers in (1, 2):
        s = settings.model_copy(update={"data_dir": tmp_path / f"w{workers}"})
        conn = Connectors(s)
        sized = config(sizing=Sizing.FIXED_NOTIONAL, qty=None, notional=Decimal(5000),
                       max_position=Decimal(60))
        put(conn, "strategy_config", [sized])
        put(conn, "sma_wide", rows)
        flow = build_flow(SID, s)
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=2)
        got[workers] = sorted(encode(x) for x in signals(conn))
    assert len(got[1]) > 20
    assert got[1] == got[2]


@pytest.mark.parametrize("workers", [1, 2])
def test_config_change_mid_stream_applies_from_the_next_row(
    settings: Settings, connectors: Connectors, tmp_path: Path, rows: list[SmaWide], workers: int
) -> None:
    half = len(rows) // 2
    part1, part2 = rows[:half], rows[half:]
    runner = Runner(settings, tmp_path, workers=workers)
    put(connectors, "strategy_config", [config()])
    put(connectors, "sma_wide", part1)
    runner.run()
    n1 = len(signals(connectors))
    put(connectors, "strategy_config", [config(params={"fast": 10, "slow": 50}, qty=3, version=2)])
    runner.run()  # the update reaches every shard; no new rows
    assert len(signals(connectors)) == n1
    put(connectors, "sma_wide", part2)
    runner.run()

    sigs = signals(connectors)
    before = [s for s in sigs if s.ts <= part1[-1].ts]
    after = [s for s in sigs if s.ts > part1[-1].ts]
    assert len(before) == n1
    assert fired(before) == ref_sma_cross(frame(part1), 5, 20)
    # new params: the rule state starts afresh at each symbol's first row of part 2
    assert fired(after) == ref_sma_cross(frame(part2), 10, 50)
    assert {s.qty for s in before} == {Decimal(10)}
    assert {s.qty for s in after} == {Decimal(3)}
    assert letters(connectors) == []


def test_disabled_strategy_emits_nothing_and_re_enabling_fires_no_stale_cross(
    settings: Settings, connectors: Connectors, tmp_path: Path, rows: list[SmaWide]
) -> None:
    half = len(rows) // 2
    runner = Runner(settings, tmp_path)
    put(connectors, "strategy_config", [config(enabled=False)])
    put(connectors, "sma_wide", rows[:half])
    runner.run()
    assert signals(connectors) == []
    put(connectors, "strategy_config", [config(enabled=True, version=2)])
    runner.run()
    put(connectors, "sma_wide", rows[half:])
    runner.run()
    # the rule kept evaluating while disabled: part 2 fires exactly the crosses of the
    # uninterrupted series that fall in part 2
    part2 = {(r.symbol, r.seq) for r in rows[half:]}
    want = {f for f in ref_sma_cross(frame(rows), 5, 20) if (f[0], f[1]) in part2}
    assert want
    assert fired(signals(connectors)) == want


def test_invalid_config_is_dead_lettered_and_the_last_good_one_stays(
    settings: Settings, connectors: Connectors, tmp_path: Path, rows: list[SmaWide]
) -> None:
    half = len(rows) // 2
    runner = Runner(settings, tmp_path)
    put(connectors, "strategy_config", [config()])
    put(connectors, "sma_wide", rows[:half])
    runner.run()
    bad = [
        config(params={"fast": 5, "slow": 20, "fats": 1}, version=2),
        config(strategy="no_such_rule", version=3),
        config(params={"fast": 7, "slow": 20}, version=4),  # Job A computes no sma_7
        config(strategy_id="other", params={"fast": 1}, version=5),  # not ours: ignored
    ]
    put(connectors, "strategy_config", bad)
    writer = connectors.writer("strategy_config")
    writer.write_raw(
        [
            (
                SID,
                b'{"strategy_id":"s1","strategy":"sma_cross","account":"A1","sizing":"FIXED_NOTIONAL","ts":"2026-01-05T14:30:00Z"}',
            )
        ]
    )
    writer.close()
    runner.run()
    put(connectors, "sma_wide", rows[half:])
    runner.run()

    assert fired(signals(connectors)) == ref_sma_cross(frame(rows), 5, 20)
    dead = sorted(letters(connectors), key=lambda d: d.offset or 0)
    reasons = [d.reason for d in dead]
    assert len(reasons) == 4, reasons
    assert "unknown param(s) fats" in reasons[0]
    assert "the last good one stays" in reasons[0]
    assert "unknown strategy 'no_such_rule'" in reasons[1]
    assert "reads sma_7, which Job A does not compute" in reasons[2]
    assert "sizing FIXED_NOTIONAL needs notional" in reasons[3]
    assert {(d.source_stream, d.job) for d in letters(connectors)} == {("strategy_config", "strategy:s1")}
    assert [d.offset for d in dead] == [1, 2, 3, 5]


def test_invalid_config_at_start_is_dead_lettered_and_no_signal_follows(
    settings: Settings, connectors: Connectors, rows: list[SmaWide]
) -> None:
    put(connectors, "strategy_config", [config(params={"fast": 50, "slow": 20})])
    put(connectors, "sma_wide", rows)
    run_main(build_flow(SID, settings))
    assert signals(connectors) == []
    (letter,) = letters(connectors)
    assert "fast must be less than slow" in letter.reason


def test_rows_before_any_config_give_no_signal(
    settings: Settings, connectors: Connectors, tmp_path: Path, rows: list[SmaWide]
) -> None:
    half = len(rows) // 2
    runner = Runner(settings, tmp_path)
    put(connectors, "sma_wide", rows[:half])
    runner.run()
    assert signals(connectors) == []
    put(connectors, "strategy_config", [config()])
    runner.run()
    put(connectors, "sma_wide", rows[half:])
    runner.run()
    assert fired(signals(connectors)) == ref_sma_cross(frame(rows[half:]), 5, 20)


@pytest.mark.parametrize("scope", ["global", f"strategy:{SID}", "account:A1"])
def test_halt_and_resume_through_the_control_table(
    settings: Settings, connectors: Connectors, tmp_path: Path, rows: list[SmaWide], scope: str
) -> None:
    half = len(rows) // 2
    runner = Runner(settings, tmp_path)
    put(connectors, "strategy_config", [config()])
    put(connectors, "control", [Control(scope=scope, state=TradingState.HALTED, ts=T0)])
    put(connectors, "sma_wide", rows[:half])
    runner.run()
    assert signals(connectors) == []  # halted from the very first row
    put(connectors, "control", [Control(scope=scope, state=TradingState.ACTIVE, ts=T0)])
    runner.run()
    put(connectors, "sma_wide", rows[half:])
    runner.run()
    part2 = {(r.symbol, r.seq) for r in rows[half:]}
    want = {f for f in ref_sma_cross(frame(rows), 5, 20) if (f[0], f[1]) in part2}
    assert fired(signals(connectors)) == want


def test_other_scopes_do_not_halt_this_strategy(
    settings: Settings, connectors: Connectors, rows: list[SmaWide]
) -> None:
    put(connectors, "strategy_config", [config()])
    put(
        connectors,
        "control",
        [
            Control(scope="strategy:other", state=TradingState.HALTED, ts=T0),
            Control(scope="account:A2", state=TradingState.HALTED, ts=T0),
        ],
    )
    put(connectors, "sma_wide", rows)
    run_main(build_flow(SID, settings))
    assert fired(signals(connectors)) == ref_sma_cross(frame(rows), 5, 20)


def test_limit_orders_and_notional_sizing_end_to_end(
    settings: Settings, connectors: Connectors, rows: list[SmaWide]
) -> None:
    put(
        connectors,
        "strategy_config",
        [
            config(
                sizing=Sizing.FIXED_NOTIONAL,
                qty=None,
                notional=Decimal(10_000),
                order_type=OrderType.LIMIT,
                limit_offset_bps=Decimal(25),
            )
        ],
    )
    put(connectors, "sma_wide", rows)
    run_main(build_flow(SID, settings))
    sigs = signals(connectors)
    assert sigs
    for s in sigs:
        assert s.ref_px is not None
        assert s.limit_px is not None
        assert s.qty == Decimal(10_000) // s.ref_px
        assert s.limit_px == s.limit_px.quantize(Decimal("0.01"))
        if s.side is Side.BUY:
            assert s.ref_px * Decimal("0.9975") - Decimal("0.01") < s.limit_px <= s.ref_px * Decimal("0.9975")
        else:
            assert s.ref_px * Decimal("1.0025") <= s.limit_px < s.ref_px * Decimal("1.0025") + Decimal("0.01")


def test_bad_sma_wide_rows_are_dead_lettered_and_the_flow_goes_on(
    settings: Settings, connectors: Connectors
) -> None:
    put(connectors, "strategy_config", [config(params={"fast": 5, "slow": 10})])
    good = [
        SmaWide(symbol="X", ts=T0 + timedelta(seconds=i), price=100.0, volume=1.0, seq=i, sma_5=f, sma_10=0.0)
        for i, f in enumerate([-1.0, 1.0, -1.0])
    ]
    writer = connectors.writer("sma_wide")
    writer.write_raw(
        [
            ("X", encode(good[0])),
            ("X", b"{not json"),
            ("X", b'{"symbol":"X","ts":"2026-01-05T14:30:00Z","price":0.0,"volume":1.0,"seq":9}'),
            ("X", b'{"symbol":"X","ts":"2026-01-05T14:30:00Z","price":1.0,"volume":1.0,"bogus":1}'),
            *[("X", encode(g)) for g in good[1:]],
        ]
    )
    writer.close()
    run_main(build_flow(SID, settings))
    assert [s.signal_id for s in signals(connectors)] == [f"{SID}:X:1", f"{SID}:X:2"]
    reasons = [d.reason for d in sorted(letters(connectors), key=lambda d: d.offset or 0)]
    assert len(reasons) == 3
    assert "bad JSON" in reasons[0]
    assert "price must be a finite number > 0" in reasons[1]
    assert "bogus" in reasons[2]


def test_a_row_the_strategy_raises_on_is_dead_lettered_and_the_flow_goes_on(
    settings: Settings, connectors: Connectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poison pill no check refused (here: a strategy bug) never stops Job B (#17 item 1)."""

    monkeypatch.setattr("operators.strategies.base.STRATEGIES", dict(STRATEGIES))  # dropped after

    @register("fragile_every_row")
    class Fragile(Strategy[None]):
        PARAMS: ClassVar[Mapping[str, Param]] = {}

        def columns(self) -> tuple[str, ...]:
            return ()

        def new_state(self) -> None:
            return None

        def on_row(self, state: None, row: SmaWide) -> Intent | None:
            if row.price == 13.0:
                raise ZeroDivisionError("a bug that only this price finds")
            return Intent(Side.BUY, "every row", {})

    put(connectors, "strategy_config", [config(strategy="fragile_every_row", params={})])
    prices = [10.0, 11.0, 13.0, 12.0, 13.0, 14.0]
    put(connectors, "sma_wide", [
        SmaWide(symbol="X", ts=T0 + timedelta(seconds=i), price=p, volume=1.0, seq=i)
        for i, p in enumerate(prices)
    ])
    run_main(build_flow(SID, settings))
    assert [s.signal_id for s in signals(connectors)] == [f"{SID}:X:{i}" for i in (0, 1, 3, 5)]
    dead = sorted(letters(connectors), key=lambda d: d.offset or 0)
    assert [(d.source_stream, d.offset, d.job) for d in dead] == [
        ("sma_wide", 2, f"strategy:{SID}"), ("sma_wide", 4, f"strategy:{SID}")]
    assert all("ZeroDivisionError: a bug that only this price finds" in d.reason for d in dead)
    assert all('"price":13.0' in d.payload for d in dead)


def test_several_strategy_flows_read_the_same_stream(
    settings: Settings, connectors: Connectors, rows: list[SmaWide]
) -> None:
    put(
        connectors,
        "strategy_config",
        [
            config(strategy_id="fast_x", account="A1"),
            config(strategy_id="rsi_y", strategy="rsi_reversion", params={"period": 14}, account="A2"),
        ],
    )
    put(connectors, "sma_wide", rows)
    run_main(build_flow("fast_x", settings))
    run_main(build_flow("rsi_y", settings))
    sigs = signals(connectors)
    by = {sid: [s for s in sigs if s.strategy_id == sid] for sid in ("fast_x", "rsi_y")}
    assert fired(by["fast_x"]) == ref_sma_cross(frame(rows), 5, 20)
    assert fired(by["rsi_y"]) == ref_rsi(frame(rows), 14, 30, 70)
    assert {s.account for s in by["rsi_y"]} == {"A2"}
    assert all(s.signal_id.startswith(f"{s.strategy_id}:") for s in sigs)


def test_the_cli_factory_string_builds_a_flow_per_strategy_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(tmp_path))
    flow = _locate_dataflow("flows.strategy", "build_flow('rsi_y')")
    assert flow.flow_id == "strategy_rsi_y"
    assert list(tmp_path.iterdir()) == []  # building touches no file


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_live_flow_applies_a_config_change_without_restart(tmp_path: Path, rows: list[SmaWide]) -> None:
    data = tmp_path / "data"
    conn = Connectors(load_settings(data_dir=data))
    half = len(rows) // 2
    part1, part2 = rows[:half], rows[half:]
    want1 = ref_sma_cross(frame(part1), 5, 20)
    want = ref_sma_cross(frame(rows), 5, 20)
    put(conn, "strategy_config", [config()])
    put(conn, "sma_wide", part1)
    rec = tmp_path / "recovery"
    env = env_for(data, TRADEFLOW_FOLLOW="true", TRADEFLOW_POLL_INTERVAL_MS="20")
    init_recovery(rec, env, tmp_path / "flow.log")
    cmd = ["-m", "bytewax.run", f"flows.strategy:build_flow({SID!r})", "-r", str(rec), "-s", "1", "-b", "0"]
    proc = start(cmd, env, tmp_path / "flow.log")
    try:
        market = lambda: [s for s in signals(conn) if s.symbol != "PROBE"]  # noqa: E731
        _wait_for(lambda: fired(market()) == want1, "the signals of part 1")
        put(conn, "strategy_config", [config(qty=3, version=2)])
        # Probe rows (a cross on every row) show when the update has reached the
        # shards; with one worker the fan-out reaches every shard in one activation.
        probes = 0

        def probed() -> bool:
            nonlocal probes
            put(
                conn,
                "sma_wide",
                [
                    SmaWide(
                        symbol="PROBE",
                        ts=T0,
                        price=100.0,
                        volume=1.0,
                        seq=probes,
                        sma_5=1.0 if probes % 2 else -1.0,
                        sma_20=0.0,
                    )
                ],
            )
            probes += 1
            return any(s.qty == 3 for s in signals(conn) if s.symbol == "PROBE")

        _wait_for(probed, "the config update")
        put(conn, "sma_wide", part2)
        _wait_for(lambda: fired(market()) == want, "the signals of part 2")
    finally:
        proc.kill()
        proc.wait(30)
    sigs = market()
    assert {s.qty for s in sigs if s.ts <= part1[-1].ts} == {Decimal(10)}
    assert {s.qty for s in sigs if s.ts > part1[-1].ts} == {Decimal(3)}
