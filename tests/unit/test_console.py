"""The console's pure parts: the view folded from records, who may write, the app's refusals.

The browser test (tests/flows/test_console.py) drives the real thing; these pin the
rules: a control change without the token is refused with 401/403 and writes nothing.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from connectors.base import StoredRecord
from connectors.registry import Connectors
from connectors.settings import Settings
from schemas import (
    Control,
    DeadLetter,
    MarketData,
    OrderState,
    OrderStatus,
    OrderType,
    PortfolioState,
    RiskEvent,
    Severity,
    Side,
    TradingState,
    decode,
)
from tradeflow import cli
from tradeflow.console.app import create_app
from tradeflow.console.live import Live, latest_per_key
from tradeflow.console.model import ConsoleView, WrittenControl, control_applied
from tradeflow.console.security import ConsoleError, check_bind, check_write
from tradeflow.status import Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "s3cret-token"  # noqa: S105 - a test token


def portfolio(account: str, equity: str, ts: datetime, state: TradingState = TradingState.ACTIVE
              ) -> PortfolioState:
    z = Decimal(0)
    return PortfolioState(
        account=account, cash=Decimal("1000000"), equity=Decimal(equity), realized_pnl=z, unrealized_pnl=z,
        gross_exposure=z, net_exposure=z, margin_used=z, leverage=z, open_orders=0, trading_state=state,
        peak_equity=Decimal(equity), drawdown=z, day_start_equity=Decimal(equity), ts=ts,
    )


def order(order_id: str, status: OrderStatus, ts: datetime) -> OrderState:
    return OrderState(order_id=order_id, account="A", symbol="S", side=Side.BUY, qty=Decimal(10),
                      order_type=OrderType.MARKET, status=status, leaves_qty=Decimal(10), ts=ts)


def event(event_id: str, severity: Severity, rule: str, signal_id: str | None) -> RiskEvent:
    return RiskEvent(event_id=event_id, account="A", rule=rule, severity=severity, message="m",
                     signal_id=signal_id, ts=T0)


# --- the view ----------------------------------------------------------------------


def test_view_keeps_the_latest_portfolio_row_and_its_equity_points_as_exact_strings() -> None:
    view = ConsoleView()
    view.apply("portfolio_state", portfolio("A", "1000000", T0))
    view.apply("portfolio_state", portfolio("A", "1000012.50", T0 + timedelta(seconds=1)))
    (acct,) = view.to_json()["accounts"]
    assert acct["equity"] == "1000012.50000000"
    assert acct["realized_pnl"] == "0.00000000"  # never exponent notation ("0E-8")
    assert [p[1] for p in acct["equity_series"]] == ["1000000.00000000", "1000012.50000000"]


def test_view_blotter_holds_working_orders_only_and_ages_them_on_the_pipeline_clock() -> None:
    view = ConsoleView()
    view.apply("orders", order("o1", OrderStatus.NEW, T0))
    view.apply("orders", order("o2", OrderStatus.NEW, T0))
    view.apply("orders", order("o2", OrderStatus.FILLED, T0 + timedelta(seconds=5)))
    tick = MarketData(symbol="S", price=Decimal(10), volume=Decimal(1), ts=T0 + timedelta(seconds=5), wm=T0)
    view.apply("market_data", tick)
    rows = view.to_json()["working_orders"]
    assert [(r["order_id"], r["age_s"], r["venue"]) for r in rows] == [("o1", 5.0, "paper")]


def test_view_lists_critical_events_first_and_counts_rejects_by_rule() -> None:
    view = ConsoleView()
    view.apply("risk_events", event("e1", Severity.WARN, "MAX_ORDER_QTY", "s1"))
    view.apply("risk_events", event("e2", Severity.CRITICAL, "KILL_SWITCH", None))
    view.apply("risk_events", event("e3", Severity.WARN, "MAX_ORDER_QTY", "s2"))
    out = view.to_json()
    assert [e["event_id"] for e in out["risk_events"]] == ["e2", "e3", "e1"]
    assert out["rejects_by_rule"] == {"MAX_ORDER_QTY": 2}


def test_view_counts_dead_letters_per_job_and_audits_every_control_row() -> None:
    view = ConsoleView()
    view.apply("dead_letters", DeadLetter(source_stream="market_data", reason="bad JSON", payload="{",
                                          job="indicators", ts=T0))
    view.apply("control", Control(scope="account:A", state=TradingState.HALTED, reason="why", ts=T0))
    out = view.to_json()
    assert out["dead_letters"]["by_job"] == {"indicators": 1}
    assert out["dead_letters"]["recent"][0]["reason"] == "bad JSON"
    assert out["controls"]["account:A"]["state"] == "HALTED"
    assert out["audit"][0]["reason"] == "why"
    assert out["audit"][0]["applied"] is None  # not written by this console


def _status(job: str, control_reads: int, target: str = "h:1") -> Status:
    return Status(target, alive=True, job=job, items_in_by_stream={"control": control_reads})


def test_a_job_has_applied_a_written_control_once_its_control_reads_pass_the_baseline() -> None:
    baseline = {"portfolio_risk@h:1": 3, "strategy:sma@h:2": 0}
    w = WrittenControl("strategy:rsi", "HALTED", T0, baseline=baseline)
    statuses = [_status("portfolio_risk", 3), _status("strategy:sma", 0, "h:2"),
                _status("indicators", 0, "h:3")]
    assert control_applied(w, statuses, 0.1)
    assert w.applied == {"portfolio_risk@h:1": None}  # sma's job ignores strategy:rsi; A reads no control
    assert control_applied(w, [_status("portfolio_risk", 4)], 0.4)
    assert w.applied == {"portfolio_risk@h:1": 0.4}
    assert not control_applied(w, [_status("portfolio_risk", 9)], 0.9)  # the first time stays


# --- who may write -----------------------------------------------------------------


def _write(**kw: str | None) -> int | None:
    args: dict[str, str | None] = dict(given_token=TOKEN, csrf_header="c", csrf_cookie="c",
                                       origin="http://127.0.0.1:8765", host="127.0.0.1:8765")
    args.update(kw)
    refusal = check_write(token=TOKEN, **args)  # type: ignore[arg-type]
    return None if refusal is None else refusal.status


def test_a_control_change_needs_the_token_then_the_csrf_token_and_the_same_origin() -> None:
    assert _write() is None
    assert _write(given_token=None) == 401
    assert _write(given_token="") == 401
    assert _write(given_token="guess") == 403  # noqa: S106 - a wrong token on purpose
    assert _write(csrf_header=None) == 403
    assert _write(csrf_cookie="other") == 403
    assert _write(origin="http://evil.example") == 403
    assert _write(origin=None) is None  # same-origin fetches may leave it out


def test_the_console_binds_beyond_loopback_only_with_a_token_set() -> None:
    check_bind("127.0.0.1", False)
    check_bind("::1", False)
    check_bind("localhost", False)
    check_bind("0.0.0.0", True)  # noqa: S104 - the point of the test
    with pytest.raises(ConsoleError, match="token"):
        check_bind("0.0.0.0", False)  # noqa: S104
    with pytest.raises(ConsoleError):
        check_bind("192.0.2.7", False)


def test_the_console_command_refuses_a_public_bind_without_a_token(
        settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEFLOW_CONSOLE__TOKEN", raising=False)
    assert cli.main(["console", "--data-dir", str(settings.data_dir), "--host", "0.0.0.0"]) == 2  # noqa: S104
    assert "refusing to bind 0.0.0.0" in capsys.readouterr().err


# --- the app -----------------------------------------------------------------------


def _controls(conn: Connectors) -> list[Control]:
    reader = conn.reader("control")
    try:
        return [decode(Control, raw) for _, raw in reader.scan_latest()]
    finally:
        reader.close()


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(Live(settings), TOKEN, refresh_s=0.05), base_url="http://127.0.0.1:8765")


def _csrf(client: TestClient) -> str:
    page = client.get("/")
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf" content="([^"]+)">', page.text)
    assert match
    assert client.cookies.get("tf_csrf") == match.group(1)
    return match.group(1)


BODY = {"scope": "account:ACC-SMA", "state": "HALTED", "reason": "runaway strategy", "who": "alice"}


def test_a_control_change_without_the_token_is_refused_and_writes_nothing(
        client: TestClient, connectors: Connectors) -> None:
    with client:
        csrf = _csrf(client)
        no_token = client.post("/api/control", json=BODY, headers={"X-CSRF-Token": csrf})
        wrong = client.post("/api/control", json=BODY, headers={"X-CSRF-Token": csrf, "X-Console-Token": "x"})
        no_csrf = client.post("/api/control", json=BODY, headers={"X-Console-Token": TOKEN})
        assert (no_token.status_code, wrong.status_code, no_csrf.status_code) == (401, 403, 403)
        assert "token" in no_token.json()["error"]
        assert _controls(connectors) == []


def test_a_control_change_with_both_tokens_is_written_with_who_and_why(
        client: TestClient, connectors: Connectors) -> None:
    with client:
        csrf = _csrf(client)
        headers = {"X-CSRF-Token": csrf, "X-Console-Token": TOKEN}
        bad = client.post("/api/control", json={**BODY, "scope": "desk:7"}, headers=headers)
        empty = client.post("/api/control", json={**BODY, "reason": ""}, headers=headers)
        assert (bad.status_code, empty.status_code) == (422, 422)
        assert _controls(connectors) == []
        ok = client.post("/api/control", json=BODY, headers=headers)
        assert ok.status_code == 200, ok.text
        (row,) = _controls(connectors)
        assert (row.scope, row.state, row.reason, row.updated_by) == (
            "account:ACC-SMA", TradingState.HALTED, "runaway strategy", "alice (console)")
        state = client.get("/api/state").json()
        assert state["audit"] == [] or state["audit"][0]["reason"] == "runaway strategy"


def test_the_pipeline_clock_is_the_market_and_ignores_wall_clock_control_rows() -> None:
    view = ConsoleView()
    view.apply("orders", order("o1", OrderStatus.NEW, T0))
    view.apply("market_data", MarketData(symbol="S", price=Decimal(10), volume=Decimal(1), ts=T0, wm=T0))
    view.apply("control", Control(scope="global", state=TradingState.HALTED, ts=T0 + timedelta(days=300)))
    view.apply("portfolio_state", portfolio("A", "1", T0 + timedelta(days=300), TradingState.HALTED))
    out = view.to_json()
    assert out["clock"] == "2026-01-01T00:00:00Z"
    assert out["working_orders"][0]["age_s"] == 0.0


def test_hops_show_job_d_order_latency_from_its_metrics_histogram() -> None:
    view = ConsoleView()
    buckets = [(0.001, 50.0), (0.005, 99.0), (0.01, 100.0), (float("inf"), 100.0)]
    st = Status("h:1", alive=True, job="execution", shard="0/1", latency_buckets={"paper ack": buckets})
    view.health = [st]
    hops = {h["hop"]: h for h in view.to_json()["hops"]}
    ack = hops["order -> ack (paper, Job D 0/1, since start, bucket bound)"]
    assert (ack["p50_ms"], ack["p99_ms"], ack["samples"]) == (1.0, 5.0, 100)


def test_pages_get_every_section_at_connect_then_only_the_sections_that_changed(settings: Settings) -> None:
    live = Live(settings)
    try:
        version, body = live.state_since(-1)
        assert {"accounts", "positions", "audit", "version"} <= set(json.loads(body))
        assert json.loads(live.state_since(version)[1]) == {"version": version}
        with live.lock:
            live.view.apply("portfolio_state", portfolio("A", "5", T0))
        live._render()
        newer, body = live.state_since(version)
        assert newer > version
        assert set(json.loads(body)) == {"accounts", "version"}
    finally:
        live.close()


def test_of_a_table_batch_only_the_last_row_per_key_is_folded() -> None:
    recs = [StoredRecord(0, i, key, b"") for i, key in enumerate(["a", "b", "a", None, "b", "c"])]
    assert [(r.offset, r.key) for r in latest_per_key(recs)] == [(2, "a"), (3, None), (4, "b"), (5, "c")]
