"""The hostile-input corpus (tests/hostile.py) against the whole pipeline on a real Kafka broker.

The same classes as on the embedded store, written as raw bytes into the topics. The
oversized records are over the stream's 64 KiB limit and under the broker's 1 MB, so
it is the jobs' own size check that refuses them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from tests.hostile import check_hostile, run_hostile
from tests.integration.kafka.profiles import kafka_settings
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def test_every_hostile_class_ends_where_it_should_on_kafka(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    run = run_hostile(settings, list(SyntheticMarket(symbols=3, ticks=600, seed=11)))
    check_hostile(run)
