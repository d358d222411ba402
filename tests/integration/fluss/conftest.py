"""Fixtures for tests against a real Fluss cluster (see tradeflow.infra.fluss)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tradeflow.infra.fluss import FlussCluster


@pytest.fixture(scope="session")
def fluss_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlussCluster]:
    """One real Fluss cluster (ZooKeeper, coordinator, tablet server) for the session.

    Its data and logs stay under pytest's tmp dir. If it cannot start, this fixture
    raises (the tests error); it never skips: a missing Java/Maven, a broken pom or a
    missing pyfluss must be seen, not hidden. The cluster is always stopped.
    """
    cluster = FlussCluster(tmp_path_factory.mktemp("fluss"), buckets=2)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
