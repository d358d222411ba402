"""tradeflow.chaos.differing: a trial that differs from its reference says what differed.

The chaos tests failed once in CI with nothing but counts (``{'risk_decisions': 1, ...}``),
which cannot tell a decision taken on other inputs from a record missing on one side.
"""

from __future__ import annotations

import json

from tradeflow import chaos


def decision(signal_id: str, value: str, *, latency: float = 1.0) -> str:
    rules = [{"rule": "ACCOUNT_STATUS", "value": "ACTIVE"}, {"rule": "MAX_OPEN_ORDERS", "value": value}]
    rec = {"signal_id": signal_id, "decision": "PASS", "ts": "2026-01-05T14:31:00.000Z", "rules": rules,
           "latency_us": latency}
    return chaos._logical("risk_decisions", chaos._canonical("risk_decisions", rec))


def collected(decisions: dict[str, str], portfolio: dict[str, str] | None = None) -> chaos.Collected:
    return chaos.Collected(records={"risk_decisions": decisions}, tables={"portfolio_state": portfolio or {}})


def test_equal_runs_differ_nowhere() -> None:
    one = collected({"s1": decision("s1", "1")})
    other = collected({"s1": decision("s1", "1", latency=9.0)})  # latency is the wall clock's
    assert chaos.compare(one, other)["risk_decisions"] == 0
    assert chaos.differing(one, other) == {}


def test_a_differing_decision_names_its_id_and_only_the_rules_that_differ() -> None:
    trial = collected({"s1": decision("s1", "2"), "s2": decision("s2", "1")})
    reference = collected({"s1": decision("s1", "1"), "s2": decision("s2", "1")})
    assert chaos.compare(trial, reference)["risk_decisions"] == 1
    [line] = chaos.differing(trial, reference)["risk_decisions"]
    assert line.startswith("s1: rules: trial ")
    assert json.dumps([{"rule": "MAX_OPEN_ORDERS", "value": "2"}]) in line
    assert json.dumps([{"rule": "MAX_OPEN_ORDERS", "value": "1"}]) in line
    assert "ACCOUNT_STATUS" not in line


def test_a_record_on_one_side_only_says_which_and_long_lists_are_cut() -> None:
    trial = collected({}, {"ACC-1": '{"cash": "1"}'})
    reference = collected({f"s{i}": decision(f"s{i}", "1") for i in range(5)}, {"ACC-1": '{"cash": "2"}'})
    found = chaos.differing(trial, reference, limit=2)
    assert found["risk_decisions"] == ["s0: only in the reference", "s1: only in the reference", "... 3 more"]
    assert found["portfolio_state"] == ['ACC-1: cash: trial "1" != reference "2"']
