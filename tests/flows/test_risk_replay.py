"""Trust the log for Job C: the real flow records decisions, the replay reproduces them.

Job C runs in phases (``Phases``: inputs written, flow run to the end of them, resumed
from its recovery snapshot for the next phase), so what each decision saw is known;
then ``tradeflow.risk_tools`` reads only the logs.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.portfolio import order_id_for
from operators.replay import LimitOverrides, replay_log
from operators.risk import RULES
from schemas import (
    Account,
    Control,
    Decision,
    Instrument,
    MarketData,
    PortfolioState,
    RiskDecision,
    SymbolLimit,
    TradeSignal,
    VenueFill,
    decode,
)
from tests.flows.test_portfolio_risk_flow import T0, Phases, at
from tradeflow.pipeline import run_pipeline
from tradeflow.risk_tools import explain, load_log, replay, shadow

D = Decimal


@pytest.fixture
def phases(settings: Settings, tmp_path: Path) -> Phases:
    return Phases(settings, tmp_path)


def sig(i: int, qty: str, *, sym: str = "X", strategy: str = "st", account: str = "ACC1",
        side: str = "BUY", s: float | None = None) -> TradeSignal:
    return TradeSignal(signal_id=f"s{i}", strategy_id=strategy, symbol=sym, account=account, side=side,
                       qty=D(qty), ts=at(10 + i if s is None else s))


def report(signal: TradeSignal, n: int, status: str, s: float, qty: str = "0", px: str = "0",
           leaves: str = "0") -> VenueFill:
    oid = order_id_for(signal.account, signal.signal_id)
    return VenueFill(order_id=oid, venue="paper", exec_id=f"{oid}-{n}", status=status, account=signal.account,
                     symbol=signal.symbol, side=signal.side, last_qty=D(qty), last_px=D(px), cum_qty=D(qty),
                     leaves_qty=D(leaves), avg_px=D(px), ts=at(s))


def decisions(phases: Phases) -> dict[str, RiskDecision]:
    return {d.signal_id: d for d in phases.all("risk_decisions") if isinstance(d, RiskDecision)}


def tick(sym: str, s: float, px: str) -> MarketData:
    return MarketData(symbol=sym, ts=at(s), price=D(px), volume=D(1))


# --------------------------------------------------------------------- replay


def test_replay_reproduces_every_decision_and_knows_when_the_limits_changed(
    phases: Phases, settings: Settings
) -> None:
    v1 = Account(account="ACC1", cash=D(100_000), max_order_notional=D(5000), max_open_orders=5, ts=T0)
    s = {i: sig(i, q) for i, q in enumerate(["10", "60", "5"])}
    s[2] = sig(2, "5", sym="Y")
    phases.run(
        accounts=[v1],
        symbol_limits=[SymbolLimit(account="ACC1", symbol="X", max_position_qty=D(100), ts=T0)],
        market_data=[tick("X", 1, "100"), tick("Y", 1.5, "50")],
    )
    phases.run(trade_signals=[s[0], s[1], s[2]])
    phases.run(venue_fills=[report(s[0], 1, "FILLED", 13, "10", "100"),
                            report(s[2], 1, "NEW", 13, leaves="5"),
                            report(s[2], 2, "PARTIAL", 14, "2", "50", leaves="3")])
    phases.run(market_data=[tick("X", 20, "105"), tick("Y", 20.5, "52"), tick("X", 22, "107")])
    v2 = v1.model_copy(update={"max_order_notional": D(10_000), "limits_version": 2,
                               "updated_by": "risk-desk", "ts": at(30)})
    phases.run(accounts=[v2])  # the limit is raised between two phases
    s.update({3: sig(3, "60", s=31), 4: sig(4, "90", s=32), 5: sig(5, "1", sym="Y", s=33)})
    phases.run(trade_signals=[s[3], s[4], s[5]])
    phases.run(control=[Control(scope="global", state="HALTED", reason="drill", ts=at(40))])
    s[6] = sig(6, "1", s=41)
    phases.run(trade_signals=[s[6]], market_data=[tick("Y", 41.5, "51")])
    phases.run(control=[Control(scope="global", state="ACTIVE", ts=at(50))])
    s[7] = sig(7, "1", s=51)
    phases.run(trade_signals=[s[7]])

    recorded = decisions(phases)
    outcome = {sid: (d.decision.value, d.limits_version) for sid, d in recorded.items()}
    assert outcome == {
        "s0": ("PASS", 1), "s1": ("FAIL", 1), "s2": ("PASS", 1),         # 6000 > 5000 under v1
        "s3": ("PASS", 2), "s4": ("FAIL", 2), "s5": ("PASS", 2),         # 6420 <= 10000 under v2
        "s6": ("FAIL", 2), "s7": ("PASS", 2),                           # halted, then active again
    }
    assert {r.rule for r in recorded["s4"].rules if not r.passed} == {"MAX_POSITION_QTY"}

    result = replay(settings)
    assert result.checked == 8
    assert result.replayed == 8
    assert result.differences == []
    assert result.unrecorded == []
    assert result.orphans == []
    assert result.offsets_differ == []
    assert result.ok
    changes = [(c.limits_version, c.offset, c.updated_by, c.first_signal_id)
               for c in result.limit_changes if c.stream == "accounts"]
    assert changes == [(1, 0, "ops", "s0"), (2, 1, "risk-desk", "s3")]
    halted = explain(settings, "s6")
    assert "control      global HALTED (drill)" in halted
    assert "FAIL  TRADING_HALTED" in halted
    # and each replayed decision was made on the accounts row its record names
    for r in replay_log(load_log(settings)):
        assert r.account_row is not None
        assert r.account_row.offset == recorded[r.decision.signal_id].input_offsets["accounts:0"]


def test_explain_names_failed_rules_first_the_limits_in_force_and_the_inputs(
    phases: Phases, settings: Settings
) -> None:
    row = Account(account="ACC1", cash=D(100_000), max_order_notional=D(5000), limits_version=3,
                  updated_by="alice", ts=T0)
    phases.run(accounts=[row], market_data=[tick("X", 1, "100")])
    phases.run(trade_signals=[sig(0, "60"), sig(1, "10")])
    text = explain(settings, "s0")
    lines = text.splitlines()
    assert lines[0] == "risk decision for signal s0: FAIL"
    rules = [ln for ln in lines if ln.startswith(("  FAIL", "  pass"))]
    assert rules[0].split()[:2] == ["FAIL", "MAX_ORDER_NOTIONAL"]
    assert "value 6000" in rules[0]
    assert "limit 5000" in rules[0]
    assert all(r.startswith("  pass") for r in rules[1:])
    assert len(rules) == len(RULES)
    assert "version 3 in force" in text
    assert "set by alice" in text
    assert "X 100 at 2026-01-05T14:30:01.000Z" in text
    # an order id finds the decision that made it
    oid = order_id_for("ACC1", "s1")
    by_order = explain(settings, oid)
    assert by_order.startswith("risk decision for signal s1: PASS")
    assert oid in by_order


# --------------------------------------------------------------------- shadow limits


def test_shadow_stricter_order_notional_reports_exactly_the_orders_it_would_refuse(
    phases: Phases, settings: Settings, tmp_path: Path
) -> None:
    row = Account(account="ACC1", cash=D(1_000_000), max_order_notional=D(10_000), ts=T0)
    other = Account(account="ACC2", cash=D(1_000_000), max_order_notional=D(10_000), ts=T0)
    phases.run(accounts=[row, other], market_data=[tick("X", 1, "100"), tick("Y", 1, "20")])
    sizes = ["5", "45", "41", "120", "80", "39", "99", "70"]  # X: odd i at 100, Y: even i at 20
    signals = [sig(i, q, sym="X" if i % 2 else "Y", account="ACC1" if i % 3 else "ACC2")
               for i, q in enumerate(sizes)]
    phases.run(trade_signals=signals)
    limits = tmp_path / "tight.json"
    limits.write_text(json.dumps({"label": "tight", "accounts": {"*": {"max_order_notional": "4000"}}}))
    result = shadow(settings, limits)

    expected = set()
    for d in decisions(phases).values():
        notional = next(r for r in d.rules if r.rule == "MAX_ORDER_NOTIONAL")
        if d.decision is Decision.PASS and D(notional.value or "0") > 4000:
            expected.add(d.signal_id)
    assert expected == {"s1", "s7"}  # 4500 and 7000; 3900 and less stay
    assert {c.signal_id for c in result.would_refuse} == expected
    assert all(c.rules == ("MAX_ORDER_NOTIONAL",) for c in result.would_refuse)
    assert result.would_pass == []
    assert result.baseline_differences == 0
    assert result.label == "tight"
    assert result.decisions == len(sizes)
    # a looser limit would have passed the one order refused live
    loose = shadow(settings, LimitOverrides.from_mapping({"accounts": {"*": {"max_order_notional": None}}}))
    assert [(c.signal_id, c.rules) for c in loose.would_pass] == [("s3", ("MAX_ORDER_NOTIONAL",))]


# --------------------------------------------------------------------- reserved exposure


def gross_check(d: RiskDecision) -> tuple[D, D]:
    rule = next(r for r in d.rules if r.rule == "MAX_GROSS_EXPOSURE")
    return D(rule.value or "0"), D(rule.limit or "0")


def test_racing_strategies_cannot_over_commit_and_reservations_are_released(
    phases: Phases, settings: Settings
) -> None:
    margin = Account(account="ACC1", cash=D(100_000), max_gross_exposure=D(10_000), ts=T0)
    cash = Account(account="ACC2", account_type="CASH", cash=D(10_000), ts=T0)
    phases.run(accounts=[margin, cash], market_data=[tick("X", 1, "100")])
    # two strategies fire at the same account, interleaved: 30 x 100 = 3000 each on ACC1,
    # 40 x 100 = 4000 each on ACC2; together they would take 12000 / 16000
    race = [sig(i, "30", strategy="alpha" if i % 2 == 0 else "beta", s=10 + i * 0.001) for i in range(4)]
    race += [sig(10 + i, "40", account="ACC2", strategy="alpha" if i % 2 == 0 else "beta",
                 s=10 + i * 0.001) for i in range(4)]
    phases.run(trade_signals=race)
    first = decisions(phases)
    assert [first[f"s{i}"].decision for i in range(4)] == [Decision.PASS] * 3 + [Decision.FAIL]
    assert {r.rule for r in first["s3"].rules if not r.passed} == {"MAX_GROSS_EXPOSURE"}
    assert [first[f"s{10 + i}"].decision for i in range(4)] == [Decision.PASS] * 2 + [Decision.FAIL] * 2
    assert {r.rule for r in first["s12"].rules if not r.passed} == {"BUYING_POWER"}

    # the venue: one order filled, one cancelled, one rejected, on each account
    s0, s1, s2, s10, s11 = (next(x for x in race if x.signal_id == f"s{i}") for i in (0, 1, 2, 10, 11))
    phases.run(venue_fills=[
        report(s0, 1, "FILLED", 12, "30", "100"), report(s1, 1, "CANCELED", 12),
        report(s2, 1, "REJECTED", 12), report(s10, 1, "FILLED", 12, "40", "100"),
        report(s11, 1, "CANCELED", 12),
    ])
    conn = Connectors(settings)
    for acct in ("ACC1", "ACC2"):
        state = decode(PortfolioState, conn.reader("portfolio_state").latest(acct) or b"")
        assert (state.open_orders, state.reserved_notional) == (0, 0)  # every reservation released
    phases.run(trade_signals=[sig(20 + i, "30", strategy="alpha" if i % 2 == 0 else "beta", s=20 + i)
                              for i in range(4)]
               + [sig(30 + i, "40", account="ACC2", s=20 + i) for i in range(3)])
    after = decisions(phases)
    # the freed capacity is used again, and no more: 3000 filled + 2 x 3000 reserved <= 10000
    assert [after[f"s{20 + i}"].decision for i in range(4)] == [Decision.PASS] * 2 + [Decision.FAIL] * 2
    # cash 10000 - 4000 paid: one more 4000 buy fits, the next two do not
    assert [after[f"s{30 + i}"].decision for i in range(3)] == [Decision.PASS] + [Decision.FAIL] * 2

    # at every decision, filled + reserved (+ the order if it passed) stayed within the limit
    for d in after.values():
        if d.account == "ACC1":
            value, limit = gross_check(d)
            assert d.decision is Decision.FAIL or value <= limit
    for r in replay_log(load_log(settings)):
        ctx = r.check
        if ctx.account is not None and ctx.account.max_gross_exposure is not None:
            assert ctx.gross_exposure + ctx.reserved_notional <= ctx.account.max_gross_exposure
        if ctx.account is not None and ctx.account.account_type.value == "CASH":
            assert ctx.reserved_buy_notional <= ctx.cash
    assert replay(settings).ok


# --------------------------------------------------------------------- a recorded day


def test_replay_of_a_whole_pipeline_run_agrees_on_every_outcome(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    market = SyntheticMarket(symbols=4, ticks=3000, seed=5)
    counts = run_pipeline(settings, iter(market), 3000, market.symbol_names(), speed=None, progress=False)
    result = replay(settings)
    assert result.checked == counts.decisions > 100
    assert result.unrecorded == []
    assert result.orphans == []
    assert result.offsets_differ == []
    # Every decision, rule value, order id and limits version is reproduced: the replay
    # folds the journal Job C applied, so it is exact.
    assert result.differences == []
    assert result.reproduced == result.checked
    tight = shadow(settings, LimitOverrides.from_mapping({"accounts": {"*": {"max_order_notional": 20_000}}}))
    refused = {c.signal_id for c in tight.would_refuse}
    expected = {
        d.signal_id for d in (x.record for x in load_log(settings).decisions)
        if d.decision is Decision.PASS
        and D(next(r.value for r in d.rules if r.rule == "MAX_ORDER_NOTIONAL") or "0") > 20_000
    }
    assert refused == expected
    assert refused


def test_replay_folds_instrument_rows_from_the_journal(phases: Phases, settings: Settings) -> None:
    def inst(status: str, s: float) -> Instrument:
        return Instrument(symbol="X", tick_size=D("0.5"), lot_size=D(1), status=status, ts=at(s))

    w = phases.conn.writer("instruments")
    w.write([inst("TRADING", 0)])
    w.close()
    phases.run(accounts=[Account(account="ACC1", cash=D(100_000), ts=T0)], market_data=[tick("X", 1, "100")],
               trade_signals=[sig(0, "1")])
    w = phases.conn.writer("instruments")
    w.write([inst("HALTED", 20)])
    w.close()
    phases.run(trade_signals=[sig(1, "1", s=21)])
    outcome = {sid: d.decision.value for sid, d in decisions(phases).items()}
    assert outcome == {"s0": "PASS", "s1": "FAIL"}
    kinds = [x.record.kind.value for x in load_log(settings).journal]
    assert kinds.count("INSTRUMENT") == 2
    result = replay(settings)
    assert result.replayed == 2
    assert result.differences == []
    assert result.ok
