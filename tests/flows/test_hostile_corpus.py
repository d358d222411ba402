"""The hostile-input corpus (tests/hostile.py) against the whole pipeline on the embedded store."""

from __future__ import annotations

from pathlib import Path

from connectors.feeds import SyntheticMarket
from connectors.settings import load_settings
from tests.hostile import check_hostile, corpus, run_hostile


def test_corpus_has_at_least_thirty_classes_and_each_says_where_it_ends() -> None:
    classes = corpus(list(SyntheticMarket(symbols=3, ticks=600, seed=11)))
    assert len({h.name for h in classes}) == len(classes) >= 30
    assert all(h.dead or h.fails or h.event or "first copy" in h.name for h in classes)
    assert {h.stream for h in classes} >= {
        "market_data", "trade_signals", "control", "accounts", "instruments", "symbol_limits", "routes",
        "strategy_config", "sma_wide", "validated_orders", "venue_fills",
    }


def test_every_hostile_class_ends_where_it_should_and_no_job_stops(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    run = run_hostile(settings, list(SyntheticMarket(symbols=3, ticks=600, seed=11)))
    check_hostile(run)
