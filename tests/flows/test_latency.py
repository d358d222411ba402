"""``tradeflow latency`` on a run of the whole pipeline (A, B x2, C, D paper, embedded store), and
the write path's stamp (``flows.common.stamp_written``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from flows.common import stamp_written
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
    assert all(o.written_at is not None and o.entered_at is not None
               and o.entered_at <= o.written_at for o in orders if o.signal_id)

    capsys.readouterr()
    assert main(["latency", "--data-dir", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["hop", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
    table = {cells[0]: cells[1:] for cells in (line.split() for line in lines[1:])}
    assert list(table) == list(HOPS)
    for hop, (count, *figures) in table.items():
        assert int(count) > 0, hop
        assert all(float(v) >= 0 for v in figures), (hop, figures)


def test_written_stamps_only_carried_records_and_observes_their_latency() -> None:
    t0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    hist = Histogram("test_hop_latency_seconds", "test", registry=CollectorRegistry())
    carried = SmaWide(symbol="X", ts=t0, price=1.0, volume=1.0, entered_at=t0)
    plain = SmaWide(symbol="X", ts=t0, price=1.0, volume=1.0, seq=1)
    stamped = carried.model_copy(update={"seq": 2, "written_at": t0})
    items = [carried, plain, stamped]
    now = t0 + timedelta(milliseconds=25, microseconds=700)
    out = stamp_written(items, now, hist)
    assert out[0] == carried.model_copy(update={"written_at": t0 + timedelta(milliseconds=25)})
    assert out[1] is plain  # no entered_at: written as it is
    assert out[2] is stamped  # stamped already (a record written again): kept
    assert items == [carried, plain, stamped]  # the batch handed in is not changed
    samples = {s.name: s.value for s in hist.collect()[0].samples}
    assert samples["test_hop_latency_seconds_count"] == 1
    assert samples["test_hop_latency_seconds_sum"] == pytest.approx(0.0257)
    assert stamp_written([plain], now) == [plain]
