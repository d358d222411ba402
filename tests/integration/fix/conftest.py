"""Fixtures that start a real QuickFIX/J venue (deploy/fix-venue) per test.

Each test gets its own data directory (under pytest's tmp_path, so logs, the FIX
message logs, the journal and the audit log stay on disk after a failure) and thus
fresh sequence numbers. Starting costs about half a second once the jars are cached.
If the venue cannot be built or started the fixture raises: the test errors, it is
never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tradeflow.infra.fix_venue import FixVenue

#: symbols the default venue treats specially
REJECT_SYMBOL = "BADSYM"
RESTING_SYMBOL = "RESTME"
DROP_ACK_SYMBOL = "LOSTACK"

VenueFactory = Callable[..., FixVenue]


@pytest.fixture
def fix_venue_factory(tmp_path: Path) -> Iterator[VenueFactory]:
    """Return a function that starts a venue with the given FixVenue options."""
    venues: list[FixVenue] = []

    def make(**options: Any) -> FixVenue:
        options.setdefault("reject_symbols", (REJECT_SYMBOL,))
        options.setdefault("resting_symbols", (RESTING_SYMBOL,))
        options.setdefault("drop_ack_symbols", (DROP_ACK_SYMBOL,))
        venue = FixVenue(tmp_path / f"venue{len(venues)}", **options)
        venues.append(venue)
        venue.start()
        return venue

    yield make
    for venue in venues:
        venue.stop()
        print(f"fix venue log: {venue.log_path} (messages under {venue.message_log_dir})")


@pytest.fixture
def fix_venue(fix_venue_factory: VenueFactory) -> FixVenue:
    """Return a started venue: BADSYM rejected, RESTME resting, LOSTACK without acks."""
    return fix_venue_factory()
