"""Job D over FIX when our own process dies: no order sent twice, no fill lost.

The live test runs ``python -m bytewax.run "flows.execution:build_flow()"`` in follow mode with
recovery (snapshots every second) against the real QuickFIX/J venue, writes orders
while it runs, SIGKILLs the flow twice mid-stream and restarts it each time. The
venue's audit log must show one accepted NewOrderSingle per ClOrdID (a PossDup
resend is not a second order), every order must end FILLED in venue_fills with its
fills summing to its quantity exactly, and the order whose ack the venue drops is
resolved by the status request after the restart (a synthetic fill from its CumQty).

The crash windows no kill can be timed into are replayed at the application layer
with crafted ExecutionReports: a fill whose MsgSeqNum was persisted but which never
reached the outbox (only the venue's CumQty tells, in a status answer or a later
report), and the outbox replayed from the offset a Bytewax snapshot kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import simplefix

from connectors.fix.application import FixApplication
from connectors.fix.codec import MsgType, parse
from connectors.fix.store import OrderJournal, OrderPhase
from schemas import ExecStatus, Side, ValidatedOrder, VenueFill
from tests.integration.fix.test_execution_flow_fix import (
    Feeder,
    LiveFlow,
    assert_books,
    filled_ids,
    order,
    the_fill,
    wait_for,
)
from tradeflow.infra.fix_venue import FixVenue

pytestmark = pytest.mark.recovery

LOST_ACK = "LOSTACK"


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[FixVenue]:
    """Start a real venue: three fills per order, LOSTACK orders never answered."""
    venue = FixVenue(tmp_path / "venue", partial_fills=3, drop_ack_symbols=(LOST_ACK,))
    venue.start()
    yield venue
    venue.stop()


def test_flow_sigkilled_twice_mid_stream_sends_no_order_twice_and_loses_no_fill(
    venue: FixVenue, tmp_path: Path
) -> None:
    flow = LiveFlow(tmp_path, venue)
    orders = [order(f"K{i:03d}", qty=9 + i % 5) for i in range(80)]
    orders[7] = order("K007", LOST_ACK, qty=12)  # answered only by the status after a restart
    flow.start()
    feeder = Feeder(flow.data, orders, every_s=0.05)
    feeder.start()
    try:
        for threshold in (10, 35):
            started = time.monotonic()

            def enough(n: int = threshold) -> bool:
                return len(filled_ids(flow.conn)) >= n

            wait_for(enough, f"{threshold} orders filled", log=flow.log)
            time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))  # a snapshot exists
            assert flow.alive(), flow.log.read_text()[-3000:]
            flow.kill()
            killed_at = len(filled_ids(flow.conn))
            assert killed_at < len(orders), "every order was filled before the kill; slow the feed"
            flow.start()
        flow.settle(venue, feeder)
    finally:
        flow.kill()

    reports = assert_books(venue, flow.conn, orders)
    assert the_fill(reports, "K007").exec_id == "K007-SYN-12"
    assert [r["outcome"] for r in venue.audit_orders("K007")] == ["NEW"]
    real = [f for f in reports if f.last_qty > 0 and "-SYN-" not in f.exec_id]
    assert len(real) == 3 * (len(orders) - 1)  # every venue fill arrived, by its own ExecID


# -- crash windows replayed with crafted reports ----------------------------------------


T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def report(
    exec_id: str,
    exec_type: str,
    ord_status: str,
    cum: str,
    avg: str,
    last: tuple[str, str] = ("0", "0"),
) -> simplefix.FixMessage:
    """Build an ExecutionReport about order o1 (BUY 100 AAPL, venue OrderID V1)."""
    msg = simplefix.FixMessage()
    for tag, value in (
        (8, "FIX.4.4"), (35, MsgType.EXECUTION_REPORT), (34, "2"), (49, "VENUE"), (56, "TRADEFLOW"),
        (52, "20260105-14:30:01.000"), (1, "acc1"), (11, "o1"), (37, "V1"), (17, exec_id),
        (150, exec_type), (39, ord_status), (55, "AAPL"), (54, "1"), (38, "100"),
        (14, cum), (151, str(100 - Decimal(cum)) if ord_status not in ("2", "4") else "0"),
        (6, avg), (32, last[0]), (31, last[1]), (60, "20260105-14:30:00.999"),
    ):
        msg.append_pair(tag, value)
    return parse(msg.encode())


def new_order() -> ValidatedOrder:
    return ValidatedOrder(
        order_id="o1", account="acc1", symbol="AAPL", side=Side.BUY, qty=Decimal(100), ts=T0
    )


def open_app(store: Path) -> FixApplication:
    """Open the store as a restarted process would."""
    return FixApplication("fix", OrderJournal(store, fsync=False), fill_gaps=True)


def trades(fills: list[VenueFill]) -> list[tuple[str, ExecStatus, Decimal, Decimal, Decimal]]:
    return [(f.exec_id, f.status, f.last_qty, f.last_px, f.cum_qty) for f in fills if f.last_qty > 0]


def test_fill_lost_after_its_seq_was_persisted_comes_back_once_from_the_status_answer(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    app = open_app(store)
    app.new_order(new_order())
    app.on_message(report("E-new", "0", "0", "0", "0"))
    # E-p1 (40 @ 10) was read and its MsgSeqNum saved, then the process died: the venue
    # will never send it again.
    app = open_app(store)  # restarted
    assert app.journal.get("o1").phase is OrderPhase.IN_FLIGHT  # type: ignore[union-attr]
    assert [m.msg_type for m in app.on_logon()] == [MsgType.ORDER_STATUS_REQUEST]

    got = app.on_message(report("E-s1", "I", "1", "40", "10"))
    assert trades(got) == [("o1-SYN-40", ExecStatus.PARTIAL, Decimal(40), Decimal(10), Decimal(40))]
    assert got[-1].status is ExecStatus.STATUS
    assert got[0].leaves_qty == Decimal(60)
    assert got[0].reason.startswith("synthetic fill")
    assert trades(app.on_message(report("E-s2", "I", "1", "40", "10"))) == []  # asked again: no more

    got = app.on_message(report("E-p2", "F", "2", "100", "10.6", last=("60", "11")))
    assert trades(got) == [("E-p2", ExecStatus.FILLED, Decimal(60), Decimal(11), Decimal(100))]
    app = open_app(store)  # and once more: the logged fills are remembered
    assert trades(app.on_message(report("E-s3", "I", "2", "100", "10.6"))) == []
    assert app.counts["synthetic_fills"] == 0


def test_report_whose_cum_qty_skips_a_lost_partial_is_preceded_by_the_missing_fill(tmp_path: Path) -> None:
    app = open_app(tmp_path / "store")
    app.new_order(new_order())
    app.on_message(report("E-new", "0", "0", "0", "0"))
    # E-p1 (40 @ 10) lost; the final fill says CumQty 100 with AvgPx 10.6
    got = app.on_message(report("E-p2", "F", "2", "100", "10.6", last=("60", "11")))
    assert trades(got) == [
        ("o1-SYN-40", ExecStatus.PARTIAL, Decimal(40), Decimal(10), Decimal(40)),
        ("E-p2", ExecStatus.FILLED, Decimal(60), Decimal(11), Decimal(100)),
    ]
    assert sum(f.last_qty * f.last_px for f in got) == Decimal("1060")  # AvgPx 10.6 x 100
    assert app.journal.get("o1").phase is OrderPhase.DONE  # type: ignore[union-attr]


def test_canceled_report_after_a_lost_partial_gets_the_fill_before_the_cancel(tmp_path: Path) -> None:
    app = open_app(tmp_path / "store")
    app.new_order(new_order())
    got = app.on_message(report("E-cxl", "4", "4", "25", "9.5"))
    assert [(f.exec_id, f.status, f.last_qty) for f in got] == [
        ("o1-SYN-25", ExecStatus.PARTIAL, Decimal(25)),
        ("E-cxl", ExecStatus.CANCELED, Decimal(0)),
    ]


def test_outbox_replays_from_the_snapshot_offset_with_the_original_exec_ids(tmp_path: Path) -> None:
    store = tmp_path / "store"
    app = open_app(store)
    app.journal.replay_reports(0)
    app.new_order(new_order())
    app.on_message(report("E-new", "0", "0", "0", "0"))
    app.on_message(report("E-p1", "F", "1", "40", "10", last=("40", "10")))
    taken = app.journal.reports.take()
    assert [(o, f.exec_id) for o, f in taken] == [(0, "E-new"), (1, "E-p1")]
    snapshot_offset = 1  # the consumer's last snapshot came after E-new only
    app.on_message(report("E-p2", "F", "2", "100", "10.6", last=("60", "11")))  # received, not taken

    app = open_app(store)  # crash and restart from that snapshot
    assert app.journal.replay_reports(snapshot_offset) == snapshot_offset
    again = app.journal.reports.take()
    assert [(o, f.exec_id) for o, f in again] == [(1, "E-p1"), (2, "E-p2")]
    assert app.on_message(report("E-p2", "F", "2", "100", "10.6", last=("60", "11"))) == []  # resent: dup

    app = open_app(store)  # the compacted outbox still knows the fills before the offset
    assert app.journal.reports.start == snapshot_offset
    assert app.journal.reports.reported("o1").qty == Decimal(100)
    assert trades(app.on_message(report("E-s1", "I", "2", "100", "10.6"))) == []
    assert app.journal.seen("E-new")  # compacted away, still a known ExecID
