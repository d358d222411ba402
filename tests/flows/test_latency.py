"""``tradeflow latency`` on a run of the whole pipeline (A, B x2, C, D paper, embedded store), and
the write path's latency histogram (``flows.common.observe_latency``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.common import observe_latency
from operators.latency import HOPS
from schemas import MarketData, SmaWide, ValidatedOrder, VenueFill
from tests.helpers import read_all
from tradeflow.cli import main
from tradeflow.pipeline import run_pipeline


def test_latency_reports_every_hop_of_a_demo_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    market = SyntheticMarket(symbols=4, ticks=2000, seed=5)
    run_pipeline(settings, iter(market), 2000, market.symbol_names(), speed=None, progress=False)

    conn = Connectors(settings)
    ticks = [t for t in read_all(conn, "market_data") if isinstance(t, MarketData)]
    assert ticks
    assert all(t.entered_at is not None for t in ticks)  # the feed stamps every tick
    orders = [o for o in read_all(conn, "validated_orders") if isinstance(o, ValidatedOrder)]
    fills = [f for f in read_all(conn, "venue_fills") if isinstance(f, VenueFill)]
    assert orders
    assert fills
    assert all(o.entered_at is not None for o in orders if o.signal_id)
    written = [r for r in conn.reader("validated_orders").read(0, 0, 10_000)]
    assert written
    assert all(r.written_at is not None for r in written)  # the store's append time

    capsys.readouterr()
    assert main(["latency", "--data-dir", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["hop", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
    table = {cells[0]: cells[1:] for cells in (line.split() for line in lines[1:])}
    assert list(table) == list(HOPS)
    for hop, (count, *figures) in table.items():
        assert int(count) > 0, hop
        assert all(float(v) >= 0 for v in figures), (hop, figures)


def test_the_write_path_observes_the_latency_of_carried_records_and_changes_none() -> None:
    t0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    hist = Histogram("test_hop_latency_seconds", "test", registry=CollectorRegistry())
    carried = SmaWide(symbol="X", ts=t0, price=1.0, volume=1.0, entered_at=t0)
    plain = SmaWide(symbol="X", ts=t0, price=1.0, volume=1.0, seq=1)
    items = [carried, plain]
    observe_latency(items, t0 + timedelta(milliseconds=25, microseconds=700), hist)
    assert items == [carried, plain]
    assert carried.model_fields_set == {"symbol", "ts", "price", "volume", "entered_at"}
    samples = {s.name: s.value for s in hist.collect()[0].samples}
    assert samples["test_hop_latency_seconds_count"] == 1
    assert samples["test_hop_latency_seconds_sum"] == pytest.approx(0.0257)
