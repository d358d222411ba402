"""Seeded chaos on the whole pipeline (embedded store): SIGKILL any job, several at
once, and the feed writer, at random moments; restart each from recovery; compare
with an uncrashed run of the same market (tradeflow/chaos.py; bench/chaos.py runs
many more trials, on Kafka and Fluss too).

What a crash may never change, and these trials assert: the signals (Jobs A and B
are deterministic and drop replayed input), the decisions, validated orders, fills,
positions and cash (the pipeline runs in event-time mode, operators/eventtime.py), one
decision per signal, no id written twice to any stream, no two records with one id and
different contents, and every recorded decision reproduced exactly by folding Job C's
journal (``risk replay``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.settings import load_settings
from tradeflow import chaos

pytestmark = pytest.mark.recovery

MARKET = chaos.Market(ticks=1500, symbols=4, seed=5, speed=25.0)
TRIALS = 2


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> chaos.Collected:
    ref = chaos.run(load_settings(data_dir=tmp_path_factory.mktemp("reference")), MARKET, [])
    assert len(ref.records["trade_signals"]) > 50
    assert len(ref.records["venue_fills"]) > 50
    assert (ref.duplicate_ids, ref.contradictory_records, ref.undecided_signals) == (0, 0, 0)
    assert ref.replay_checked == len(ref.records["risk_decisions"])
    assert ref.replay_exact_pct == 100.0
    return ref


@pytest.mark.parametrize("n", range(TRIALS))
def test_random_kills_change_no_signal_and_break_no_guarantee(
    reference: chaos.Collected, tmp_path: Path, n: int
) -> None:
    result = chaos.trial(n, load_settings(data_dir=tmp_path), MARKET, reference, kills=3)
    assert len(result.kills) == 3
    assert result.duplicate_ids == 0
    assert result.contradictory_records == 0
    assert result.undecided_signals == 0
    assert result.replay_exact_pct == 100.0
    assert result.differences["trade_signals"] == 0, "a crash changed the signals"
    # Event time decides (operators/eventtime.py): the crashed run equals the uncrashed one.
    assert not result.has_diff, (result.differences, result.examples)
