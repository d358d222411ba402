"""Fixtures that start a real QuickFIX/J venue (deploy/fix-venue) per test.

Each test gets its own data directory (under pytest's tmp_path, so logs, the FIX
message logs, the journal and the audit log stay on disk after a failure) and thus
fresh sequence numbers. Starting costs about half a second once the jars are cached.
If the venue cannot be built or started the fixture raises: the test errors, it is
never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.venues import (
    DROP_ACK_SYMBOL,
    REJECT_SYMBOL,
    RESTING_SYMBOL,
    VenueFactory,
    venue_factory,
)
from tradeflow.infra.fix_venue import FixVenue

__all__ = ["DROP_ACK_SYMBOL", "REJECT_SYMBOL", "RESTING_SYMBOL", "VenueFactory"]


@pytest.fixture
def fix_venue_factory(tmp_path: Path) -> Iterator[VenueFactory]:
    """Return a function that starts a venue with the given FixVenue options."""
    with venue_factory(
        tmp_path,
        lambda venue: f"fix venue log: {venue.log_path} (messages under {venue.message_log_dir})",
        drop_ack_symbols=(DROP_ACK_SYMBOL,),
    ) as make:
        yield make


@pytest.fixture
def fix_venue(fix_venue_factory: VenueFactory) -> FixVenue:
    """Return a started venue: BADSYM rejected, RESTME resting, LOSTACK without acks."""
    return fix_venue_factory()
