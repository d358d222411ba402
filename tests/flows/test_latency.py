"""``tradeflow latency`` on a run of the whole pipeline (A, B x2, C, D paper, embedded store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from operators.latency import HOPS
from schemas import MarketData, ValidatedOrder, VenueFill
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
