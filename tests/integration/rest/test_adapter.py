"""The REST adapter (connectors/venues/rest.py) against the real venue's HTTP/WebSocket API.

Happy path (fills, a reject, a cancel of a resting order), the venue's idempotency on
clientOrderId, a bad signature refused (401), 429 with Retry-After honoured, a timeout
resolved by a status query and never a re-send, gap recovery after the user stream was
cut, and a restart of the adapter that sends nothing twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.venues.rest import RestVenue
from schemas import ExecStatus, OrderAction, Side, ValidatedOrder, VenueFill
from tradeflow.infra.fix_venue import FixVenue

from .conftest import REJECT_SYMBOL, RESTING_SYMBOL, SLOW_SYMBOL, VenueFactory
from .proxy import TcpProxy

pytestmark = pytest.mark.integration

WRONG = "not-the-secret"  # noqa: S105 - a wrong secret, on purpose


def order(
    order_id: str, symbol: str = "AAPL", qty: int = 10, action: OrderAction = OrderAction.NEW
) -> ValidatedOrder:
    return ValidatedOrder(order_id=order_id, action=action, account="A", symbol=symbol, side=Side.BUY,
                          qty=Decimal(qty), ts=datetime.now(UTC))


def adapter(venue: FixVenue, store: Path, opened: list[RestVenue], **options: Any) -> RestVenue:
    assert venue.rest is not None
    a = RestVenue(venue.rest.client_settings(store, fsync=False, **options))
    opened.append(a)
    a.connect()
    return a


def collect(a: RestVenue, until: Callable[[list[VenueFill]], bool], timeout: float = 20) -> list[VenueFill]:
    got: list[VenueFill] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += a.poll_reports()
        if until(got):
            return got
        time.sleep(0.02)
    pytest.fail(f"not within {timeout}s: {[(f.order_id, f.status) for f in got]}\n{a.health().as_dict()}")


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def filled(ids: set[str]) -> Callable[[list[VenueFill]], bool]:
    return lambda got: {f.order_id for f in got if f.status is ExecStatus.FILLED} >= ids


def assert_once(venue: FixVenue, reports: list[VenueFill], orders: list[ValidatedOrder]) -> None:
    twice = [e for e, n in Counter(f.exec_id for f in reports).items() if n > 1]
    assert not twice, f"exec ids reported twice: {twice}"
    for o in orders:
        assert len(venue.accepted_orders(o.order_id)) == 1, venue.audit_orders(o.order_id)
        trades = [f for f in reports if f.order_id == o.order_id and f.last_qty > 0]
        assert sum(f.last_qty for f in trades) == o.qty


def test_orders_fill_reject_and_cancel_over_rest(
    rest_venue: FixVenue, tmp_path: Path, adapters: list[RestVenue]
) -> None:
    a = adapter(rest_venue, tmp_path / "store", adapters)
    assert a.wait_connected(10)
    orders = [order(f"H{i}") for i in range(5)]
    for o in orders:
        a.submit(o)
    a.submit(order("BAD", REJECT_SYMBOL))
    a.submit(order("REST1", RESTING_SYMBOL))
    got = collect(a, lambda g: filled({o.order_id for o in orders})(g)
                  and any(f.order_id == "REST1" and f.status is ExecStatus.NEW for f in g)
                  and any(f.order_id == "BAD" for f in g))
    a.cancel(order("REST1", RESTING_SYMBOL, action=OrderAction.CANCEL))
    got += collect(a, lambda g: any(f.status is ExecStatus.CANCELED for f in g))
    assert_once(rest_venue, got, orders)
    (bad,) = [f for f in got if f.order_id == "BAD"]
    assert bad.status is ExecStatus.REJECTED
    assert "not traded" in bad.reason
    h0 = [f.status for f in got if f.order_id == "H0"]
    assert h0 == [ExecStatus.NEW, ExecStatus.PARTIAL, ExecStatus.FILLED]
    assert {f.venue for f in got} == {"rest"}
    # the same book serves FIX: the REST orders are its session REST:<key>
    assert {r["session"] for r in rest_venue.audit_orders()} == {"REST:tradeflow"}
    # every execution came in the POST answer and again on the stream: taken once
    last = rest_venue.rest.stats()["last_seq"]  # type: ignore[union-attr]
    wait_until(lambda: a.health().figure("cursor") == last, "the stream caught up")
    health = a.health()
    assert health.figure("duplicates") > 0
    assert health.figure("malformed") == 0


def test_the_same_client_order_id_twice_is_the_same_order(rest_venue: FixVenue) -> None:
    rest = rest_venue.rest
    assert rest is not None
    body = json.dumps({"clientOrderId": "IDEM1", "symbol": "AAPL", "side": "BUY", "qty": "5"}).encode()
    first, a = rest.call("POST", "/api/v1/orders", body)
    again, b = rest.call("POST", "/api/v1/orders", body)
    assert (first, again) == (201, 200)
    assert a["order"]["orderId"] == b["order"]["orderId"]
    assert b["order"]["status"] == "FILLED"
    assert [e["execId"] for e in a["executions"]] == [e["execId"] for e in b["executions"]]
    assert [r["outcome"] for r in rest_venue.audit_orders("IDEM1")] == ["NEW", "IDEMPOTENT_REPLAY"]
    assert len(rest_venue.accepted_orders("IDEM1")) == 1
    status, missing = rest.call("GET", "/api/v1/orders/NOPE")
    assert status == 404


def test_a_bad_signature_is_refused_and_the_order_never_reaches_the_venue(
    rest_venue: FixVenue, tmp_path: Path, adapters: list[RestVenue]
) -> None:
    rest = rest_venue.rest
    assert rest is not None
    body = json.dumps({"clientOrderId": "FORGED", "symbol": "AAPL", "side": "BUY", "qty": "5"}).encode()
    status, answer = rest.call("POST", "/api/v1/orders", body, secret=WRONG)
    assert status == 401
    assert answer["error"] == "bad signature"

    wrong = RestVenue(rest.client_settings(tmp_path / "store", fsync=False).model_copy(
        update={"secret": SecretStr(WRONG)}))
    adapters.append(wrong)
    wrong.connect()
    wrong.submit(order("SIG1"))
    got = collect(wrong, lambda g: any(f.order_id == "SIG1" for f in g))
    assert [f.status for f in got] == [ExecStatus.REJECTED]
    assert "signature" in got[0].reason
    assert not wrong.wait_connected(1.0)  # the stream is refused too
    findings = wrong.poll_findings()
    assert [f.rule for f in findings] == ["LOGON_REFUSED"]
    assert rest_venue.audit_orders() == []
    assert rest.stats()["unauthorized"] >= 2


def test_429_with_retry_after_is_honoured_and_every_order_still_goes_once(
    rest_venue_factory: VenueFactory, tmp_path: Path, adapters: list[RestVenue]
) -> None:
    venue = rest_venue_factory(rest={"rate_limit": 10, "rate_burst": 4, "retry_after_s": 1})
    # one request at a time: a request inside the venue's Retry-After window was then sent
    # after our 429 arrived (none in flight across it), which is what must never happen
    a = adapter(venue, tmp_path / "store", adapters, rate_limit_per_s=1000, rate_burst=100, max_concurrent=1)
    orders = [order(f"RL{i}", qty=3) for i in range(16)]
    t0 = time.monotonic()
    for o in orders:
        a.submit(o)
    got = collect(a, filled({o.order_id for o in orders}), timeout=30)
    assert_once(venue, got, orders)
    assert venue.audit_orders()
    assert all(r["outcome"] == "NEW" for r in venue.audit_orders())
    # the test's own stats request uses the same key's bucket: let the last Retry-After
    # window pass and the bucket refill first, or the question itself is rate limited
    time.sleep(1.5)
    stats = venue.rest.stats()  # type: ignore[union-attr]
    assert a.health().figure("rate_limited") >= 1
    assert stats["rate_limited"] >= 1
    assert stats.get("requests_during_backoff", 0) == 0, stats  # nothing sent inside a Retry-After
    assert time.monotonic() - t0 >= 1.0  # at least one Retry-After waited out


def test_a_timeout_is_resolved_by_a_status_query_never_a_resend(
    rest_venue_factory: VenueFactory, tmp_path: Path, adapters: list[RestVenue]
) -> None:
    venue = rest_venue_factory(rest={"delay_symbols": (SLOW_SYMBOL,), "delay_ms": 2500})
    a = adapter(venue, tmp_path / "store", adapters, request_timeout_s=0.4, status_after_s=0.3)
    assert a.wait_connected(10)
    a.submit(order("T1", SLOW_SYMBOL, qty=7))
    time.sleep(0.1)
    (entry,) = [o for o in a.open_orders() if o.order_id == "T1"]
    assert entry.in_flight
    got = collect(a, filled({"T1"}), timeout=10)
    health = a.health()
    assert health.figure("timeouts") == 1
    assert health.figure("status_queries") >= 1
    assert health.figure("resent_after_unknown") == 0
    assert [r["outcome"] for r in venue.audit_orders("T1")] == ["NEW"]  # one POST reached it
    assert sum(f.last_qty for f in got if f.order_id == "T1") == 7
    time.sleep(3)  # the venue's late answer and its delayed stream pushes change nothing
    late = a.poll_reports()
    assert [f for f in late if f.order_id == "T1"] == []
    assert [r["outcome"] for r in venue.audit_orders("T1")] == ["NEW"]


def test_executions_missed_while_the_stream_was_cut_are_fetched_by_rest(
    rest_venue: FixVenue, tmp_path: Path, adapters: list[RestVenue]
) -> None:
    rest = rest_venue.rest
    assert rest is not None
    ws_proxy = TcpProxy(rest.ws_port or 0).start()
    try:
        settings = rest.client_settings(tmp_path / "store", fsync=False).model_copy(
            update={"ws_url": f"ws://127.0.0.1:{ws_proxy.port}/api/v1/stream"})
        a = RestVenue(settings)
        adapters.append(a)
        a.connect()
        assert a.wait_connected(10)
        a.submit(order("G0"))
        collect(a, filled({"G0"}))
        ws_proxy.stop()
        # orders placed while the stream is down, by another client of the same key: only the
        # stream (after its reconnect) and the gap query can tell the adapter about them
        for i in range(3):
            body = json.dumps({"clientOrderId": f"OTHER{i}", "symbol": "AAPL", "side": "BUY", "qty": "1"})
            assert rest.call("POST", "/api/v1/orders", body.encode())[0] == 201
        time.sleep(0.5)
        ws_proxy.start()
        last = rest.stats()["last_seq"]
        wait_until(lambda: a.health().figure("cursor") == last, "the cursor at the venue's last execution")
        health = a.health()
        assert health.figure("cursor") == last
        assert health.figure("gap_fetches") >= 1
        assert health.figure("unknown_executions") == 6  # 3 orders x (ack + fill of 1), not ours
        assert health.figure("stream_connects") >= 2
    finally:
        ws_proxy.stop()


def test_a_restarted_adapter_sends_nothing_twice_and_resolves_what_was_in_flight(
    rest_venue: FixVenue, tmp_path: Path, adapters: list[RestVenue]
) -> None:
    store = tmp_path / "store"
    first = adapter(rest_venue, store, adapters)
    orders = [order(f"RS{i}") for i in range(4)]
    for o in orders:
        first.submit(o)
    got = collect(first, filled({o.order_id for o in orders}))
    snap = first.snapshot()
    first.close()

    second = RestVenue(rest_venue.rest.client_settings(store, fsync=False))  # type: ignore[union-attr]
    adapters.append(second)
    second.restore(snap)
    second.connect()
    for o in orders:  # handed in again (a replay upstream): never a second POST
        second.submit(o)
    time.sleep(1.0)
    got += second.poll_reports()
    assert_once(rest_venue, got, orders)
    assert all(len(rest_venue.audit_orders(o.order_id)) == 1 for o in orders)


def test_an_order_cut_off_by_a_kill_is_booked_and_filled_on_restart(
    rest_venue: FixVenue,
) -> None:
    rest = rest_venue.rest
    assert rest is not None
    body = json.dumps({"clientOrderId": "J1", "symbol": "AAPL", "side": "BUY", "qty": "4"}).encode()
    assert rest.call("POST", "/api/v1/orders", body)[0] == 201
    rest_venue.kill()
    # the window a kill can hit: the NEW execution of J2 logged, the order journal not yet written
    instance = rest_venue.journal_path.read_text().split("\t")[1].split("=")[1]
    ghost = f"{instance}-99"
    line = {"execId": f"{ghost}-1", "clientOrderId": "J2", "orderId": ghost, "execType": "NEW",
            "status": "NEW", "symbol": "AAPL", "side": "SELL", "qty": "3", "type": "MARKET", "lastQty": "0",
            "lastPx": "0", "cumQty": "0", "leavesQty": "3", "avgPx": "0", "seq": 4, "apiKey": rest.api_key}
    with (rest_venue.store_dir / "rest-executions.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    rest_venue.start()
    status, answer = rest.call("GET", "/api/v1/orders/J2")
    assert status == 200
    assert answer["order"]["orderId"] == ghost
    # the kill cut J2 off before its fills: the venue fills the rest of the way (two slices), so
    # it is not left open forever; the new executions follow the logged ones without a gap
    assert answer["order"]["status"] == "FILLED"
    executions = answer["executions"]
    assert [(e["execType"], e["lastQty"], e["seq"]) for e in executions] == [
        ("NEW", "0", 4), ("TRADE", "1", 5), ("TRADE", "2", 6)]
    status, again = rest.call("POST", "/api/v1/orders", json.dumps(
        {"clientOrderId": "J2", "symbol": "AAPL", "side": "SELL", "qty": "3"}).encode())
    assert status == 200  # the same order, not a second one
    assert again["order"]["status"] == "FILLED"
    status, fresh = rest.call("POST", "/api/v1/orders", json.dumps(
        {"clientOrderId": "J3", "symbol": "AAPL", "side": "BUY", "qty": "1"}).encode())
    assert status == 201
    assert int(fresh["order"]["orderId"].rsplit("-", 1)[1]) > 99  # its id is never issued twice
    assert fresh["executions"][0]["seq"] == 7
