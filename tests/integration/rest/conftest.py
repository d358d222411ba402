"""Fixtures that start the real venue (deploy/fix-venue) with its REST/WebSocket API.

Each test gets its own data directory under pytest's tmp_path (venue log, journal,
execution log and audit log stay on disk after a failure). The venue is the same JVM
as the FIX tests', with ``FixVenue(rest=VenueRest(...))``. If it cannot be built or
started the fixture raises: the test errors, it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.venues.rest import RestVenue
from tests.integration.venues import REJECT_SYMBOL, RESTING_SYMBOL, VenueFactory, venue_factory
from tradeflow.infra.fix_venue import FixVenue
from tradeflow.infra.rest_venue import VenueRest

__all__ = ["REJECT_SYMBOL", "RESTING_SYMBOL", "SLOW_SYMBOL", "VenueFactory"]

SLOW_SYMBOL = "SLOW"


@pytest.fixture
def rest_venue_factory(tmp_path: Path) -> Iterator[VenueFactory]:
    """Return a function that starts a venue with a REST API (``rest`` takes VenueRest's fields)."""
    with venue_factory(tmp_path, lambda venue: f"venue log: {venue.log_path}") as start:

        def make(rest: dict[str, Any] | None = None, **options: Any) -> FixVenue:
            return start(rest=VenueRest(**(rest or {})), **options)

        yield make


@pytest.fixture
def rest_venue(rest_venue_factory: VenueFactory) -> FixVenue:
    """Return a started venue: two fills per order, BADSYM rejected, RESTME resting."""
    return rest_venue_factory(partial_fills=2)


@pytest.fixture
def adapters() -> Iterator[list[RestVenue]]:
    """Collect the adapters a test opens; each is closed at the end."""
    opened: list[RestVenue] = []
    yield opened
    for a in opened:
        a.close()
