"""Job C end to end on the embedded store: decisions, fills, kill switch, resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.testing import run_main

from connectors.settings import Settings
from flows.portfolio_risk import build_flow
from operators.portfolio import order_id_for
from schemas import (
    Account,
    Control,
    Decision,
    Instrument,
    MarketData,
    OrderAction,
    OrderType,
    RiskDecision,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
)
from tests.helpers import JOB_C_INPUTS, Phases

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def signal(i: int, qty: str, side: str = "BUY", account: str = "ACC1", sym: str = "X") -> TradeSignal:
    return TradeSignal(
        signal_id=f"s{i}", strategy_id="st", symbol=sym, account=account, side=side,
        qty=Decimal(qty), ts=at(10 + i),
    )


@pytest.fixture
def phases(settings: Settings, tmp_path: Path) -> Phases:
    return Phases(settings, tmp_path)


ACCOUNT = Account(
    account="ACC1", cash=Decimal(100_000), max_order_notional=Decimal(5000), max_open_orders=5, ts=T0
)


def test_every_signal_gets_exactly_one_decision_and_passing_ones_an_order(phases: Phases) -> None:
    phases.run(
        accounts=[ACCOUNT],
        market_data=[MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)],
        trade_signals=[signal(0, "10"), signal(1, "60"), signal(2, "5"), signal(3, "1", account="NOBODY")],
    )
    decisions = {d.signal_id: d for d in phases.all("risk_decisions")}  # type: ignore[attr-defined]
    assert sorted(decisions) == ["s0", "s1", "s2", "s3"]
    assert [decisions[s].decision for s in ("s0", "s1", "s2", "s3")] == [
        Decision.PASS, Decision.FAIL, Decision.PASS, Decision.FAIL,
    ]
    failed = {r.rule for r in decisions["s1"].rules if not r.passed}
    assert failed == {"MAX_ORDER_NOTIONAL"}
    assert {r.rule for r in decisions["s3"].rules if not r.passed} >= {"ACCOUNT_STATUS"}
    orders = phases.all("validated_orders")
    assert [o.order_id for o in orders] == [order_id_for("ACC1", "s0"), order_id_for("ACC1", "s2")]  # type: ignore[attr-defined]
    events = phases.all("risk_events")
    assert {(e.signal_id, e.rule) for e in events} >= {("s1", "MAX_ORDER_NOTIONAL")}  # type: ignore[attr-defined]


def test_fills_move_positions_pnl_and_order_states(phases: Phases) -> None:
    phases.run(
        accounts=[ACCOUNT],
        market_data=[MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)],
        trade_signals=[signal(0, "10")],
    )
    oid = order_id_for("ACC1", "s0")
    fill = {"order_id": oid, "venue": "paper", "account": "ACC1", "symbol": "X", "side": "BUY"}
    phases.run(
        venue_fills=[
            VenueFill(**fill, exec_id="e0", status="NEW", leaves_qty=Decimal(10), ts=at(20)),
            VenueFill(**fill, exec_id="e1", status="PARTIAL", last_qty=Decimal(4), last_px=Decimal(100),
                      cum_qty=Decimal(4), leaves_qty=Decimal(6), avg_px=Decimal(100), ts=at(21)),
            VenueFill(**fill, exec_id="e1", status="PARTIAL", last_qty=Decimal(4), last_px=Decimal(100),
                      cum_qty=Decimal(4), leaves_qty=Decimal(6), avg_px=Decimal(100), ts=at(21)),
            VenueFill(**fill, exec_id="e2", status="FILLED", last_qty=Decimal(6), last_px=Decimal(101),
                      cum_qty=Decimal(10), leaves_qty=Decimal(0), avg_px=Decimal("100.6"), ts=at(22)),
        ],
    )
    phases.run(market_data=[MarketData(symbol="X", ts=at(30), price=Decimal(110), volume=1)])
    (pos,) = list(phases.conn.reader("positions_state").scan_latest())
    from schemas import OrderState, PortfolioState, PositionState, decode

    p = decode(PositionState, pos[1])
    assert p.net_qty == Decimal(10)  # the duplicate exec_id e1 was not counted twice
    assert p.avg_px == Decimal("100.6")
    assert p.unrealized_pnl == Decimal("94.0")  # (110 - 100.6) * 10
    order = decode(OrderState, phases.conn.reader("orders").latest(oid) or b"")
    assert order.status.value == "FILLED"
    port = decode(PortfolioState, phases.conn.reader("portfolio_state").latest("ACC1") or b"")
    assert port.cash == Decimal(100_000) - Decimal(1006)
    assert port.equity == port.cash + Decimal(1100)
    assert port.open_orders == 0


def test_global_halt_cancels_every_open_order_once(phases: Phases) -> None:
    phases.run(
        accounts=[ACCOUNT],
        market_data=[MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)],
        trade_signals=[signal(0, "1"), signal(1, "2"), signal(2, "3")],
    )
    halt = Control(scope="global", state="HALTED", reason="drill", ts=at(40))
    phases.run(control=[halt])
    phases.run(control=[Control(scope="global", state="HALTED", reason="again", ts=at(41))],
               trade_signals=[signal(5, "1")])
    orders = [o for o in phases.all("validated_orders") if isinstance(o, ValidatedOrder)]
    cancels = [o for o in orders if o.action is OrderAction.CANCEL]
    news = [o for o in orders if o.action is OrderAction.NEW]
    assert len(news) == 3
    assert sorted(c.order_id for c in cancels) == sorted(n.order_id for n in news)
    last = [d for d in phases.all("risk_decisions") if isinstance(d, RiskDecision) and d.signal_id == "s5"]
    assert last[0].decision is Decision.FAIL
    critical = [e for e in phases.all("risk_events") if e.severity.value == "CRITICAL"]  # type: ignore[attr-defined]
    assert len(critical) == 1


def test_a_replayed_phase_emits_no_order_twice(phases: Phases, settings: Settings) -> None:
    phases.run(
        accounts=[ACCOUNT],
        market_data=[MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)],
        trade_signals=[signal(i, "1") for i in range(4)],
    )
    # Run the whole input again without recovery (a full replay): ids repeat, the log does not.
    for name in JOB_C_INPUTS:
        w = phases.conn.writer(name)
        w.close_stream()
        w.close()
    run_main(build_flow(settings))
    ids = [(o.order_id, o.action) for o in phases.all("validated_orders")]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids)) == 4
    assert len(phases.all("risk_decisions")) == 4


def test_halt_written_before_start_wins_over_signals(phases: Phases) -> None:
    phases.run(
        accounts=[ACCOUNT],
        control=[Control(scope="global", state="HALTED", reason="pre-open", ts=T0)],
        market_data=[MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)],
        trade_signals=[signal(i, "1") for i in range(20)],
    )
    decisions = [d for d in phases.all("risk_decisions") if isinstance(d, RiskDecision)]
    assert len(decisions) == 20
    assert {d.decision for d in decisions} == {Decision.FAIL}
    assert phases.all("validated_orders") == []


def test_shadow_instance_writes_only_would_be_decisions(phases: Phases, tmp_path: Path) -> None:
    limits = tmp_path / "limits.json"
    limits.write_text('{"accounts": {"*": {"max_order_notional": 150}}}')
    phases.run(
        accounts=[ACCOUNT],
        market_data=[MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)],
        trade_signals=[signal(0, "1"), signal(1, "2"), signal(2, "3")],
    )
    live_orders = len(phases.all("validated_orders"))
    for name in JOB_C_INPUTS:
        w = phases.conn.writer(name)
        w.close_stream()
    run_main(build_flow(phases.settings, str(limits)))
    shadow = {d.signal_id: d.decision for d in phases.all("shadow_decisions")}  # type: ignore[attr-defined]
    live = {d.signal_id: d.decision for d in phases.all("risk_decisions")}  # type: ignore[attr-defined]
    assert live == {"s0": Decision.PASS, "s1": Decision.PASS, "s2": Decision.PASS}
    assert shadow == {"s0": Decision.PASS, "s1": Decision.FAIL, "s2": Decision.FAIL}
    assert len(phases.all("validated_orders")) == live_orders == 3


def test_signals_waiting_at_start_up_are_decided_under_the_symbol_limits_not_without_them(
    phases: Phases,
) -> None:
    # Thousands of symbol_limits rows take many source batches to read; the signals,
    # already waiting, must not overtake them (they once were decided "no limit set").
    from schemas import SymbolLimit

    limits = [SymbolLimit(account="ACC1", symbol=f"Z{i:04d}", max_position_qty=Decimal(1), ts=T0)
              for i in range(3000)]
    limits.append(SymbolLimit(account="ACC1", symbol="X", max_position_qty=Decimal(20), ts=T0))
    ticks = [MarketData(symbol="X", ts=at(s), price=Decimal(10), volume=1) for s in (1, 100)]
    phases.run(
        accounts=[ACCOUNT], symbol_limits=limits, market_data=ticks,  # signals priced at once
        trade_signals=[signal(i, "15") for i in range(4)],
    )
    decisions = {d.signal_id: d for d in phases.all("risk_decisions")}  # type: ignore[attr-defined]
    assert [decisions[f"s{i}"].decision for i in range(4)] == [Decision.PASS] + [Decision.FAIL] * 3
    for i in range(1, 4):  # 15 working + 15 > 20: refused by the limit, never "no limit"
        assert {r.rule for r in decisions[f"s{i}"].rules if not r.passed} == {"MAX_POSITION_QTY"}


def test_a_replayed_signal_is_not_decided_twice_and_a_reused_id_is_a_conflict(phases: Phases) -> None:
    from schemas import encode

    first = signal(0, "10")
    tick = MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)
    phases.run(accounts=[ACCOUNT], market_data=[tick], trade_signals=[first])
    # An upstream restart re-emits the same signal at a new offset, and someone reuses its
    # id (written raw: the embedded sink would drop both, a Kafka topic keeps them).
    raw = phases.conn.writer("trade_signals")
    raw.write_raw([("ACC1", encode(first)), ("ACC1", encode(signal(0, "999")))])
    raw.close()
    phases.run(trade_signals=[signal(1, "5")])
    decisions = phases.all("risk_decisions")
    assert sorted(d.signal_id for d in decisions) == ["s0", "s1"]  # type: ignore[attr-defined]
    letters = [d for d in phases.all("dead_letters") if d.job == "portfolio_risk"]  # type: ignore[attr-defined]
    assert len(letters) == 1
    assert "seen before with other contents" in letters[0].reason  # type: ignore[attr-defined]
    critical = [e for e in phases.all("risk_events") if e.rule == "SIGNAL_ID_CONFLICT"]  # type: ignore[attr-defined]
    assert [(e.signal_id, e.severity.value) for e in critical] == [("s0", "CRITICAL")]  # type: ignore[attr-defined]
    journal = phases.all("risk_journal")
    assert [e.kind.value for e in journal].count("SIGNAL") == 2  # type: ignore[attr-defined]


def test_a_restart_without_recovery_state_resumes_from_the_journal(phases: Phases, tmp_path: Path) -> None:
    tick = MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)
    phases.run(accounts=[ACCOUNT], market_data=[tick], trade_signals=[signal(i, "10") for i in range(3)])
    before = {d.signal_id: d.model_dump(exclude={"latency_us"}) for d in phases.all("risk_decisions")}  # type: ignore[attr-defined]
    # A fresh recovery store: every input is read again from offset 0. The books first
    # re-apply their journal, so the re-read inputs are recognised and nothing changes.
    import shutil

    from bytewax.recovery import init_db_dir

    shutil.rmtree(phases.recovery)
    phases.recovery.mkdir()
    init_db_dir(phases.recovery, 1)
    phases.run(trade_signals=[signal(3, "60")])
    after = {d.signal_id: d.model_dump(exclude={"latency_us"}) for d in phases.all("risk_decisions")}  # type: ignore[attr-defined]
    assert {k: after[k] for k in before} == before
    assert after["s3"]["decision"] is Decision.FAIL
    assert len(phases.all("risk_journal")) == len({(e.account, e.seq) for e in phases.all("risk_journal")})  # type: ignore[attr-defined]


def test_after_a_restart_signals_wait_for_the_limits_written_while_job_c_was_down(phases: Phases) -> None:
    from schemas import SymbolLimit

    tick = MarketData(symbol="X", ts=at(1), price=Decimal(10), volume=1)
    phases.run(accounts=[ACCOUNT], market_data=[tick])
    limits = [SymbolLimit(account="ACC1", symbol=f"Z{i:04d}", max_position_qty=Decimal(1), ts=T0)
              for i in range(3000)]
    limits.append(SymbolLimit(account="ACC1", symbol="X", max_position_qty=Decimal(20), ts=T0))
    later = MarketData(symbol="X", ts=at(100), price=Decimal(10), volume=1)  # prices them at once
    phases.run(symbol_limits=limits, market_data=[later], trade_signals=[signal(i, "15") for i in range(3)])
    decisions = {d.signal_id: d for d in phases.all("risk_decisions")}  # type: ignore[attr-defined]
    assert [decisions[f"s{i}"].decision for i in range(3)] == [Decision.PASS, Decision.FAIL, Decision.FAIL]


def test_instrument_rules_decide_under_the_instruments_table_and_follow_a_halt(phases: Phases) -> None:
    def inst(sym: str, status: str = "TRADING", s: float = 0) -> Instrument:
        return Instrument(symbol=sym, tick_size=Decimal("0.05"), lot_size=Decimal(5),
                          min_notional=Decimal(100), price_precision=2, qty_precision=0,
                          status=status, ts=at(s))

    def limit(i: int, qty: str, px: str, sym: str = "X", s: float | None = None) -> TradeSignal:
        sig = signal(i, qty, sym=sym)
        return sig.model_copy(update={"order_type": OrderType.LIMIT, "limit_px": Decimal(px),
                                      "ts": at(10 + i if s is None else s)})

    table = phases.conn.writer("instruments")
    table.write([inst("X"), inst("H", "HALTED")])
    table.close()
    phases.run(
        accounts=[ACCOUNT],
        market_data=[MarketData(symbol=s, ts=at(1), price=Decimal(100), volume=1) for s in ("X", "H", "Q")],
        trade_signals=[limit(0, "10", "100.05"), limit(1, "10", "100.07"), limit(2, "7", "100"),
                       limit(3, "10", "100", sym="H"), limit(4, "10", "100", sym="Q"), limit(5, "5", "10")],
    )
    failed = {sid: {r.rule for r in d.rules if not r.passed}
              for sid, d in ((d.signal_id, d) for d in phases.all("risk_decisions"))}  # type: ignore[attr-defined]
    assert failed == {"s0": set(), "s1": {"TICK_SIZE"}, "s2": {"LOT_SIZE"}, "s3": {"INSTRUMENT_STATUS"},
                      "s4": {"INSTRUMENT_STATUS"}, "s5": {"MIN_NOTIONAL"}}
    (unknown,) = [r for d in phases.all("risk_decisions") if d.signal_id == "s4"  # type: ignore[attr-defined]
                  for r in d.rules if r.rule == "INSTRUMENT_STATUS"]  # type: ignore[attr-defined]
    assert unknown.message == "unknown symbol Q: no instrument row"

    table = phases.conn.writer("instruments")
    table.write([inst("X", "HALTED", s=20)])  # a halt written while Job C is down: read before deciding
    table.close()
    phases.run(trade_signals=[limit(6, "10", "100", s=21)])
    (s6,) = [d for d in phases.all("risk_decisions") if d.signal_id == "s6"]  # type: ignore[attr-defined]
    assert {r.rule for r in s6.rules if not r.passed} == {"INSTRUMENT_STATUS"}
    assert [o.signal_id for o in phases.all("validated_orders")] == ["s0"]  # type: ignore[attr-defined]


def test_without_instruments_the_instrument_rules_pass_with_no_instrument_row(phases: Phases) -> None:
    tick = MarketData(symbol="X", ts=at(1), price=Decimal(100), volume=1)
    phases.run(accounts=[ACCOUNT], market_data=[tick], trade_signals=[signal(0, "3")])
    (d,) = phases.all("risk_decisions")
    assert d.decision is Decision.PASS  # type: ignore[attr-defined]
    rules = {r.rule: r for r in d.rules}  # type: ignore[attr-defined]
    names = ("INSTRUMENT_STATUS", "TICK_SIZE", "LOT_SIZE", "MIN_NOTIONAL")
    assert [rules[n].passed for n in names] == [True] * 4
    assert ["no instrument row" in rules[n].message for n in names] == [True] * 4
