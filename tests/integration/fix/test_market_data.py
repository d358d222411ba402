"""``tradeflow feed --fix`` against the real venue: every published trade in market_data once.

The venue (deploy/fix-venue, started by the ``fix_venue_factory`` fixture) publishes
trades for ``TRADEFLOW_TEST_MD_SECONDS`` (default 20; issue #15 asks for 60) and logs
each one to ``md-published.jsonl``; every 97th is left out of the incrementals, so
the feed must repair gaps from snapshots. The feed runs as its own process through a
TCP proxy. In the middle the network is cut (the proxy drops both ends; the session
is lost and reconnects) and later the feed process is SIGKILLed and started again
(it resumes from its state file). At the end every published trade is in market_data
exactly once, with the venue's price, size and time; the watermark never moves back,
and only a repaired gap's trade can be behind it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from connectors.registry import Connectors
from schemas import DeadLetter, MarketData, decode
from tests.integration.fix.conftest import VenueFactory
from tests.integration.rest.proxy import TcpProxy
from tests.recovery.procs import env_for, start
from tradeflow.infra.fix_venue import FixVenue, VenueMarketData
from tradeflow.settings import load_settings

SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")
RATE = 40.0
"""Trades per second over all symbols."""
DROP_EVERY = 97


class CuttingProxy(TcpProxy):
    """``TcpProxy`` whose cut also wakes the threads piping through it.

    A socket closed while another thread is blocked in ``recv`` on it stays open until
    that ``recv`` returns, so a FIX session idle between messages would not notice the
    cut; a shutdown first ends those reads, then the close resets the connections.
    """

    def stop(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        super().stop()


def _seconds() -> float:
    return float(os.environ.get("TRADEFLOW_TEST_MD_SECONDS", "20"))


def _feed(data_dir: Path, venue: FixVenue, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = env_for(
        data_dir,
        TRADEFLOW_FIX__HOST=venue.host,
        TRADEFLOW_FIX__PORT=str(port),
        TRADEFLOW_FIX__TARGET_COMP_ID=venue.sender_comp_id,
        TRADEFLOW_FIX__RECONNECT_MAX_S="1.0",
        TRADEFLOW_FIX__FSYNC="false",
    )
    args = ["-m", "tradeflow", "feed", "--fix", "--fix-symbols", ",".join(SYMBOLS),
            "--fix-comp-id", venue.md_comp_id, "--fix-reconnect-s", "0.2"]
    return start(args, env, log)


def _stored(conn: Connectors) -> list[MarketData]:
    return [decode(MarketData, rec.value) for rec in conn.scan("market_data")]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_feed_fix_writes_every_published_trade_once_across_a_cut_and_a_kill(
    fix_venue_factory: VenueFactory, tmp_path: Path
) -> None:
    seconds = _seconds()
    total = int(RATE * seconds)
    market_data = VenueMarketData(SYMBOLS, rate=RATE, max_ticks=total, drop_every=DROP_EVERY)
    venue = fix_venue_factory(market_data=market_data)
    proxy = CuttingProxy(venue.port).start()
    data_dir = tmp_path / "feed"
    conn = Connectors(load_settings(data_dir=data_dir, profile="local"))
    log = tmp_path / "feed.log"
    proc = _feed(data_dir, venue, proxy.port, log)
    started = time.monotonic()
    try:
        # a third of the way: cut the network for 1.5 s (the session is lost, then back)
        time.sleep(seconds / 3)
        assert proc.poll() is None, log.read_text()[-3000:]
        before_cut = len(_stored(conn))
        proxy.stop()
        time.sleep(1.5)
        proxy.start()
        # two thirds: SIGKILL the feed and start it again (it resumes from its state)
        time.sleep(max(0.0, started + 2 * seconds / 3 - time.monotonic()))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        before_kill = len(_stored(conn))
        proc = _feed(data_dir, venue, proxy.port, log)
        # until the venue has published everything and the feed has caught up
        deadline = time.monotonic() + seconds + 60
        published: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            published = venue.published_ticks()
            if len(published) >= total and len(_stored(conn)) >= total:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(1.0)  # anything written twice would show up by now
    finally:
        _stop(proc)
        proxy.stop()
    print(log.read_text()[-2000:])

    published = venue.published_ticks()
    stored = _stored(conn)
    assert len(published) == total
    assert sum(1 for p in published if not p["sent"]) == total // DROP_EVERY  # gaps were made
    assert 0 < before_cut < before_kill < total
    counts = Counter((t.symbol, t.seq) for t in stored)
    twice = {k: c for k, c in counts.items() if c > 1}
    assert not twice, f"written more than once: {sorted(twice)[:10]}"
    want = {(str(p["symbol"]), int(str(p["seq"]))): p for p in published}
    missing = sorted(set(want) - set(counts))
    assert not missing, f"{len(missing)} published trades not in market_data: {missing[:10]}"
    assert set(counts) == set(want)
    for tick in stored:
        p = want[(tick.symbol, tick.seq or 0)]
        assert tick.price == Decimal(str(p["price"]))
        assert tick.volume == Decimal(str(p["size"]))
        assert tick.ts == datetime.fromisoformat(str(p["ts"]).replace("Z", "+00:00"))
    # the watermark, in write order (per partition): never moves back, and no tick is
    # behind it, except a trade the venue left out of the incrementals: its gap shows only
    # at the symbol's next trade, and other symbols' ticks may have moved the watermark
    # past it by then (the feed's --lateness-ms is what covers that)
    dropped = {(str(p["symbol"]), int(str(p["seq"]))) for p in published if not p["sent"]}
    late: set[tuple[str, int]] = set()
    by_partition: dict[int, list[MarketData]] = {}
    for rec in conn.scan("market_data"):
        by_partition.setdefault(rec.partition, []).append(decode(MarketData, rec.value))
    for ticks in by_partition.values():
        wm = None
        for tick in ticks:
            if wm is not None:
                assert tick.wm is not None
                assert tick.wm >= wm
                if tick.ts < wm:
                    late.add((tick.symbol, tick.seq or 0))
            wm = tick.wm if tick.wm is not None else wm
    assert late <= dropped, f"behind the watermark and not a repaired gap: {sorted(late - dropped)[:10]}"
    # three logons: the first, after the cut, after the kill
    logons = venue.log_path.read_text().count(f"logon FIX.4.4:{venue.sender_comp_id}->{venue.md_comp_id}")
    assert logons == 3
    dead = [decode(DeadLetter, rec.value) for rec in conn.scan("dead_letters")]
    assert [d.reason for d in dead] == []
