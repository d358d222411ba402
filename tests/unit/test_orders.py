"""The order state machine: every edge of the table, FIX quantities, bad reports."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.orders import (
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    IssueKind,
    Order,
    OrderEvent,
    ReportOutcome,
    next_status,
)
from schemas.base import Side
from schemas.strategy import OrderType
from schemas.trading import ExecStatus, OrderStatus, Severity, VenueFill

D = Decimal
S, E = OrderStatus, OrderEvent
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
QTY = D(10)

WORKING = (S.PENDING_NEW, S.NEW, S.PARTIALLY_FILLED, S.CANCEL_PENDING)
# The state machine by its rules, to check the table against: every working order takes
# fills, a cancel by the venue and expiry; a cancel is asked at most once; a partially
# filled order can no longer be rejected; an ack moves a pending new order on, and leaves
# an order whose cancel was asked where it is.
EXPECTED_TABLE = {
    **{(s, E.PARTIAL_FILL): S.PARTIALLY_FILLED for s in WORKING},
    **{(s, E.FILL): S.FILLED for s in WORKING},
    **{(s, E.CANCELED): S.CANCELED for s in WORKING},
    **{(s, E.EXPIRE): S.EXPIRED for s in WORKING},
    **{(s, E.CANCEL_REQUEST): S.CANCEL_PENDING for s in WORKING if s is not S.CANCEL_PENDING},
    **{(s, E.REJECT): S.REJECTED for s in WORKING if s is not S.PARTIALLY_FILLED},
    (S.PENDING_NEW, E.ACK): S.NEW,
    (S.CANCEL_PENDING, E.ACK): S.CANCEL_PENDING,
}

_exec_ids = itertools.count()


def report(status: ExecStatus, **kw: Any) -> VenueFill:
    fields: dict[str, Any] = {
        "order_id": "O-1", "venue": "PAPER", "exec_id": f"x{next(_exec_ids)}",
        "status": status, "account": "A1", "symbol": "AAPL", "side": Side.BUY,
        "ts": T0 + timedelta(seconds=1),
    }
    fields.update(kw)
    return VenueFill(**fields)


PX = D(100)


def fill(qty: Decimal, px: Decimal = PX, **kw: Any) -> VenueFill:
    return report(ExecStatus.PARTIAL, last_qty=qty, last_px=px, **kw)


def new_order(qty: Decimal = QTY) -> Order:
    return Order(
        order_id="O-1", account="A1", symbol="AAPL", side=Side.BUY, qty=qty,
        order_type=OrderType.LIMIT, limit_px=D(100), reserve_px=D(100), ts=T0,
        signal_id="s1", strategy_id="st",
    )


def _step(order: Order, event: OrderEvent) -> ReportOutcome | None:
    """Drive ``event`` through the public API, the way the venue or the book would."""
    if event is E.CANCEL_REQUEST:
        order.request_cancel(T0)
        return None
    if event is E.PARTIAL_FILL:
        return order.apply(fill(D(1)))
    if event is E.FILL:
        return order.apply(fill(order.qty - order.cum_qty))
    status = {
        E.ACK: ExecStatus.NEW, E.CANCELED: ExecStatus.CANCELED,
        E.REJECT: ExecStatus.REJECTED, E.EXPIRE: ExecStatus.EXPIRED,
    }[event]
    return order.apply(report(status))


PATHS: dict[OrderStatus, list[OrderEvent]] = {
    S.PENDING_NEW: [],
    S.NEW: [E.ACK],
    S.PARTIALLY_FILLED: [E.ACK, E.PARTIAL_FILL, E.PARTIAL_FILL],
    S.FILLED: [E.ACK, E.FILL],
    S.CANCEL_PENDING: [E.ACK, E.CANCEL_REQUEST],
    S.CANCELED: [E.ACK, E.CANCEL_REQUEST, E.CANCELED],
    S.REJECTED: [E.REJECT],
    S.EXPIRED: [E.ACK, E.EXPIRE],
}


def order_in(status: OrderStatus) -> Order:
    order = new_order()
    for event in PATHS[status]:
        _step(order, event)
    assert order.status is status
    return order


def test_transition_table_is_exactly_the_documented_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED_TABLE


def test_transition_table_has_no_row_out_of_a_terminal_state() -> None:
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL]
    assert {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED} == TERMINAL


@pytest.mark.parametrize(
    ("start", "event", "end"), [(s, e, t) for (s, e), t in EXPECTED_TABLE.items()],
    ids=[f"{s.value}-{e.value}" for s, e in EXPECTED_TABLE],
)
def test_order_edge_moves_to_table_state(
    start: OrderStatus, event: OrderEvent, end: OrderStatus
) -> None:
    order = order_in(start)
    outcome = _step(order, event)
    assert order.status is end
    if outcome is not None:
        assert not [i for i in outcome.issues if i.kind is IssueKind.INVALID_TRANSITION]
    assert order.cum_qty <= order.qty
    assert order.leaves_qty == (order.qty - order.cum_qty if end not in TERMINAL else 0)


MISSING = [
    (s, e) for s in OrderStatus for e in OrderEvent if (s, e) not in EXPECTED_TABLE
]
# A FILLED order has no quantity left to fill: those two pairs are the overfill tests.
DRIVABLE = [
    (s, e) for s, e in MISSING if not (s is S.FILLED and e in (E.PARTIAL_FILL, E.FILL))
]


def _ids(pairs: list[tuple[OrderStatus, OrderEvent]]) -> list[str]:
    return [f"{s.value}-{e.value}" for s, e in pairs]


@pytest.mark.parametrize(("start", "event"), MISSING, ids=_ids(MISSING))
def test_next_status_for_pair_outside_table_raises_invalid_transition(
    start: OrderStatus, event: OrderEvent
) -> None:
    with pytest.raises(InvalidTransition) as info:
        next_status(start, event)
    assert (info.value.status, info.value.event) == (start, event)


@pytest.mark.parametrize(("start", "event"), DRIVABLE, ids=_ids(DRIVABLE))
def test_order_event_outside_table_is_reported_and_changes_nothing(
    start: OrderStatus, event: OrderEvent
) -> None:
    order = order_in(start)
    before = order.to_dict()
    if event is E.CANCEL_REQUEST:
        with pytest.raises(InvalidTransition):
            _step(order, event)
    else:
        outcome = _step(order, event)
        assert outcome is not None
        assert [i.kind for i in outcome.issues] == [IssueKind.INVALID_TRANSITION]
        assert outcome.fill_qty == 0
        assert not outcome.changed
    after = order.to_dict()
    assert after.pop("exec_ids") >= before.pop("exec_ids")
    assert after == before


# ---------------------------------------------------------------- FIX quantities


def test_order_avg_px_is_volume_weighted_fill_price() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4), D(100)))
    order.apply(fill(D(6), D(110)))
    assert order.status is S.FILLED
    assert order.avg_px == D(106)
    assert order.cum_qty == QTY


def test_order_leaves_is_qty_minus_cum_while_working_and_zero_when_terminal() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4)))
    assert (order.cum_qty, order.leaves_qty) == (D(4), D(6))
    order.apply(report(ExecStatus.CANCELED))
    assert (order.status, order.cum_qty, order.leaves_qty) == (S.CANCELED, D(4), D(0))


def test_order_reserved_notional_is_leaves_times_reserve_price() -> None:
    order = order_in(S.NEW)
    assert order.reserved_notional == D(1000)
    order.apply(fill(D(3)))
    assert order.reserved_notional == D(700)
    order.apply(report(ExecStatus.EXPIRED))
    assert order.reserved_notional == 0


def test_order_fill_beyond_qty_is_capped_and_reported_as_overfill() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(8)))
    outcome = order.apply(fill(D(5)))
    assert outcome.fill_qty == D(2)
    assert order.cum_qty == QTY
    assert order.status is S.FILLED
    [issue] = outcome.issues
    assert issue.kind is IssueKind.OVERFILL
    assert issue.values["excess"] == "3"
    assert issue.severity is Severity.CRITICAL


def test_order_fill_after_filled_applies_nothing_and_reports_overfill() -> None:
    order = order_in(S.FILLED)
    outcome = order.apply(fill(D(1)))
    assert outcome.fill_qty == 0
    assert not outcome.changed
    assert [i.kind for i in outcome.issues] == [IssueKind.OVERFILL]
    assert order.cum_qty == QTY


def test_order_repeated_exec_id_is_dropped_as_duplicate() -> None:
    order = order_in(S.NEW)
    first = fill(D(2))
    assert order.apply(first).fill_qty == D(2)
    again = order.apply(first)
    assert again.fill_qty == 0
    assert [i.kind for i in again.issues] == [IssueKind.DUPLICATE_EXEC]
    assert order.cum_qty == D(2)


def test_order_same_exec_id_from_another_venue_is_a_new_report() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(2), exec_id="e1", venue="V1"))
    assert order.apply(fill(D(3), exec_id="e1", venue="V2")).fill_qty == D(3)


def test_order_fill_resent_under_new_exec_id_with_same_cum_is_not_counted_twice() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4), cum_qty=D(4)))
    outcome = order.apply(fill(D(4), cum_qty=D(4)))
    assert outcome.fill_qty == 0
    assert [i.kind for i in outcome.issues] == [IssueKind.FILL_ALREADY_COUNTED]
    assert order.cum_qty == D(4)


def test_order_fill_overlapping_counted_quantity_counts_only_the_new_part() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4), cum_qty=D(4)))
    outcome = order.apply(fill(D(4), cum_qty=D(6)))
    assert outcome.fill_qty == D(2)
    assert [i.kind for i in outcome.issues] == [IssueKind.CUM_QTY_MISMATCH]
    assert order.cum_qty == D(6)


def test_order_reports_out_of_order_add_up_and_flag_the_gap_meanwhile() -> None:
    order = order_in(S.NEW)
    late = order.apply(fill(D(3), cum_qty=D(7)))
    assert late.fill_qty == D(3)
    assert [i.kind for i in late.issues] == [IssueKind.FILL_GAP]
    early = order.apply(fill(D(4), cum_qty=D(4)))
    assert early.fill_qty == D(4)
    assert not early.issues
    assert order.cum_qty == D(7)


def test_order_fill_without_cum_qty_counts_last_qty() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4)))
    order.apply(fill(D(4)))
    assert order.cum_qty == D(8)


def test_order_fill_report_without_quantity_is_reported_empty() -> None:
    order = order_in(S.NEW)
    outcome = order.apply(report(ExecStatus.FILLED))
    assert [i.kind for i in outcome.issues] == [IssueKind.EMPTY_FILL]
    assert order.status is S.NEW


def test_order_quantity_on_cancel_report_is_ignored_and_reported() -> None:
    order = order_in(S.NEW)
    outcome = order.apply(report(ExecStatus.CANCELED, last_qty=D(2), last_px=D(100)))
    assert order.status is S.CANCELED
    assert order.cum_qty == 0
    assert outcome.fill_qty == 0
    assert [i.kind for i in outcome.issues] == [IssueKind.QTY_ON_NON_FILL]


def test_order_report_for_other_symbol_is_rejected_whole() -> None:
    order = order_in(S.NEW)
    bad = fill(D(2), symbol="MSFT")
    outcome = order.apply(bad)
    assert [i.kind for i in outcome.issues] == [IssueKind.REPORT_MISMATCH]
    assert order.cum_qty == 0
    assert (bad.venue, bad.exec_id) not in order.exec_ids


def test_order_status_report_agreeing_changes_nothing() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(2)))
    outcome = order.apply(report(ExecStatus.STATUS, cum_qty=D(2)))
    assert outcome == ReportOutcome()


def test_order_status_report_disagreeing_is_reported() -> None:
    order = order_in(S.NEW)
    outcome = order.apply(report(ExecStatus.STATUS, cum_qty=D(5)))
    assert [i.kind for i in outcome.issues] == [IssueKind.STATUS_MISMATCH]
    assert order.cum_qty == 0


def test_order_fill_racing_cancel_keeps_cancel_requested_then_cancels() -> None:
    order = order_in(S.CANCEL_PENDING)
    order.apply(fill(D(3)))
    assert order.status is S.PARTIALLY_FILLED
    assert order.cancel_requested
    order.apply(report(ExecStatus.CANCELED))
    assert order.status is S.CANCELED
    assert order.leaves_qty == 0


def test_order_invalid_fill_does_not_touch_venue_cum() -> None:
    order = order_in(S.CANCELED)
    outcome = order.apply(fill(D(3), cum_qty=D(3)))
    assert [i.kind for i in outcome.issues] == [IssueKind.INVALID_TRANSITION]
    assert order.venue_cum_qty == 0


def test_order_state_row_carries_fix_quantities() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4), D(101)))
    row = order.to_state()
    assert (row.status, row.cum_qty, row.leaves_qty, row.avg_px) == (
        S.PARTIALLY_FILLED, D(4), D(6), D(101)
    )
    assert row.ts == T0 + timedelta(seconds=1)


def test_order_dict_round_trips_through_pickle() -> None:
    order = order_in(S.NEW)
    order.apply(fill(D(4), D(101), fee=D("0.1")))
    data = pickle.loads(pickle.dumps(order.to_dict()))  # noqa: S301 - our own bytes
    assert Order.from_dict(data) == order


# ---------------------------------------------------------------- properties

statuses = st.sampled_from(list(ExecStatus))
small = st.decimals(min_value=D(0), max_value=D(15), places=1)
reports = st.lists(
    st.builds(
        lambda status, last, cum, eid, px: report(
            status, last_qty=last, cum_qty=cum, exec_id=f"e{eid}", last_px=px
        ),
        statuses, small, small, st.integers(0, 8),
        st.decimals(min_value=D(1), max_value=D(200), places=2),
    ),
    max_size=30,
)


@given(reports, st.lists(st.booleans(), max_size=30))
def test_order_any_report_sequence_keeps_fix_invariants(
    seq: list[VenueFill], cancels: list[bool]
) -> None:
    order = order_in(S.PENDING_NEW)
    applied, notional = D(0), D(0)
    for rep, cancel in zip(seq, cancels + [False] * len(seq), strict=False):
        if cancel and not order.cancel_requested and order.is_open:
            order.request_cancel(rep.ts)
        outcome = order.apply(rep)
        applied += outcome.fill_qty
        notional += outcome.fill_qty * outcome.fill_px
        assert 0 <= order.cum_qty <= order.qty
        assert order.cum_qty == applied
        assert order.cum_notional == notional
        assert order.leaves_qty == (order.qty - order.cum_qty if order.is_open else 0)
        if order.cum_qty == order.qty:
            assert order.status is S.FILLED


def _legit_fills(sizes: list[int]) -> list[VenueFill]:
    fills, cum = [], D(0)
    for i, size in enumerate(sizes):
        cum += size
        fills.append(fill(D(size), D(100 + i), cum_qty=cum, exec_id=f"f{i}"))
    return fills


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=6),
    st.data(),
)
def test_order_shuffled_fills_with_resends_count_each_unit_once(
    sizes: list[int], data: st.DataObject
) -> None:
    legit = _legit_fills(sizes)
    resends = [
        f.model_copy(update={"exec_id": f.exec_id + "-resend"})
        for f in data.draw(st.lists(st.sampled_from(legit), max_size=4))
    ]
    stream: list[VenueFill] = data.draw(st.permutations(legit + resends + legit[:1]))
    spare = data.draw(st.integers(-2, 2))
    order = new_order(qty=D(max(1, sum(sizes) + spare)))
    highest_stated = D(0)
    for rep in stream:
        order.apply(rep)
        highest_stated = max(highest_stated, rep.cum_qty)
        assert order.cum_qty <= min(highest_stated, order.qty)
    assert order.cum_qty == min(D(sum(sizes)), order.qty)


@pytest.mark.parametrize("make", [lambda: order_in(S.FILLED), lambda: order_in(S.REJECTED)])
def test_order_request_cancel_on_terminal_order_raises(make: Callable[[], Order]) -> None:
    order = make()
    with pytest.raises(InvalidTransition):
        order.request_cancel(T0)
    assert not order.cancel_requested
