"""Seeded chaos on the whole pipeline on a real Kafka broker: a crash writes no id twice.

Kafka keeps whatever it is sent, so a job restarted from its snapshot would leave what
it emits again twice in its topics; ``connectors.replays.ReplayFilterSink`` reads back
the ids each topic ends with when a sink starts and does not send them again. The
trial SIGKILLs jobs (several at once, the feed writer too) at seeded moments, as
tests/recovery/test_pipeline_chaos.py does on the embedded store; bench/chaos.py runs
more trials.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.kafka.profiles import kafka_settings
from tradeflow import chaos
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.recovery

MARKET = chaos.Market(ticks=1500, symbols=4, seed=5, speed=25.0)


def test_random_kills_on_kafka_write_no_id_twice(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    reference = chaos.run(kafka_settings(kafka_broker, tmp_path / "reference"), MARKET, [])
    assert len(reference.records["trade_signals"]) > 50
    # The uncrashed run is held to what the trial is: a flaw of its own would read as a
    # difference the crashes made (tests/recovery/test_pipeline_chaos.py checks the same).
    assert reference.duplicate_ids == reference.contradictory_records == reference.undecided_signals == 0
    assert reference.replay_exact_pct == 100.0
    result = chaos.trial(0, kafka_settings(kafka_broker, tmp_path / "trial"), MARKET, reference, kills=3)
    killed = {name for kill in result.kills for name in kill.names}
    assert len(killed) >= 3  # this seed kills Jobs A, B, C and D
    assert result.duplicate_ids == 0
    assert result.contradictory_records == 0
    assert result.undecided_signals == 0
    assert result.replay_exact_pct == 100.0
    assert result.differences["trade_signals"] == 0, "a crash changed the signals"
    assert not result.has_diff, (result.differences, result.examples)  # event time decides, on Kafka too
