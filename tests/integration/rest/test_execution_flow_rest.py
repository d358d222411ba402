"""Job D's live flow with ``venue=rest`` against the real venue's HTTP/WebSocket API, under crashes.

The same exactly-once scenarios as the FIX tests, each with orders written while it
happens: Job D SIGKILLed twice mid-burst and resumed from its Bytewax recovery, the
venue SIGKILLed and restarted, and the network cut (TCP proxies in front of both the
HTTP API and the user stream, stopped and started again). Every time the books must
agree: each order is booked at the venue exactly once (one NEW in its audit log; a
POST sent again after status queries found nothing is answered with that same order),
and every execution the venue logged is in venue_fills exactly once, the fills
of each order summing to its quantity.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from connectors.registry import Connectors
from connectors.settings import load_settings
from schemas import ExecStatus, ValidatedOrder, VenueFill
from tests.integration.fix.test_execution_flow_fix import (
    FLOW,
    Feeder,
    filled_ids,
    fills_of,
    order,
    wait_for,
    write,
)
from tests.recovery.procs import env_for, init_recovery, start
from tradeflow.infra.common import read_json_lines
from tradeflow.infra.fix_venue import FixVenue
from tradeflow.infra.rest_venue import SECRET_FILE

from .conftest import VenueFactory
from .proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.recovery]


def rest_env(venue: FixVenue, http_port: int | None = None, ws_port: int | None = None) -> dict[str, str]:
    """Return the TRADEFLOW_* variables that point Job D at the venue's REST API (or proxies)."""
    rest = venue.rest
    assert rest is not None
    return {
        "TRADEFLOW_EXECUTION__VENUE": "rest",
        "TRADEFLOW_REST__BASE_URL": f"http://127.0.0.1:{http_port or rest.http_port}",
        "TRADEFLOW_REST__WS_URL": f"ws://127.0.0.1:{ws_port or rest.ws_port}/api/v1/stream",
        "TRADEFLOW_REST__API_KEY": rest.api_key,
        "TRADEFLOW_REST__SECRET_FILE": str(venue.data_dir / SECRET_FILE),
        "TRADEFLOW_REST__RECONNECT_INITIAL_S": "0.2",
        "TRADEFLOW_REST__RECONNECT_MAX_S": "1.0",
        "TRADEFLOW_REST__REQUEST_TIMEOUT_S": "1.0",
        "TRADEFLOW_REST__STATUS_AFTER_S": "0.5",
        "TRADEFLOW_REST__UNKNOWN_RESEND_AFTER_S": "5.0",
    }


class RestLiveFlow:
    """Job D as ``python -m bytewax.run`` in follow mode with recovery, on the REST venue."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.data = tmp_path / "data"
        self.recovery = tmp_path / "recovery"
        self.log = tmp_path / "flow.log"
        self.env = env_for(self.data, TRADEFLOW_FOLLOW="true", TRADEFLOW_POLL_INTERVAL_MS="20",
                           TRADEFLOW_EXECUTION__METRICS_INTERVAL_S="1", **env)
        self.conn = Connectors(load_settings(data_dir=self.data, profile="local"))
        write(self.conn, "control", [], close=False)
        write(self.conn, "validated_orders", [], close=False)
        init_recovery(self.recovery, self.env, self.log)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start([*FLOW, "-r", str(self.recovery), "-s", "1", "-b", "0"], self.env, self.log)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()  # SIGKILL
            self.proc.wait(30)
            self.proc = None

    def warm_up(self, first: ValidatedOrder) -> None:
        """Write one order and wait for it to be FILLED: the flow is up (it starts slowly on 2 cores)."""
        feeder = Feeder(self.data, [first], every_s=0)
        feeder.start()
        feeder.join(30)
        wait_for(lambda: first.order_id in filled_ids(self.conn), "the flow up", timeout=90, log=self.log)

    def start_feeding(self, orders: Sequence[ValidatedOrder]) -> Feeder:
        """Start the flow, warm it up with the first order, then write the rest one every 0.1 s."""
        self.start()
        self.warm_up(orders[0])
        feeder = Feeder(self.data, orders[1:], every_s=0.1)
        feeder.start()
        return feeder

    def settle(self, feeder: Feeder) -> None:
        feeder.join(60)
        assert feeder.error is None
        assert feeder.written == len(feeder.orders)
        wanted = {o.order_id for o in feeder.orders}
        wait_for(lambda: filled_ids(self.conn) >= wanted, "every order FILLED", timeout=90, log=self.log)
        assert self.alive(), self.log.read_text()[-3000:]


def outage_mid_stream(
    flow: RestLiveFlow, feeder: Feeder, down: Callable[[], None], up: Callable[[], None], what: str
) -> None:
    """After the first fills, ``down`` for 1.5 s while orders keep coming, ``up`` again, settle."""
    wait_for(lambda: len(filled_ids(flow.conn)) >= 6, "first fills", log=flow.log)
    down()
    time.sleep(1.5)  # orders keep coming meanwhile
    written_while_down = feeder.written
    up()
    flow.settle(feeder)
    assert written_while_down < len(feeder.orders), f"the feed ended before the {what} came back"


def venue_executions(venue: FixVenue) -> list[dict[str, object]]:
    """Return the venue's REST execution log (every execution it numbered)."""
    return read_json_lines(venue.store_dir / "rest-executions.jsonl")


def assert_exactly_once(
    venue: FixVenue, conn: Connectors, orders: Sequence[ValidatedOrder]
) -> list[VenueFill]:
    """Each order booked once at the venue, and each venue execution in venue_fills once."""
    reports = [f for f in fills_of(conn) if f.status is not ExecStatus.STATUS]
    twice = [e for e, n in Counter(f.exec_id for f in reports).items() if n > 1]
    assert not twice, f"exec ids written twice: {twice}"
    replays = 0
    for o in orders:
        audit = venue.audit_orders(o.order_id)
        outcomes = [r["outcome"] for r in audit]
        # booked once; a POST sent again after status queries found nothing is the same order
        assert outcomes.count("NEW") == 1, f"{o.order_id}: {audit}"
        assert set(outcomes) <= {"NEW", "IDEMPOTENT_REPLAY"}, f"{o.order_id}: {audit}"
        replays += outcomes.count("IDEMPOTENT_REPLAY")
        trades = [f for f in reports if f.order_id == o.order_id and f.last_qty > 0]
        assert sum(f.last_qty for f in trades) == o.qty, f"{o.order_id} fills {trades}"
        assert len([f for f in reports if f.order_id == o.order_id and f.status is ExecStatus.FILLED]) == 1
    at_venue = {str(e["execId"]) for e in venue_executions(venue)}
    ours = {f.exec_id for f in reports}
    assert at_venue == ours, f"missing {sorted(at_venue - ours)[:10]}, extra {sorted(ours - at_venue)[:10]}"
    print(f"{len(orders)} orders booked once each; {replays} idempotent re-sends after a status query")
    return reports


def feed_through(
    venue: FixVenue, flow: RestLiveFlow, orders: Sequence[ValidatedOrder], trouble: Callable[[Feeder], None]
) -> None:
    """Feed ``orders`` to the flow with ``trouble`` going on meanwhile (it settles the flow);
    then, the flow killed whatever happened, every order must be booked exactly once."""
    feeder = flow.start_feeding(orders)
    try:
        trouble(feeder)
    finally:
        flow.kill()
    assert_exactly_once(venue, flow.conn, orders)


@pytest.fixture
def venue(rest_venue_factory: VenueFactory) -> FixVenue:
    """A venue with a REST API that fills every order in three slices."""
    return rest_venue_factory(partial_fills=3)


def test_job_d_sigkilled_twice_mid_burst_sends_no_order_twice_and_loses_no_fill(
    venue: FixVenue, tmp_path: Path
) -> None:
    flow = RestLiveFlow(tmp_path, rest_env(venue))
    orders = [order(f"K{i:03d}", qty=9 + i % 5) for i in range(100)]

    def kill_twice(feeder: Feeder) -> None:
        for threshold in (10, 30):
            started = time.monotonic()
            wait_for(lambda n=threshold: len(filled_ids(flow.conn)) >= n, f"{threshold} filled", log=flow.log)
            time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))  # a snapshot exists
            assert flow.alive(), flow.log.read_text()[-3000:]
            flow.kill()
            assert len(filled_ids(flow.conn)) < len(orders), "every order filled before the kill"
            flow.start()
        flow.settle(feeder)

    feed_through(venue, flow, orders, kill_twice)


def test_venue_sigkilled_and_restarted_mid_stream_without_loss_or_resend(
    venue: FixVenue, tmp_path: Path
) -> None:
    flow = RestLiveFlow(tmp_path, rest_env(venue))
    orders = [order(f"V{i:03d}", qty=10 + i % 7) for i in range(60)]
    feed_through(
        venue, flow, orders, lambda feeder: outage_mid_stream(flow, feeder, venue.kill, venue.start, "venue")
    )


def test_network_cut_mid_burst_without_loss_or_resend(venue: FixVenue, tmp_path: Path) -> None:
    rest = venue.rest
    assert rest is not None
    assert rest.http_port
    assert rest.ws_port
    http = TcpProxy(rest.http_port).start()
    ws = TcpProxy(rest.ws_port).start()
    try:
        flow = RestLiveFlow(tmp_path, rest_env(venue, http.port, ws.port))
        orders = [order(f"N{i:03d}", qty=8 + i % 6) for i in range(60)]

        def cut() -> None:
            http.stop()
            ws.stop()

        def mend() -> None:
            http.start()
            ws.start()

        feed_through(
            venue, flow, orders, lambda feeder: outage_mid_stream(flow, feeder, cut, mend, "network")
        )
    finally:
        http.stop()
        ws.stop()
