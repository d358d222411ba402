"""The Fluss data plane in containers, as deploy/compose-fluss.yaml runs it (issue #18).

ZooKeeper, the coordinator and the tablet server run from the tradeflow-fluss image,
Job A from tradeflow-job-fluss; the one-shot feed service (tradeflow-tools) seeds the
tables and writes a paced synthetic market inside the compose network, and Job A is
SIGKILLed in the middle of it and started again. A client on the host then reads both
streams through the servers' CLIENT listener (127.0.0.1): market_data holds exactly the
seeded market, and every sma_wide row equals what Job A's IndicatorSet computes for
its tick (a row written twice after the kill is the same row). ``compose down -v``
leaves nothing behind. It never skips (the ``engine`` fixture, conftest.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from schemas import MarketData, SmaWide, decode
from tests.helpers import indicator_rows
from tradeflow.infra.containers import FLUSS_COMPOSE_FILE, Compose, DockerEngine
from tradeflow.infra.fluss import wait_for_cluster

pytestmark = pytest.mark.containers

MARKET = SyntheticMarket(symbols=3, ticks=2400, seed=31)
SPEED = 25.0
"""Event-time speed of the feed: the market spans ~400 s, so ~16 s of feeding."""


def rows(conn: Connectors, stream: str, model: type[Any]) -> list[Any]:
    return [decode(model, r.value) for r in conn.scan(stream)]


def by_key(conn: Connectors) -> dict[tuple[str, int], SmaWide]:
    """Job A's rows by ``(symbol, seq)``; a key written twice must hold the same row."""
    out: dict[tuple[str, int], SmaWide] = {}
    for row in rows(conn, "sma_wide", SmaWide):
        key = (row.symbol, row.seq)
        assert out.setdefault(key, row) == row, f"two different sma_wide rows for {key}"
    return out


def test_the_fluss_plane_and_job_a_run_in_containers(engine: DockerEngine, tmp_path: Path) -> None:
    compose = Compose(f"tfflusstest{int(time.time())}", file=FLUSS_COMPOSE_FILE, env={
        "TRADEFLOW_SEED_ARGS": f"--symbols {MARKET.symbols}",
        "TRADEFLOW_FEED_ARGS": f"--ticks {MARKET.ticks} --symbols {MARKET.symbols} --seed {MARKET.seed} "
                               f"--speed {SPEED}",
    })
    host = load_settings(profile="fluss", data_dir=tmp_path / "host", fluss={"bootstrap": "127.0.0.1:29123"})
    try:
        compose.up()
        wait_for_cluster("127.0.0.1:29123", 180)  # through the CLIENT listener
        feeder = compose.start_run("feed")
        conn = Connectors(host)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(by_key(conn)) < 300:
            time.sleep(1)
        written_before_kill = len(by_key(conn))
        compose.kill("indicators")
        time.sleep(2)
        compose.start("indicators")
        out, _ = feeder.communicate(timeout=300)
        assert feeder.returncode == 0, out.decode()[-3000:]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(by_key(conn)) < MARKET.ticks:
            time.sleep(1)
        ticks = rows(conn, "market_data", MarketData)
        computed = by_key(conn)
        logs = compose.logs()
    finally:
        compose.down()
    assert compose.running() == []  # down -v leaves nothing
    assert 300 <= written_before_kill < MARKET.ticks, "Job A was not killed mid-stream"
    market = list(MARKET)
    fields = ("symbol", "ts", "price", "volume")
    assert sorted(tuple(getattr(t, f) for f in fields) for t in ticks) == sorted(
        tuple(getattr(t, f) for f in fields) for t in market
    )
    expected = {(r.symbol, r.seq): r for r in indicator_rows(market)}
    assert computed.keys() == expected.keys()
    stamp = {"entered_at"}  # the feed's wall-clock stamp (README "Latency"): checked below
    wrong = [k for k, r in computed.items()
             if r.model_dump(exclude=stamp) != expected[k].model_dump(exclude=stamp)]
    assert wrong == []
    entered = {(t.symbol, t.ts): t.entered_at for t in ticks}
    assert all(t.entered_at is not None for t in ticks)  # the feed stamps every tick
    assert [k for k, r in computed.items() if r.entered_at != entered[(r.symbol, r.ts)]] == []  # carried
    assert "Traceback" not in logs
