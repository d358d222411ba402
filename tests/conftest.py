"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.registry import Connectors
from tradeflow.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of the local profile with a fresh embedded store."""
    return load_settings(data_dir=tmp_path / "data", profile="local")


@pytest.fixture
def connectors(settings: Settings) -> Connectors:
    """The registry over the fresh embedded store."""
    return Connectors(settings)
