"""Prometheus metrics served by a job."""

from __future__ import annotations

import urllib.request

from bytewax.testing import run_main

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.indicators import build_flow
from schemas import encode
from tradeflow.infra.common import free_port


def test_job_serves_items_and_dead_letters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    settings = load_settings(data_dir=tmp_path, metrics_port=port)
    conn = Connectors(settings)
    ticks = list(SyntheticMarket(symbols=2, ticks=50))
    w = conn.writer("market_data")
    w.write_raw([(t.symbol, encode(t)) for t in ticks] + [("X", b"not json")])
    w.close_stream()
    names = {
        "tradeflow_items_in_total": {"job": "indicators", "stream": "market_data"},
        "tradeflow_items_out_total": {"job": "indicators", "stream": "sma_wide"},
        "tradeflow_dead_letters_total": {"job": "indicators", "stream": "market_data"},
    }

    def scrape() -> dict[str, float]:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # noqa: S310
        out = {}
        for name, labels in names.items():
            label = ",".join(f'{k}="{v}"' for k, v in labels.items())
            line = next((ln for ln in body.splitlines() if ln.startswith(f"{name}{{{label}}}")), None)
            out[name] = float(line.split()[-1]) if line else 0.0
        return out

    flow = build_flow(settings)  # starts the endpoint
    before = scrape()  # counters are per process: other tests in it may have counted
    run_main(flow)
    after = scrape()
    assert {k: after[k] - before[k] for k in names} == {
        "tradeflow_items_in_total": 50.0,
        "tradeflow_items_out_total": 50.0,
        "tradeflow_dead_letters_total": 1.0,
    }


def test_a_batch_counts_each_rule_result_of_each_decision() -> None:
    from datetime import UTC, datetime

    from connectors.metrics import RISK_CHECKS
    from flows.portfolio_risk import _count_checks
    from schemas import Decision, RiskDecision, RuleResult

    def decision(sid: str, *verdicts: tuple[str, bool]) -> tuple[str, RiskDecision]:
        rules = [RuleResult(rule=rule, passed=passed) for rule, passed in verdicts]
        verdict = Decision.PASS if all(p for _, p in verdicts) else Decision.FAIL
        return "risk_decisions", RiskDecision(signal_id=sid, account="ACC", decision=verdict, rules=rules,
                                              limits_version=1, ts=datetime(2026, 1, 5, tzinfo=UTC))

    def count(rule: str, result: str) -> float:
        return RISK_CHECKS.labels(rule, result)._value.get()  # type: ignore[no-any-return]  # noqa: SLF001

    keys = [("T_QTY", "pass"), ("T_QTY", "fail"), ("T_RATE", "pass")]
    before = {k: count(*k) for k in keys}
    batch = [decision("s1", ("T_QTY", True), ("T_RATE", True)), ("orders", object()),
             decision("s2", ("T_QTY", False), ("T_RATE", True)), decision("s3", ("T_QTY", True))]
    _count_checks(batch)  # type: ignore[arg-type]
    _count_checks([decision("s4", ("T_QTY", True))])
    assert {k: count(*k) - before[k] for k in keys} == {
        ("T_QTY", "pass"): 3.0, ("T_QTY", "fail"): 1.0, ("T_RATE", "pass"): 2.0,
    }
