"""Job C on the kafka profile (real broker) against the embedded store, same small input.

The job needs an order to exist before its fills arrive, and Bytewax gives no order
between input streams, so the input goes in phases, each run to its end and resumed
from the previous phase's recovery snapshot, on both profiles alike: setup (accounts,
symbol limits, a strategy halt, ticks), signals, fills, and a closing tick per symbol
at the last price (so every open position's last row has the same time whatever the
order of the fills and the marks the symbol router sends new holders). On Kafka a
stream written again after its end-of-stream marker is read on to its next marker.

The profiles partition differently (2 embedded partitions, 3 topic partitions) and
batch differently, so the input keeps the final state independent of interleaving:
no limit that depends on an account's earlier orders (open orders, order rate,
position, exposure, buying power), fills at the mark without fees (equity never moves,
so the peak does not depend on the order), at most one filled order per account and
symbol. Pass/fail and the failed rules then depend on each signal alone, which is what
is compared (a decision's rule values and input offsets legitimately differ: offsets
are per profile).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.registry import Connectors
from connectors.settings import Settings
from flows.portfolio_risk import build_flow
from schemas import (
    Account,
    AccountStatus,
    Control,
    Decision,
    ExecStatus,
    MarketData,
    OrderAction,
    OrderType,
    PortfolioState,
    PositionState,
    Record,
    RiskDecision,
    Side,
    SymbolLimit,
    TradeSignal,
    TradingState,
    ValidatedOrder,
    VenueFill,
    decode,
    spec,
)
from tests.integration.kafka.profiles import kafka_env, kafka_settings
from tests.integration.profiles import (
    ProfileRuns,
    assert_same_by_id,
    count_records,
    feed,
    local_settings,
    read_stream,
)
from tests.recovery.procs import env_for, start
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
OUTPUTS = ["risk_decisions", "validated_orders", "risk_events", "orders", "positions_state",
           "portfolio_state", "dead_letters"]
SYMBOLS = ["AAA", "BBB", "CCC"]
ACCOUNTS = ["K1", "K2", "K3", "K4"]
BLOCKED = "K4"
PAUSED = "paused"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def setup_phase() -> dict[str, Sequence[Record]]:
    """Accounts (one BLOCKED), symbol limits, a halted strategy, and ticks."""
    accounts = [
        Account(account=a, cash=Decimal(1_000_000), max_order_qty=Decimal(100),
                max_order_notional=Decimal(12_000), price_collar_bps=Decimal(50),
                daily_loss_limit=Decimal(50_000), max_drawdown=Decimal(80_000),
                status=AccountStatus.BLOCKED if a == BLOCKED else AccountStatus.ACTIVE, ts=at(0))
        for a in ACCOUNTS
    ]
    limits = [SymbolLimit(account=a, symbol=s, max_position_qty=Decimal(1_000_000), ts=at(0))
              for a in ACCOUNTS for s in SYMBOLS]
    ticks = [MarketData(symbol=s, ts=at(1 + i), price=Decimal(100 + 10 * k) + Decimal(i) / 10,
                        volume=Decimal(10))
             for i in range(5) for k, s in enumerate(SYMBOLS)]
    return {
        "accounts": accounts,
        "symbol_limits": limits,
        "control": [Control(scope=f"strategy:{PAUSED}", state=TradingState.HALTED, ts=at(0))],
        "market_data": ticks,
        "trade_signals": [],
        "venue_fills": [],
    }


def last_marks(ticks: Sequence[Record]) -> dict[str, Decimal]:
    return {t.symbol: t.price for t in ticks if isinstance(t, MarketData)}


def signals(n: int, marks: dict[str, Decimal]) -> list[TradeSignal]:
    """Signals over the accounts (and one unknown) that pass or fail on their own merits."""
    rng = random.Random(5)  # noqa: S311 - test data, not crypto
    out = []
    for i in range(n):
        sym = rng.choice(SYMBOLS)
        mark = marks[sym]
        limit_px = None
        if rng.random() < 0.4:  # within or beyond the 50 bps collar
            off = Decimal(str(rng.choice([-0.004, 0.002, 0.008, -0.01])))
            limit_px = (mark * (1 + off)).quantize(Decimal("0.01"))
        out.append(TradeSignal(
            signal_id=f"k-{i:04d}", strategy_id=rng.choice(["alpha", "beta", PAUSED]), symbol=sym,
            account=rng.choice([*ACCOUNTS, "NOBODY"]), side=rng.choice([Side.BUY, Side.SELL]),
            qty=Decimal(rng.randrange(1, 130)), limit_px=limit_px, ref_px=mark, ts=at(60 + i * 0.05),
            order_type=OrderType.LIMIT if limit_px else OrderType.MARKET,
        ))
    return out


def fills(orders: Sequence[Record], marks: dict[str, Decimal]) -> list[VenueFill]:
    """Ack, half, rest for the first order of each account and symbol; at the mark, no fee."""
    chosen: dict[tuple[str, str], ValidatedOrder] = {}
    for o in sorted((o for o in orders if isinstance(o, ValidatedOrder)), key=lambda o: o.order_id):
        if o.action is OrderAction.NEW:
            chosen.setdefault((o.account, o.symbol), o)
    out: list[VenueFill] = []
    for o in chosen.values():
        px, half = marks[o.symbol], (o.qty / 2).to_integral_value()
        base = {"order_id": o.order_id, "venue": "paper", "account": o.account, "symbol": o.symbol,
                "side": o.side}
        steps: list[dict[str, object]] = [{"status": ExecStatus.NEW, "leaves_qty": o.qty}]
        rest = o.qty
        if 0 < half < o.qty:
            rest = o.qty - half
            steps.append({"status": ExecStatus.PARTIAL, "last_qty": half, "last_px": px,
                          "cum_qty": half, "leaves_qty": rest, "avg_px": px})
        steps.append({"status": ExecStatus.FILLED, "last_qty": rest, "last_px": px, "cum_qty": o.qty,
                      "avg_px": px})
        for k, step in enumerate(steps):
            out.append(VenueFill(**base, **step, exec_id=f"{o.order_id}-{k}",  # type: ignore[arg-type]
                                 ts=at(200 + len(out) * 0.01)))
    return out


def closing_ticks(marks: dict[str, Decimal]) -> list[MarketData]:
    return [MarketData(symbol=s, ts=at(600), price=px, volume=Decimal(1)) for s, px in marks.items()]


def order_id(rec: Record) -> str:
    assert isinstance(rec, ValidatedOrder)
    return rec.order_id


def run_phases(
    settings: Settings, recovery: Path, phases: Sequence[dict[str, Sequence[Record]]]
) -> None:
    """Feed each phase (closing what it writes) and run Job C over it, resuming each time."""
    recovery.mkdir(parents=True)
    init_db_dir(recovery, 1)
    for inputs in phases:
        feed(settings, inputs)
        run_main(build_flow(settings), epoch_interval=timedelta(seconds=0.2),
                 recovery_config=RecoveryConfig(str(recovery)))


def latest(settings: Settings, table: str) -> dict[str, Record]:
    reader = Connectors(settings).reader(table)
    try:
        return {k: decode(spec(table).model, v) for k, v in reader.scan_latest()}
    finally:
        reader.close()


def verdicts(records: Sequence[Record]) -> dict[str, tuple[Decision, list[str]]]:
    """Index decisions by signal id: pass/fail and the failed rules (fail on a repeat)."""
    out: dict[str, tuple[Decision, list[str]]] = {}
    for d in records:
        assert isinstance(d, RiskDecision)
        assert d.signal_id not in out, f"two decisions for {d.signal_id}"
        out[d.signal_id] = (d.decision, [r.rule for r in d.rules if not r.passed])
    return out


def run_job_c_on_both(broker: KafkaBroker, tmp_path: Path) -> tuple[ProfileRuns, int]:
    """Run the four phases on the local and the kafka profile; return outputs and #signals."""
    setup = setup_phase()
    marks = last_marks(setup["market_data"])
    sigs = signals(60, marks)
    loc = local_settings(tmp_path / "local")
    kaf = kafka_settings(broker, tmp_path / "kafka")
    run_phases(loc, tmp_path / "local_recovery", [setup, {"trade_signals": sigs}])
    fill_phase: dict[str, Sequence[Record]] = {
        "venue_fills": fills(read_stream(loc, "validated_orders"), marks)
    }
    close_phase: dict[str, Sequence[Record]] = {"market_data": closing_ticks(marks)}
    run_phases(kaf, tmp_path / "kafka_recovery",
               [setup, {"trade_signals": sigs}, fill_phase, close_phase])
    # the local run goes on from its own snapshot with the same fills and ticks
    for inputs in (fill_phase, close_phase):
        feed(loc, inputs)
        run_main(build_flow(loc), epoch_interval=timedelta(seconds=0.2),
                 recovery_config=RecoveryConfig(str(tmp_path / "local_recovery")))
    outputs: dict[str, dict[str, list[Record]]] = {
        name: {stream: read_stream(s, stream) for stream in OUTPUTS}
        for name, s in (("local", loc), ("kafka", kaf))
    }
    return ProfileRuns(outputs["local"], outputs["kafka"], loc, kaf, "kafka"), len(sigs)


def test_job_c_on_kafka_decides_and_books_like_on_the_embedded_store(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    runs, n = run_job_c_on_both(kafka_broker, tmp_path)

    local, kafka = verdicts(runs.local["risk_decisions"]), verdicts(runs.kafka["risk_decisions"])
    assert len(local) == n
    assert kafka == local
    outcomes = {d for d, _ in local.values()}
    failed = {rule for _, rules in local.values() for rule in rules}
    assert outcomes == {Decision.PASS, Decision.FAIL}
    assert {"ACCOUNT_STATUS", "TRADING_HALTED", "MAX_ORDER_QTY", "MAX_ORDER_NOTIONAL",
            "PRICE_COLLAR"} <= failed, "the input no longer exercises these rules"

    assert_same_by_id(runs, "validated_orders", order_id)
    assert len(runs.local["validated_orders"]) == sum(d is Decision.PASS for d, _ in local.values())

    for table in ("portfolio_state", "positions_state"):
        want = latest(runs.local_settings, table)
        assert latest(runs.kafka_settings, table) == want, table
    portfolio = latest(runs.local_settings, "portfolio_state")
    assert set(portfolio) == set(ACCOUNTS)
    positions = [p for p in latest(runs.local_settings, "positions_state").values()
                 if isinstance(p, PositionState) and p.net_qty != 0]
    assert len(positions) >= 4, "the fills opened too few positions to compare"
    assert all(isinstance(p, PortfolioState) and p.ts == at(600) for p in portfolio.values()
               if p.account in {q.account for q in positions})  # type: ignore[attr-defined]
    assert runs.kafka["dead_letters"] == runs.local["dead_letters"] == []


@pytest.mark.parametrize("profile", ["local", "kafka"])
def test_live_job_c_decides_signals_as_they_arrive_after_a_closed_control_table(
    kafka_broker: KafkaBroker, tmp_path: Path, profile: str
) -> None:
    settings = (
        kafka_settings(kafka_broker, tmp_path / "data") if profile == "kafka"
        else local_settings(tmp_path / "data")
    )
    setup = setup_phase()
    feed(settings, setup)  # every input closed, the control table included
    env = kafka_env(settings, TRADEFLOW_FOLLOW="true") if profile == "kafka" else env_for(
        tmp_path / "data", TRADEFLOW_FOLLOW="true")
    proc = start(["-m", "bytewax.run", "flows.portfolio_risk:build_flow()"], env, tmp_path / "flow.log")
    try:
        sigs = [s for s in signals(20, last_marks(setup["market_data"])) if s.account in ACCOUNTS]
        feed(settings, {"trade_signals": sigs}, close=False)
        deadline = time.monotonic() + 20
        while count_records(settings, "risk_decisions") < len(sigs) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "flow.log").read_text()[-3000:]
            time.sleep(0.2)
        assert count_records(settings, "risk_decisions") == len(sigs)
    finally:
        proc.kill()
        proc.wait(30)
