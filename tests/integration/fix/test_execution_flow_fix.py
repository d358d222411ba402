"""Job D's flow (flows.execution) with ``venue=fix`` against the real QuickFIX/J venue.

Bounded runs (``run_main``) cover the order outcomes: fills, a cancel of a resting
order, a reject, a replayed input that sends nothing twice, and a lost ack resolved
by a status request after a restart. A live run (``python -m bytewax.run`` in follow
mode with recovery) has the venue SIGKILLed and restarted while orders keep coming.
``ExecutionLogic`` driven by hand shows that a fill received but never handed
downstream before a crash comes back after a restore. The flow's own SIGKILL is in
tests/recovery/test_execution_kill.py, which reuses the harness here.

The books are checked against the venue's audit log: one accepted NewOrderSingle per
ClOrdID and never a DUPLICATE; every accepted order FILLED in venue_fills with its
fills (distinct ExecIDs) summing to its quantity, no more, no less.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.fix.store import read_seqnums
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from flows.common import Decoded
from flows.execution import ExecutionLogic, build_flow
from schemas import (
    ExecStatus,
    ExecutionMetrics,
    OrderAction,
    Record,
    ValidatedOrder,
    VenueFill,
)
from tests import builders
from tests.helpers import read_all
from tests.recovery.procs import env_for, init_recovery, start
from tradeflow.infra.fix_venue import FixVenue

from .conftest import DROP_ACK_SYMBOL, REJECT_SYMBOL, RESTING_SYMBOL, VenueFactory

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
FLOW = ["-m", "bytewax.run", "flows.execution:build_flow()"]


# -- harness (also used by tests/recovery/test_execution_kill.py) ---------------------


def fix_env(venue: FixVenue) -> dict[str, str]:
    """Return the TRADEFLOW_* variables that point Job D at ``venue``."""
    return {
        "TRADEFLOW_EXECUTION__VENUE": "fix",
        "TRADEFLOW_FIX__HOST": venue.host,
        "TRADEFLOW_FIX__PORT": str(venue.port),
        "TRADEFLOW_FIX__SENDER_COMP_ID": venue.target_comp_id,
        "TRADEFLOW_FIX__TARGET_COMP_ID": venue.sender_comp_id,
        "TRADEFLOW_FIX__RECONNECT_INITIAL_S": "0.2",
        "TRADEFLOW_FIX__RECONNECT_MAX_S": "1.0",
    }


def flow_settings(
    venue: FixVenue, data_dir: Path, fix: dict[str, object] | None = None, **execution: object
) -> Settings:
    """Return settings of the local profile with Job D on the FIX venue."""
    return load_settings(
        data_dir=data_dir,
        profile="local",
        execution={"venue": "fix", "drain_timeout_s": 15.0, **execution},
        fix={
            "host": venue.host,
            "port": venue.port,
            "sender_comp_id": venue.target_comp_id,
            "target_comp_id": venue.sender_comp_id,
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
            **(fix or {}),
        },
    )


def order(
    order_id: str, symbol: str = "AAPL", qty: int = 10, action: OrderAction = OrderAction.NEW
) -> ValidatedOrder:
    """Return a market order (or its cancel) of ``qty`` for account A."""
    return builders.order(order_id, action=action, account="A", symbol=symbol, qty=Decimal(qty),
                          ts=datetime.now(UTC))


def write(conn: Connectors, stream: str, records: Sequence[Record], *, close: bool = True) -> None:
    """Append records to a stream (and mark it closed, for bounded runs)."""
    writer = conn.writer(stream)
    try:
        writer.write(list(records))
        if close:
            writer.close_stream()
    finally:
        writer.close()


def fills_of(conn: Connectors) -> list[VenueFill]:
    """Return every venue_fills record."""
    return [r for r in read_all(conn, "venue_fills") if isinstance(r, VenueFill)]


def filled_ids(conn: Connectors) -> set[str]:
    """Return the order ids with a FILLED report in venue_fills."""
    return {f.order_id for f in fills_of(conn) if f.status is ExecStatus.FILLED}


def the_fill(reports: Iterable[VenueFill], order_id: str) -> VenueFill:
    """Return the one report of ``order_id`` that carries a quantity (fail if there are more)."""
    (fill,) = [f for f in reports if f.order_id == order_id and f.last_qty > 0]
    return fill


def wait_for(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT, log: Path | None = None) -> None:
    """Poll ``cond`` until it holds; fail with ``what`` (and the flow log) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what} not within {timeout}s\n{tail}")


def emitted_until_filled(logic: ExecutionLogic, what: str) -> list[Any]:
    """Poll ``logic`` (``on_notify``) until it emits a FILLED report, then close its adapter;
    return everything it emitted."""
    got: list[Any] = []

    def filled() -> bool:
        got.extend(logic.on_notify()[0])
        return any(isinstance(r, VenueFill) and r.status is ExecStatus.FILLED for r in got)

    wait_for(filled, what, timeout=20)
    logic.adapter.close()
    return got


def assert_books(venue: FixVenue, conn: Connectors, orders: Iterable[ValidatedOrder]) -> list[VenueFill]:
    """Check one NewOrderSingle per order at the venue and each order filled exactly once."""
    audit = venue.audit_orders()
    assert not [r for r in audit if r["outcome"] == "DUPLICATE"], "an order went out twice"
    reports = fills_of(conn)
    twice = [e for e, n in Counter(f.exec_id for f in reports).items() if n > 1]
    assert not twice, f"exec ids written twice: {twice}"
    for o in orders:
        accepted = [r for r in audit if r["cl_ord_id"] == o.order_id and r["accepted"]]
        assert len(accepted) == 1, f"{o.order_id}: {len(accepted)} accepted NewOrderSingles"
        mine = [f for f in reports if f.order_id == o.order_id]
        trades = [f for f in mine if f.last_qty > 0]
        assert sum(f.last_qty for f in trades) == o.qty, f"{o.order_id} fills {trades}"
        final = [f for f in mine if f.status is ExecStatus.FILLED]
        assert len(final) == 1, f"{o.order_id}: FILLED reports {final}"
        assert final[0].cum_qty == o.qty
    return reports


class Feeder(threading.Thread):
    """Write orders into validated_orders one by one, ``every_s`` apart."""

    def __init__(self, data_dir: Path, orders: Sequence[ValidatedOrder], every_s: float) -> None:
        super().__init__(daemon=True)
        self.data_dir = data_dir
        self.orders = list(orders)
        self.every_s = every_s
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = Connectors(load_settings(data_dir=self.data_dir, profile="local"))
        writer = conn.writer("validated_orders")
        try:
            for o in self.orders:
                writer.write([o])
                self.written += 1
                time.sleep(self.every_s)
        except BaseException as exc:  # reported by the test through .error
            self.error = exc
        finally:
            writer.close()


class LiveFlow:
    """Job D as ``python -m bytewax.run "flows.execution:build_flow()"`` in follow mode with recovery."""

    def __init__(self, tmp_path: Path, venue: FixVenue) -> None:
        self.data = tmp_path / "data"
        self.recovery = tmp_path / "recovery"
        self.log = tmp_path / "flow.log"
        self.env = env_for(
            self.data,
            TRADEFLOW_FOLLOW="true",
            TRADEFLOW_POLL_INTERVAL_MS="20",
            TRADEFLOW_EXECUTION__METRICS_INTERVAL_S="1",
            **fix_env(venue),
        )
        self.conn = Connectors(load_settings(data_dir=self.data, profile="local"))
        write(self.conn, "control", [], close=False)
        write(self.conn, "validated_orders", [], close=False)
        init_recovery(self.recovery, self.env, self.log)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def store(self) -> Path:
        """Return the flow's FIX session store."""
        return self.data / "fix" / "TRADEFLOW-VENUE"

    def start(self) -> None:
        """Start (or restart, resuming from the recovery snapshots) the flow."""
        self.proc = start([*FLOW, "-r", str(self.recovery), "-s", "1", "-b", "0"], self.env, self.log)

    def alive(self) -> bool:
        """Tell whether the flow process runs."""
        return self.proc is not None and self.proc.poll() is None

    def settle(self, venue: FixVenue, feeder: Feeder) -> None:
        """Wait for ``feeder`` to write every order and each to be FILLED, the flow still running
        and its session in step with the venue."""
        feeder.join(30)
        assert feeder.error is None
        assert feeder.written == len(feeder.orders)
        wanted = {o.order_id for o in feeder.orders}
        wait_for(lambda: filled_ids(self.conn) >= wanted, "every order FILLED", log=self.log)
        assert self.alive(), self.log.read_text()[-3000:]
        assert_in_step(venue, self.store)

    def kill(self) -> None:
        """SIGKILL the flow, as a crash would."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self.proc = None


def venue_seqnums(venue: FixVenue) -> tuple[int, int]:
    """Return the venue's (next sender, next target) MsgSeqNum from its QuickFIX/J store."""
    base = venue.store_dir / f"FIX.4.4-{venue.sender_comp_id}-{venue.target_comp_id}"

    def read(suffix: str) -> int:
        raw = Path(f"{base}.{suffix}").read_bytes()  # Java writeUTF: 2-byte length, then text
        return int(raw[2 : 2 + int.from_bytes(raw[:2], "big")].decode())

    return read("senderseqnums"), read("targetseqnums")


def flow_seqnums(store: Path) -> tuple[int, int]:
    """Return our (next sender, next target) MsgSeqNum from the FIX store."""
    data = read_seqnums(store)
    assert data is not None, f"no sequence numbers saved in {store}"
    return int(data["next_sender"]), int(data["next_target"])


def assert_in_step(venue: FixVenue, store: Path) -> None:
    """Both sides agree on the sequence numbers once the session is quiet."""
    def agreed() -> bool:
        ours_out, ours_in = flow_seqnums(store)
        theirs_out, theirs_in = venue_seqnums(venue)
        return (ours_out, ours_in) == (theirs_in, theirs_out)

    wait_for(agreed, f"sequence numbers in step: ours {flow_seqnums(store)}, venue {venue_seqnums(venue)}",
             timeout=10)


# -- bounded runs ----------------------------------------------------------------------


@pytest.fixture
def venue(fix_venue_factory: VenueFactory) -> FixVenue:
    """Return a venue that fills every order in two slices."""
    return fix_venue_factory(partial_fills=2)


def test_flow_orders_are_filled_by_the_venue_and_fills_land_in_venue_fills(
    venue: FixVenue, tmp_path: Path
) -> None:
    settings = flow_settings(venue, tmp_path / "data")
    conn = Connectors(settings)
    orders = [order(f"F{i}", qty=10 + i) for i in range(8)]
    write(conn, "control", [])
    write(conn, "validated_orders", orders)
    run_main(build_flow(settings))

    reports = assert_books(venue, conn, orders)
    for o in orders:
        statuses = [f.status for f in reports if f.order_id == o.order_id]
        assert statuses == [ExecStatus.NEW, ExecStatus.PARTIAL, ExecStatus.FILLED]
    assert {f.last_px for f in reports if f.last_qty > 0} == {Decimal(100)}
    assert all(f.venue == "fix" and f.venue_order_id for f in reports)
    metrics = [m for m in read_all(conn, "execution_metrics") if isinstance(m, ExecutionMetrics)]
    assert sum(m.orders_sent for m in metrics) == len(orders)
    assert sum(m.fills for m in metrics) == 2 * len(orders)
    assert metrics[-1].session_state == "ACTIVE"
    assert metrics[-1].ack_p50_ms is not None


def test_flow_rejected_symbol_comes_back_rejected_and_nothing_else(venue: FixVenue, tmp_path: Path) -> None:
    settings = flow_settings(venue, tmp_path / "data")
    conn = Connectors(settings)
    write(conn, "control", [])
    write(conn, "validated_orders", [order("R1", REJECT_SYMBOL), order("F1")])
    run_main(build_flow(settings))

    (rej,) = [f for f in fills_of(conn) if f.order_id == "R1"]
    assert rej.status is ExecStatus.REJECTED
    assert "not traded" in rej.reason
    assert [r["outcome"] for r in venue.audit_orders("R1")] == ["REJECTED"]
    assert filled_ids(conn) == {"F1"}


def test_flow_cancel_of_a_resting_order_in_a_later_run_cancels_it_at_the_venue(
    venue: FixVenue, tmp_path: Path
) -> None:
    settings = flow_settings(venue, tmp_path / "data", drain_timeout_s=1.0)
    conn = Connectors(settings)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    write(conn, "control", [])
    write(conn, "validated_orders", [order("C1", RESTING_SYMBOL)])
    run_main(build_flow(settings), recovery_config=RecoveryConfig(str(recovery)))
    assert [f.status for f in fills_of(conn)] == [ExecStatus.NEW]  # resting at the venue

    write(conn, "validated_orders", [order("C1", RESTING_SYMBOL, action=OrderAction.CANCEL)])
    later = flow_settings(venue, tmp_path / "data")
    run_main(build_flow(later), recovery_config=RecoveryConfig(str(recovery)))

    statuses = [f.status for f in fills_of(conn) if f.order_id == "C1"]
    assert statuses[0] is ExecStatus.NEW
    assert statuses[-1] is ExecStatus.CANCELED
    assert ExecStatus.FILLED not in statuses
    assert [r["outcome"] for r in venue.audit_orders("C1")] == ["NEW"]


def test_flow_run_again_over_the_same_input_sends_nothing_twice(venue: FixVenue, tmp_path: Path) -> None:
    settings = flow_settings(venue, tmp_path / "data")
    conn = Connectors(settings)
    orders = [order(f"A{i}") for i in range(4)]
    write(conn, "control", [])
    write(conn, "validated_orders", orders)
    run_main(build_flow(settings))
    first = fills_of(conn)
    run_main(build_flow(settings))  # no recovery: the whole input again

    assert_books(venue, conn, orders)
    assert fills_of(conn)[: len(first)] == first
    assert all(r["outcome"] == "NEW" for r in venue.audit_orders())


def test_flow_lost_ack_is_resolved_by_a_status_request_after_restart_never_a_second_order(
    venue: FixVenue, tmp_path: Path
) -> None:
    settings = flow_settings(venue, tmp_path / "data", drain_timeout_s=1.5)
    conn = Connectors(settings)
    lost = order("L1", DROP_ACK_SYMBOL)
    write(conn, "control", [])
    write(conn, "validated_orders", [lost, order("F1")])
    run_main(build_flow(settings))
    assert venue.accepted_orders("L1"), "the venue booked the order"
    assert not [f for f in fills_of(conn) if f.order_id == "L1"]  # no answer at all

    run_main(build_flow(settings))  # a restart: L1 replayed, asked about, not re-sent

    syn = the_fill(fills_of(conn), "L1")
    assert syn.exec_id == "L1-SYN-10"
    assert syn.reason.startswith("synthetic fill")
    assert [r["outcome"] for r in venue.audit_orders("L1")] == ["NEW"]
    # reconciliation: the fill the venue made that we never saw raises the alarm and
    # moves the account to REDUCING
    (event,) = [e for e in read_all(conn, "risk_events") if e.rule == "VENUE_RECONCILIATION"]  # type: ignore[attr-defined]
    assert event.severity.value == "CRITICAL"  # type: ignore[attr-defined]
    assert event.order_id == "L1"  # type: ignore[attr-defined]
    reducing = [c for c in read_all(conn, "control") if c.state.value == "REDUCING"]  # type: ignore[attr-defined]
    assert [c.scope for c in reducing] == [f"account:{lost.account}"]  # type: ignore[attr-defined]
    assert_books(venue, conn, [lost, order("F1")])


def test_flow_lost_ack_is_asked_about_while_running_after_status_after_s(
    venue: FixVenue, tmp_path: Path
) -> None:
    settings = flow_settings(venue, tmp_path / "data", fix={"status_after_s": 0.5})
    conn = Connectors(settings)
    lost = order("L2", DROP_ACK_SYMBOL, qty=7)
    write(conn, "control", [])
    write(conn, "validated_orders", [lost])
    run_main(build_flow(settings))  # no restart: the status request comes from the timer

    mine = [f for f in fills_of(conn) if f.order_id == "L2"]
    assert [(f.exec_id, f.status) for f in mine][0] == ("L2-SYN-7", ExecStatus.FILLED)
    assert [r["outcome"] for r in venue.audit_orders("L2")] == ["NEW"]
    assert_books(venue, conn, [lost])


def test_periodic_reconciliation_finds_a_venue_fill_we_never_saw(venue: FixVenue, tmp_path: Path) -> None:
    # The venue books and fills the order but never reports it; the lost-ack timer is
    # off, so only the periodic reconciliation (every 0.3 s) can find it.
    settings = flow_settings(
        venue, tmp_path / "data", fix={"status_after_s": 3600}, reconcile_s=0.3, drain_timeout_s=5
    )
    conn = Connectors(settings)
    ghost = order("G1", DROP_ACK_SYMBOL, qty=4)
    write(conn, "control", [])
    write(conn, "validated_orders", [ghost])
    run_main(build_flow(settings))
    syn = the_fill(fills_of(conn), "G1")
    assert syn.exec_id == "G1-SYN-4"
    (event,) = [e for e in read_all(conn, "risk_events") if e.rule == "VENUE_RECONCILIATION"]  # type: ignore[attr-defined]
    assert event.values == {"venue_cum_qty": "4", "missing_qty": "4"}  # type: ignore[attr-defined]
    assert [c.state.value for c in read_all(conn, "control")] == ["REDUCING"]  # type: ignore[attr-defined]
    assert [r["outcome"] for r in venue.audit_orders("G1")] == ["NEW"]


# -- a fill received but not handed downstream before a crash ---------------------------


def test_fill_received_but_never_emitted_before_a_crash_comes_again_after_restore(
    venue: FixVenue, tmp_path: Path
) -> None:
    settings = flow_settings(venue, tmp_path / "data")
    first = ExecutionLogic(settings, {}, None)
    o = order("X1")
    assert first.on_batch([Decoded(o, "validated_orders", 0, 0)]) == ([], False)
    snap = first.snapshot()  # the epoch's snapshot: the order handed on, no report yet
    wait_for(lambda: first.adapter.health().figure("fills", 0) >= 2, "fills at the adapter", timeout=20)
    first.adapter.close()  # the process dies: nothing was polled, nothing written

    second = ExecutionLogic(settings, {}, snap)  # resumed from the snapshot
    got = emitted_until_filled(second, "the fill again after restore")
    reports = [r for r in got if isinstance(r, VenueFill)]
    assert [r.status for r in reports][:3] == [ExecStatus.NEW, ExecStatus.PARTIAL, ExecStatus.FILLED]
    assert not any("-SYN-" in r.exec_id for r in reports)  # the originals, by ExecID
    assert sum(r.last_qty for r in reports) == o.qty
    assert [r["outcome"] for r in venue.audit_orders("X1")] == ["NEW"]


def test_order_handed_to_the_adapter_but_never_sent_before_a_crash_goes_out_after_restore(
    venue: FixVenue, tmp_path: Path
) -> None:
    settings = flow_settings(venue, tmp_path / "data")
    venue.stop()  # no session: the order waits in the adapter's memory
    first = ExecutionLogic(settings, {}, None)
    first.on_batch([Decoded(order("U1"), "validated_orders", 0, 0)])
    time.sleep(0.3)
    snap = first.snapshot()  # the epoch that took U1 as sent
    first.adapter.close()  # the process dies before any logon
    assert venue.audit_orders() == []

    venue.start()
    emitted_until_filled(ExecutionLogic(settings, {}, snap), "U1 filled after restore")
    assert [r["outcome"] for r in venue.audit_orders("U1")] == ["NEW"]


# -- the venue SIGKILLed and restarted under a live flow --------------------------------


def test_live_flow_survives_a_venue_crash_mid_stream_without_loss_or_resend(
    venue: FixVenue, tmp_path: Path
) -> None:
    flow = LiveFlow(tmp_path, venue)
    orders = [order(f"V{i:03d}", qty=10 + i % 7) for i in range(50)]
    orders[5] = order("V005", DROP_ACK_SYMBOL)  # its ack never comes; asked at the re-logon
    flow.start()
    feeder = Feeder(flow.data, orders, every_s=0.06)
    feeder.start()
    try:
        wait_for(lambda: len(filled_ids(flow.conn)) >= 12, "first fills", log=flow.log)
        venue.kill()
        time.sleep(1.0)  # orders keep coming while the venue is down
        written_while_down = feeder.written
        venue.start()
        flow.settle(venue, feeder)
        assert written_while_down < len(orders), "the feed ended before the venue came back"
    finally:
        flow.kill()

    reports = assert_books(venue, flow.conn, orders)
    assert the_fill(reports, "V005").exec_id == "V005-SYN-10"


def test_working_orders_of_a_cancel_on_disconnect_account_are_cancelled_when_the_session_returns(
    fix_venue_factory: VenueFactory, tmp_path: Path
) -> None:
    from schemas import Account

    venue = fix_venue_factory(partial_fills=1)
    settings = flow_settings(venue, tmp_path / "data", drain_timeout_s=8, reconcile_s=0)
    conn = Connectors(settings)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    write(conn, "accounts", [
        Account(account="COD", cancel_on_disconnect=True, ts=t0), Account(account="KEEP", ts=t0),
    ])
    write(conn, "control", [])
    mine = order("R1", RESTING_SYMBOL)
    theirs = order("R2", RESTING_SYMBOL)
    write(conn, "validated_orders", [
        mine.model_copy(update={"account": "COD"}), theirs.model_copy(update={"account": "KEEP"}),
    ])

    def bounce() -> None:  # the session drops while both orders rest at the venue
        wait_for(lambda: len(venue.accepted_orders()) == 2, "both orders booked", timeout=10)
        venue.restart(kill=True)

    threading.Thread(target=bounce, daemon=True).start()
    run_main(build_flow(settings))  # drains until R1 is answered (R2 rests on)
    got = {(f.order_id, f.status) for f in fills_of(conn)}
    assert ("R1", ExecStatus.CANCELED) in got
    assert ("R2", ExecStatus.CANCELED) not in got
