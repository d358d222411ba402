"""The REST adapter takes malformed venue answers and stream messages without raising.

No server: httpx2's MockTransport plays the HTTP API, the stream is fed by hand, and
the user stream's URL points at a closed port (it just keeps reconnecting).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx2
from pydantic import SecretStr

from connectors.rest.settings import RestSettings
from connectors.venues.rest import RestVenue
from schemas import ExecStatus, Side, ValidatedOrder
from tradeflow.infra.common import free_port

GOOD_ORDER = {"clientOrderId": "M1", "orderId": "V-1", "status": "FILLED"}
GOOD_EXECS = [
    {"seq": 1, "execId": "V-1-1", "clientOrderId": "M1", "orderId": "V-1", "execType": "NEW", "status": "NEW",
     "symbol": "AAPL", "side": "BUY", "qty": "5", "lastQty": "0", "lastPx": "0", "cumQty": "0",
     "leavesQty": "5", "avgPx": "0"},
    {"seq": 2, "execId": "V-1-2", "clientOrderId": "M1", "orderId": "V-1", "execType": "TRADE",
     "status": "FILLED", "symbol": "AAPL", "side": "BUY", "qty": "5", "lastQty": "5", "lastPx": "100",
     "cumQty": "5", "leavesQty": "0", "avgPx": "100"},
]


def adapter(tmp_path: Path, transport: httpx2.MockTransport) -> RestVenue:
    settings = RestSettings(
        base_url="http://127.0.0.1:1", ws_url=f"ws://127.0.0.1:{free_port()}/api/v1/stream",
        secret=SecretStr("k"), store_dir=tmp_path, fsync=False, status_after_s=0.1,
        reconnect_initial_s=0.5, reconnect_max_s=0.5,
    )
    a = RestVenue(settings, transport=transport)
    a.connect()
    return a


def order() -> ValidatedOrder:
    return ValidatedOrder(order_id="M1", account="A", symbol="AAPL", side=Side.BUY, qty=Decimal(5),
                          ts=datetime.now(UTC))


def wait(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_a_garbled_post_answer_is_counted_and_the_order_resolved_by_a_status_query(tmp_path: Path) -> None:
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.method)
        if request.method == "POST":
            return httpx2.Response(201, content=b"{not json")
        junk = [*GOOD_EXECS, "junk", {"seq": 3}]
        return httpx2.Response(200, json={"order": GOOD_ORDER, "executions": junk})

    a = adapter(tmp_path, httpx2.MockTransport(handler))
    try:
        a.submit(order())
        got: list[ExecStatus] = []
        assert wait(lambda: (got.extend(f.status for f in a.poll_reports()) or ExecStatus.FILLED in got))
        assert got == [ExecStatus.NEW, ExecStatus.FILLED]
        assert calls.count("POST") == 1  # asked about, never sent again
        assert calls.count("GET") >= 1
        assert a.health().figure("malformed") >= 2  # the POST answer, the junk execution(s)
    finally:
        a.close()


def test_garbage_on_the_user_stream_is_counted_never_raised(tmp_path: Path) -> None:
    a = adapter(tmp_path, httpx2.MockTransport(lambda r: httpx2.Response(500)))
    try:
        loop = a._loop
        assert loop is not None
        for raw in (b"\xff", "[]", "{}", json.dumps({"type": "execution", "seq": "x"}),
                    json.dumps({"type": "hello"}), json.dumps({"type": "execution", "seq": 1, "execId": 5})):
            asyncio.run_coroutine_threadsafe(a._on_stream(raw), loop).result(5)
        assert a.health().figure("malformed") == 5
        assert a.poll_reports() == []
    finally:
        a.close()
