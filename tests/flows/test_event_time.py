"""Two unpaced runs of the whole pipeline over one market decide the same (event-time mode).

``tradeflow demo --speed 0`` (``run_pipeline(speed=None)``) is a backtest: the feed and
Jobs B and D write progress rows and Job C applies each account's inputs in event-time
order (operators/eventtime.py), so the timing of the processes, which differs from run
to run, cannot change a decision, an order, a fill or a position.
"""

from __future__ import annotations

from pathlib import Path

from connectors.feeds import SyntheticMarket
from connectors.settings import load_settings
from tradeflow import chaos
from tradeflow.pipeline import run_pipeline

MARKET = SyntheticMarket(symbols=4, ticks=2000, seed=11)


def unpaced_run(data_dir: Path) -> chaos.Collected:
    settings = load_settings(data_dir=data_dir)
    run_pipeline(settings, iter(MARKET), MARKET.ticks, MARKET.symbol_names(), speed=None, progress=False)
    return chaos.collect(settings)


def test_two_unpaced_runs_give_identical_decisions_orders_fills_and_positions(tmp_path: Path) -> None:
    first, second = unpaced_run(tmp_path / "one"), unpaced_run(tmp_path / "two")
    assert len(first.records["risk_decisions"]) > 50
    assert len(first.records["venue_fills"]) > 50
    assert first.tables["positions_state"]
    for run in (first, second):
        assert (run.duplicate_ids, run.contradictory_records, run.undecided_signals) == (0, 0, 0)
        assert run.replay_exact_pct == 100.0
    assert chaos.compare(second, first) == dict.fromkeys([*chaos.COMPARED, *chaos.TABLES], 0)
