"""The whole system in containers, as deploy/compose.yaml runs it (issue #18).

Builds every image from a debootstrap base (no registry), starts Kafka, the QuickFIX/J
venue and every job (2 shards each) with docker-compose, replays a market file through
the one-shot feed service, SIGKILLs a Job C container mid-stream and starts it again.
Then: every order Job C passed reached the venue exactly once (the venue's audit log),
and the positions Job C keeps equal what the venue executed for each account. ``compose
down -v`` leaves nothing behind.

Not asserted: positions equal to an embedded-store run of the same file. Which signals
pass depends on how Job C's inputs interleave in time (issue #12), and a paced run in
containers interleaves them differently from an unpaced one on the embedded store.

Needs a Docker engine: the ``engine`` fixture (conftest.py) starts Debian's dockerd when
none answers (root) and builds the images. It never skips.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket, read_frame
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from schemas import OrderAction, PositionState, RiskDecision, TradeSignal, ValidatedOrder, decode
from tradeflow.infra.containers import Compose, DockerEngine

pytestmark = pytest.mark.containers

SYMBOLS, TICKS = 4, 3000
RUN_S = 25.0
"""How long the paced feed lasts: Job C is killed in its middle."""


def market_file(directory: Path) -> Path:
    path = directory / "ticks.csv"
    lines = ["time,symbol,price,volume"]
    lines += [f"{t.ts.isoformat()},{t.symbol},{t.price},{t.volume}"
              for t in SyntheticMarket(symbols=SYMBOLS, ticks=TICKS, seed=23)]
    path.write_text("\n".join(lines) + "\n")
    return path


def host_settings(data_dir: Path) -> Settings:
    return load_settings(profile="kafka", data_dir=data_dir, kafka={"bootstrap": "127.0.0.1:29092"})


def records(conn: Connectors, stream: str, model: type) -> list:
    return [decode(model, r.value) for r in conn.scan(stream)]


def wait_drained(conn: Connectors, timeout: float = 240.0) -> None:
    """Until every signal is decided and the outputs stop changing for 5 s."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        sizes = tuple(conn.size(s) for s in ("sma_wide", "risk_decisions", "validated_orders", "venue_fills"))
        signals = {s.signal_id for s in records(conn, "trade_signals", TradeSignal)}
        decided = {d.signal_id for d in records(conn, "risk_decisions", RiskDecision)}
        if sizes != last:
            last, since = sizes, time.monotonic()
        if signals and signals <= decided and time.monotonic() - since >= 5:
            return
        time.sleep(1)
    pytest.fail(f"the containers did not drain in {timeout:.0f}s: {last}")


def positions(conn: Connectors) -> dict[tuple[str, str], Decimal]:
    latest: dict[tuple[str, str], Decimal] = {}
    for p in records(conn, "positions_state", PositionState):
        latest[(p.account, p.symbol)] = p.net_qty
    return {k: v for k, v in latest.items() if v}


def new_orders(conn: Connectors) -> list[str]:
    """The NEW orders' ids, each once. A Job C restarted on Kafka may write an order again;
    a copy must be the same record (docs/kafka.md: de-duplication at every consumer)."""
    copies: dict[str, set[str]] = {}
    for o in records(conn, "validated_orders", ValidatedOrder):
        if o.action is OrderAction.NEW:
            copies.setdefault(o.order_id, set()).add(o.model_dump_json())
    assert all(len(c) == 1 for c in copies.values()), "two different orders under one id"
    return list(copies)


def test_the_system_runs_in_containers_and_survives_a_job_c_kill(
    engine: DockerEngine, tmp_path: Path
) -> None:
    market_dir = tmp_path / "market"
    market_dir.mkdir()
    market = market_file(market_dir)
    frame = read_frame(market)
    span_s = (frame["time"].max() - frame["time"].min()).total_seconds()
    compose = Compose(f"tfctest{int(time.time())}", env={
        "TRADEFLOW_MARKET_DIR": str(market_dir),
        "TRADEFLOW_SEED_ARGS": "--input /market/ticks.csv",
        "TRADEFLOW_FEED_ARGS": f"--input /market/ticks.csv --speed {span_s / RUN_S:.3f}",
    })
    try:
        compose.up()
        conn = Connectors(host_settings(tmp_path / "host"))
        feeder = compose.start_run("feed")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and conn.size("risk_decisions") < 20:
            time.sleep(0.5)
        decided_before_kill = conn.size("risk_decisions")
        compose.kill("portfolio-risk-0")
        time.sleep(3)
        compose.start("portfolio-risk-0")
        out, _ = feeder.communicate(timeout=300)
        assert feeder.returncode == 0, out.decode()[-3000:]
        wait_drained(conn)

        orders = new_orders(conn)
        audit = compose.exec("venue", "cat", "/home/server/venue/audit.jsonl")
        at_venue = [o["cl_ord_id"] for o in map(json.loads, filter(str.strip, audit.splitlines()))
                    if o["accepted"]]
        got = positions(conn)
        sides = {o.order_id: (o.account, o.symbol) for o in records(conn, "validated_orders", ValidatedOrder)}
        logs = compose.logs()
    finally:
        compose.down()
    assert compose.running() == []  # down -v leaves nothing
    assert decided_before_kill >= 20
    assert orders, "no order passed"
    assert sorted(at_venue) == sorted(orders)  # every passed order at the venue, exactly once
    assert "Traceback" not in logs
    executed: dict[tuple[str, str], Decimal] = {}
    for o in map(json.loads, filter(str.strip, audit.splitlines())):
        if o["accepted"] and o["outcome"] == "NEW":  # the venue fills every booked order in full
            key = sides[o["cl_ord_id"]]
            signed = Decimal(o["qty"]) * (1 if o["side"] == "1" else -1)
            executed[key] = executed.get(key, Decimal(0)) + signed
    assert got == {k: v for k, v in executed.items() if v}
