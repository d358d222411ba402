"""Fixtures that start the real venue (deploy/fix-venue) with its REST/WebSocket API.

Each test gets its own data directory under pytest's tmp_path (venue log, journal,
execution log and audit log stay on disk after a failure). The venue is the same JVM
as the FIX tests', with ``FixVenue(rest=VenueRest(...))``. If it cannot be built or
started the fixture raises: the test errors, it is never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.venues.rest import RestVenue
from tradeflow.infra.fix_venue import FixVenue
from tradeflow.infra.rest_venue import VenueRest

REJECT_SYMBOL = "BADSYM"
RESTING_SYMBOL = "RESTME"
SLOW_SYMBOL = "SLOW"

VenueFactory = Callable[..., FixVenue]


@pytest.fixture
def rest_venue_factory(tmp_path: Path) -> Iterator[VenueFactory]:
    """Return a function that starts a venue with a REST API (``rest`` takes VenueRest's fields)."""
    venues: list[FixVenue] = []

    def make(rest: dict[str, Any] | None = None, **options: Any) -> FixVenue:
        options.setdefault("reject_symbols", (REJECT_SYMBOL,))
        options.setdefault("resting_symbols", (RESTING_SYMBOL,))
        venue = FixVenue(tmp_path / f"venue{len(venues)}", rest=VenueRest(**(rest or {})), **options)
        venues.append(venue)
        venue.start()
        return venue

    yield make
    for venue in venues:
        venue.stop()
        print(f"venue log: {venue.log_path}")


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
