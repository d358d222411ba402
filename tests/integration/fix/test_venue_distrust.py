"""A venue that loses its state, against the real QuickFIX/J acceptor (deploy/fix-venue).

The venue is killed in the middle of a burst of orders and started again with its
FIX store and its order journal wiped: it numbers its messages from 1 again and asks
us to resend everything from 1. Whatever it was told before is gone, so re-sending
any of it would execute orders a second time. The venue's audit log (kept outside
the wiped store) tells what it really executed.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

from connectors.venues.fix import FixVenue
from operators.execution import ExecutionEngine, ExecutionPolicy
from schemas import Control, RiskEvent, Severity, TradingState, VenueFill
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue

from .conftest import RESTING_SYMBOL
from .test_initiator import TIMEOUT, order, settings

ACCOUNTS = ("acc1", "acc2", "acc3", "acc4")


def _engine(adapter: FixVenue) -> ExecutionEngine:
    engine = ExecutionEngine(
        adapter, control_ends={}, resume=None, cancel_on_disconnect=set,
        policy=ExecutionPolicy(metrics_interval_s=3600, reconcile_s=0, session_check_s=0),
    )
    engine.start()
    return engine


def test_venue_wiped_mid_burst_executes_no_order_twice_and_reduces_every_affected_account(
    fix_venue: QuickFixVenue, tmp_path: Path
) -> None:
    adapter = FixVenue(settings(fix_venue, tmp_path / "initiator", heartbeat_s=2))
    engine = _engine(adapter)
    out: list[object] = []
    assert adapter.wait_logged_on(TIMEOUT)
    # Resting orders for every account: open at the venue when it loses them.
    for i, account in enumerate(ACCOUNTS):
        out += engine.on_order(order(f"rest-{i}", RESTING_SYMBOL, account=account))
    burst = [order(f"mkt-{i}", account=ACCOUNTS[i % len(ACCOUNTS)]) for i in range(60)]
    for o in burst[:30]:
        out += engine.on_order(o)
    deadline = time.monotonic() + TIMEOUT
    while sum(isinstance(r, VenueFill) and r.status.value == "FILLED" for r in out) < 10:
        assert time.monotonic() < deadline, f"no fills before the wipe: {adapter.health()}"
        out += engine.poll()
        time.sleep(0.01)
    for o in burst[30:]:  # still going out while the venue dies
        out += engine.on_order(o)
    fix_venue.kill()
    shutil.rmtree(fix_venue.store_dir)
    fix_venue.start()

    deadline = time.monotonic() + 2 * TIMEOUT
    while not any(isinstance(r, RiskEvent) and r.rule == "VENUE_STATE_LOST" for r in out):
        assert time.monotonic() < deadline, f"no VENUE_STATE_LOST alarm: {adapter.health()}"
        out += engine.poll()
        time.sleep(0.05)
    time.sleep(3)  # the venue's ResendRequest is answered, late reports arrive
    out += engine.poll()
    engine.finish(wait_s=0, poll_s=0.05, sleep=time.sleep)
    health = adapter.health().as_dict()

    executed = Counter(a["cl_ord_id"] for a in fix_venue.audit_orders() if a["accepted"])
    assert executed, "the venue executed nothing"
    assert {k: n for k, n in executed.items() if n > 1} == {}, "orders executed twice"
    lost = [r for r in out if isinstance(r, RiskEvent) and r.rule == "VENUE_STATE_LOST"]
    assert {e.severity for e in lost} == {Severity.CRITICAL}
    assert {e.account for e in lost} >= set(ACCOUNTS)  # each had an order resting there
    reduced = {c.scope for c in out if isinstance(c, Control) and c.state is TradingState.REDUCING}
    assert reduced >= {f"account:{a}" for a in ACCOUNTS}
    assert health["logons"] >= 2
