"""Job D's order manager (operators.execution) driven by hand: a fake venue, a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from operators.execution import ExecutionEngine, ExecutionPolicy
from operators.venue import VenueAdapter, VenueFinding, VenueHealth, VenueOrder
from schemas import (
    Control,
    ExecStatus,
    ExecutionMetrics,
    OrderAction,
    RiskEvent,
    Severity,
    Side,
    TradingState,
    ValidatedOrder,
    VenueFill,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


class FakeVenue(VenueAdapter):
    """Records what the engine asks; reports are queued by the test."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self.asked: list[str] = []
        self.reports: list[VenueFill] = []
        self.working: list[VenueOrder] = []
        self.findings: list[VenueFinding] = []
        self.logons = 0
        self.restored: dict[str, Any] | None = None
        self.connected = self.closed = False

    @property
    def name(self) -> str:
        return "fake"

    def connect(self) -> None:
        self.connected = True
        self.logons = 1

    def submit(self, order: ValidatedOrder) -> None:
        self.submitted.append(order.order_id)

    def cancel(self, order: ValidatedOrder) -> None:
        self.cancelled.append(order.order_id)

    def poll_reports(self) -> list[VenueFill]:
        out, self.reports = self.reports, []
        return out

    def health(self) -> VenueHealth:
        return VenueHealth("fake", session_state="ACTIVE", connected=self.connected, logons=self.logons,
                           msgs_sent=len(self.submitted), msgs_received=3)

    def close(self) -> None:
        self.closed = True

    def request_status(self, order_id: str) -> None:
        self.asked.append(order_id)

    def poll_findings(self) -> list[VenueFinding]:
        out, self.findings = self.findings, []
        return out

    def open_orders(self) -> list[VenueOrder]:
        return list(self.working)

    def snapshot(self) -> dict[str, Any] | None:
        return {"book": list(self.submitted)}

    def restore(self, state: dict[str, Any]) -> None:
        self.restored = state


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def order(oid: str, account: str = "A", *, action: OrderAction = OrderAction.NEW,
          strategy: str | None = "sma_cross") -> ValidatedOrder:
    return ValidatedOrder(order_id=oid, action=action, account=account, symbol="AAPL", side=Side.BUY,
                          qty=Decimal(10), strategy_id=strategy, ts=T0)


def report(oid: str, status: ExecStatus, *, account: str = "A", exec_id: str | None = None,
           last_qty: str = "0", cum_qty: str = "0") -> VenueFill:
    return VenueFill(order_id=oid, venue="fake", exec_id=exec_id or f"{oid}-{status.value}", status=status,
                     account=account, symbol="AAPL", side=Side.BUY, last_qty=Decimal(last_qty),
                     last_px=Decimal(100) if Decimal(last_qty) else Decimal(0), cum_qty=Decimal(cum_qty),
                     ts=T0)


def control(scope: str, state: TradingState) -> Control:
    return Control(scope=scope, state=state, reason="test", ts=T0)


def engine(venue: FakeVenue, clock: Clock, *, ends: dict[int, int] | None = None,
           resume: dict[str, Any] | None = None, cod: set[str] | None = None,
           policy: ExecutionPolicy | None = None) -> ExecutionEngine:
    e = ExecutionEngine(
        venue, control_ends=ends or {}, resume=resume, cancel_on_disconnect=lambda: set(cod or ()),
        policy=policy or ExecutionPolicy(metrics_interval_s=5, reconcile_s=0, session_check_s=0),
        clock=clock, now=lambda: T0,
    )
    e.start()
    return e


@pytest.fixture
def venue() -> FakeVenue:
    return FakeVenue()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_replayed_order_or_cancel_is_never_sent_twice(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock)
    assert e.on_order(order("O1")) == []
    assert e.on_order(order("O1")) == []
    e.on_order(order("O1", action=OrderAction.CANCEL))
    e.on_order(order("O1", action=OrderAction.CANCEL))
    assert (venue.submitted, venue.cancelled) == (["O1"], ["O1"])


def test_orders_wait_until_the_control_table_is_read_to_its_start_up_end(
    venue: FakeVenue, clock: Clock
) -> None:
    e = engine(venue, clock, ends={0: 2})
    e.on_order(order("O1"))
    e.on_order(order("O2", account="B"))
    assert venue.submitted == []
    assert e.on_control(control("account:A", TradingState.HALTED), 0, 0) == []
    assert venue.submitted == []  # the table is not read to its end yet
    (refused,) = e.on_control(control("global", TradingState.ACTIVE), 0, 1)
    assert venue.submitted == ["O2"]  # O1's account was halted in the meantime: fail closed
    assert (refused.order_id, refused.status) == ("O1", ExecStatus.REJECTED)
    assert refused.reason == "refused: control account:A is HALTED"


@pytest.mark.parametrize("scope", ["global", "account:A", "strategy:sma_cross"])
def test_a_new_order_in_a_halted_scope_is_refused_not_sent(
    venue: FakeVenue, clock: Clock, scope: str
) -> None:
    e = engine(venue, clock)
    e.on_control(control(scope, TradingState.HALTED), 0, 0)
    (refused,) = e.on_order(order("O1"))
    assert refused.status is ExecStatus.REJECTED
    assert scope in refused.reason
    assert venue.submitted == []
    other = e.on_order(order("O2", account="B", strategy="other"))  # outside the halted scope
    assert [r.status for r in other] == ([ExecStatus.REJECTED] if scope == "global" else [])
    assert venue.submitted == ([] if scope == "global" else ["O2"])


def test_reducing_does_not_refuse_orders_job_c_passed(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock)
    e.on_control(control("account:A", TradingState.REDUCING), 0, 0)
    assert e.on_order(order("O1")) == []
    assert venue.submitted == ["O1"]


def test_a_cancel_of_an_order_never_sent_is_refused_locally(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock)
    (refused,) = e.on_order(order("ghost", action=OrderAction.CANCEL))
    assert refused.status is ExecStatus.CANCEL_REJECTED
    assert refused.reason.startswith("cancel rejected: ")
    assert venue.cancelled == []


def test_a_session_that_comes_back_cancels_working_orders_of_cancel_on_disconnect_accounts(
    venue: FakeVenue, clock: Clock
) -> None:
    e = engine(venue, clock, cod={"A"})
    for oid, account in (("O1", "A"), ("O2", "B")):
        e.on_order(order(oid, account))
        venue.working.append(VenueOrder(oid, "fake", account, "AAPL", Side.BUY, Decimal(10), Decimal(0),
                                        Decimal(10), Decimal(0), ExecStatus.NEW))
    e.poll()
    assert venue.cancelled == []  # the first logon is not a reconnect
    venue.logons = 2
    e.poll()
    assert venue.cancelled == ["O1"]  # B does not ask for cancel on disconnect


def test_reconciliation_asks_about_open_orders_when_due_and_alarms_on_a_synthetic_fill(
    venue: FakeVenue, clock: Clock
) -> None:
    e = engine(venue, clock, policy=ExecutionPolicy(metrics_interval_s=60, reconcile_s=30, session_check_s=0))
    e.on_order(order("O1"))
    venue.working.append(VenueOrder("O1", "fake", "A", "AAPL", Side.BUY, Decimal(10), Decimal(0),
                                    Decimal(10), Decimal(0), ExecStatus.NEW))
    e.on_timer()
    assert venue.asked == []
    clock.t += 30
    e.on_timer()
    assert venue.asked == ["O1"]
    venue.reports.append(report("O1", ExecStatus.PARTIAL, exec_id="O1-SYN-4", last_qty="4", cum_qty="4"))
    fill, event, ctl = e.poll()
    assert isinstance(fill, VenueFill)
    assert fill.synthetic
    assert isinstance(event, RiskEvent)
    assert (event.rule, event.severity) == ("VENUE_RECONCILIATION", Severity.CRITICAL)
    assert event.values == {"venue_cum_qty": "4", "missing_qty": "4"}
    assert isinstance(ctl, Control)
    assert (ctl.scope, ctl.state) == ("account:A", TradingState.REDUCING)


def test_latencies_are_measured_on_the_clock_and_published_per_window(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock)
    e.on_order(order("O1"))
    clock.t += 0.002
    ack = report("O1", ExecStatus.NEW)
    venue.reports.append(ack)
    assert e.poll() == [ack]
    clock.t += 0.008
    venue.reports.append(report("O1", ExecStatus.FILLED, last_qty="10", cum_qty="10"))
    e.poll()
    clock.t += 5
    out = e.poll()
    (m,) = [r for r in out if isinstance(r, ExecutionMetrics)]
    assert (m.orders_sent, m.acks, m.fills, m.rejects) == (1, 1, 1, 0)
    assert m.ack_p50_ms == pytest.approx(2.0)
    assert m.fill_p50_ms == pytest.approx(10.0)
    assert (m.session_state, m.msgs_sent, m.msgs_received) == ("ACTIVE", 1, 3)
    nxt = e.metrics()
    assert (nxt.orders_sent, nxt.acks, nxt.ack_p50_ms) == (0, 0, None)  # a new window


def test_finish_waits_for_answers_up_to_its_deadline_then_closes(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock)
    e.on_order(order("O1"))
    e.on_order(order("O2"))
    waits = []

    def sleep(s: float) -> None:
        waits.append(s)
        clock.sleep(s)
        if len(waits) == 2:
            venue.reports.append(report("O1", ExecStatus.FILLED, last_qty="10", cum_qty="10"))

    out = e.finish(wait_s=1.0, poll_s=0.25, sleep=sleep)
    assert len(waits) == 4  # O2 never answered: waited the whole second
    assert [r.order_id for r in out if isinstance(r, VenueFill)] == ["O1"]
    assert isinstance(out[-1], ExecutionMetrics)
    assert venue.closed
    assert e.closed
    assert e.awaiting == 1


def test_a_resumed_engine_restores_the_venue_first_and_sends_nothing_again(
    venue: FakeVenue, clock: Clock
) -> None:
    e = engine(venue, clock)
    e.on_order(order("O1"))
    e.on_control(control("strategy:x", TradingState.HALTED), 0, 0)
    snap = e.snapshot()
    again = FakeVenue()
    resumed = engine(again, clock, resume=snap)
    assert again.restored == {"book": ["O1"]}
    resumed.on_order(order("O1"))
    assert again.submitted == []
    assert resumed.halted_by(order("O9", strategy="x")) is not None


def test_a_venue_finding_becomes_critical_events_and_reduces_the_accounts_it_names(
    venue: FakeVenue, clock: Clock
) -> None:
    e = engine(venue, clock, policy=ExecutionPolicy(metrics_interval_s=60, reconcile_s=0, session_check_s=0))
    venue.findings.append(VenueFinding("VENUE_STATE_LOST", "lost its state", key="k1",
                                       accounts=("A", "B"), reduce=True))
    venue.findings.append(VenueFinding("UNKNOWN_ORDER", "never sent", key="k2"))
    out = e.poll()
    events = [r for r in out if isinstance(r, RiskEvent)]
    controls = [r for r in out if isinstance(r, Control)]
    assert [(ev.account, ev.rule, ev.severity) for ev in events] == [
        ("A", "VENUE_STATE_LOST", Severity.CRITICAL),
        ("B", "VENUE_STATE_LOST", Severity.CRITICAL),
        ("venue:fake", "UNKNOWN_ORDER", Severity.CRITICAL),
    ]
    assert [(c.scope, c.state) for c in controls] == [
        ("account:A", TradingState.REDUCING), ("account:B", TradingState.REDUCING),
    ]
    assert len({ev.event_id for ev in events}) == 3


def test_a_control_row_that_did_not_decode_still_opens_the_gate(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock, ends={0: 2})
    assert e.on_order(order("O1")) == []
    e.on_control(control("global", TradingState.ACTIVE), 0, 0)
    assert venue.submitted == []  # offset 1, the table's last at start-up, is a bad row
    e.on_unreadable_control(0, 1)
    assert venue.submitted == ["O1"]


def test_an_input_the_engine_fails_on_is_a_dead_letter_and_job_d_goes_on(
    venue: FakeVenue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poison pill for Job D: a dead letter and a CRITICAL event, never a crash loop."""
    from schemas import DeadLetter, MarketData

    def submit(order: ValidatedOrder) -> None:
        if order.order_id == "BAD":
            raise ArithmeticError("an order no check foresaw")
        venue.submitted.append(order.order_id)

    def on_market(tick: MarketData) -> None:
        raise ValueError("a tick no check foresaw")

    monkeypatch.setattr(venue, "submit", submit)
    monkeypatch.setattr(venue, "on_market", on_market)
    e = engine(venue, clock)
    letter, event = e.take(order("BAD"), "validated_orders", 0, 7)
    assert isinstance(letter, DeadLetter)
    assert (letter.source_stream, letter.offset) == ("validated_orders", 7)
    assert "ArithmeticError: an order no check foresaw" in letter.reason
    assert isinstance(event, RiskEvent)
    assert (event.rule, event.severity, event.account, event.order_id) == (
        "EXECUTION_ERROR", Severity.CRITICAL, "A", "BAD")
    assert e.take(order("OK"), "validated_orders", 0, 8) == []
    assert venue.submitted == ["OK"]  # the job went on
    assert e.take(order("BAD"), "validated_orders", 0, 7) == []  # a replay: never sent, no crash
    tick = MarketData(symbol="AAPL", ts=T0, price=Decimal(100), volume=Decimal(1))
    letter, event = e.take(tick, "market_data", 1, 3)
    assert isinstance(letter, DeadLetter)
    assert isinstance(event, RiskEvent)
    assert event.account == "venue:fake"


def test_reports_of_an_order_sent_in_this_run_carry_its_entered_at(venue: FakeVenue, clock: Clock) -> None:
    entered = T0.replace(second=5)
    e = engine(venue, clock, ends={0: 1})  # the control table not read yet: orders wait
    e.on_order(order("O1").model_copy(update={"entered_at": entered}))
    e.on_order(order("O2"))  # no stamp: its reports get none
    e.on_control(control("global", TradingState.ACTIVE), 0, 0)
    venue.reports += [report("O1", ExecStatus.NEW), report("O2", ExecStatus.NEW),
                      report("O1", ExecStatus.FILLED, last_qty="10", cum_qty="10")]
    got = [r for r in e.poll() if isinstance(r, VenueFill)]
    assert [(r.order_id, r.entered_at) for r in got] == [("O1", entered), ("O2", None), ("O1", entered)]
    venue.reports.append(report("O1", ExecStatus.STATUS))  # after the final report: forgotten
    assert [r.entered_at for r in e.poll() if isinstance(r, VenueFill)] == [None]


def test_a_refused_order_carries_its_entered_at_onto_the_rejection(venue: FakeVenue, clock: Clock) -> None:
    e = engine(venue, clock)
    e.on_control(control("global", TradingState.HALTED), 0, 0)
    (rejected,) = e.on_order(order("O1").model_copy(update={"entered_at": T0}))
    assert isinstance(rejected, VenueFill)
    assert (rejected.status, rejected.entered_at) == (ExecStatus.REJECTED, T0)
