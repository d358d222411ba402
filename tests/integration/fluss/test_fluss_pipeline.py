"""The whole pipeline (A, B x2, C, D paper) runs on a real Fluss cluster.

The test owns a database of its own on the shared session cluster: every table the
jobs create is fresh and only its own tables are waited for, so it does not depend on
what ran before it (the tablet-server restart tests, likewise, wait only for the
leaders of their own database). It was dropped once (4bd4c71) after a loaded CI run in
which a new table had "no leader for every bucket" and the restart test timed out
waiting for every bucket of every table on the cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from tests.integration.fluss.profiles import fluss_settings, unique_database
from tests.integration.scenarios import run_whole_pipeline
from tradeflow.infra.fluss import FlussCluster

pytestmark = pytest.mark.integration


def test_whole_pipeline_runs_on_fluss(fluss_cluster: FlussCluster, tmp_path: Path) -> None:
    database = unique_database("pipeline")
    settings = fluss_settings(fluss_cluster, tmp_path / "data", namespace=database)
    run_whole_pipeline(settings, SyntheticMarket(symbols=3, ticks=1500, seed=5))
