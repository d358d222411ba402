"""The Docker engine and the images, once for every container test.

The fixture starts Debian's dockerd when none answers (root) and stops it again; it
builds every image from the debootstrap base first (tradeflow.infra.images). .ci/run
installs docker.io, docker-compose and debootstrap. Container tests never skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tradeflow.infra.containers import DockerEngine
from tradeflow.infra.images import build_all, default_pip_cert


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    eng = DockerEngine(tmp_path_factory.mktemp("dockerd") / "dockerd.log").ensure()
    try:
        build_all(pip_cert=default_pip_cert())
        yield eng
    finally:
        eng.stop()
