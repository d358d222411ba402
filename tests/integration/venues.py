"""Start real venues (deploy/fix-venue) in a test, each in its own directory, all stopped at the end.

The FIX tests and the REST tests start the same JVM (``FixVenue``, the REST ones with
``rest=VenueRest(...)``); their fixtures are this function with their own defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradeflow.infra.fix_venue import FixVenue

#: symbols the tests' venues treat specially
REJECT_SYMBOL = "BADSYM"
RESTING_SYMBOL = "RESTME"
DROP_ACK_SYMBOL = "LOSTACK"

VenueFactory = Callable[..., FixVenue]


@contextmanager
def venue_factory(
    tmp_path: Path, logs: Callable[[FixVenue], str], **defaults: Any
) -> Iterator[VenueFactory]:
    """Yield a function that starts a ``FixVenue`` with ``defaults`` and its own options.

    Every venue rejects ``REJECT_SYMBOL`` and leaves ``RESTING_SYMBOL`` orders resting
    unless told otherwise. Each gets a new directory under ``tmp_path`` (its logs stay
    after a failure). On the way out every venue started is stopped and ``logs(venue)``
    printed: where to look.
    """
    venues: list[FixVenue] = []
    special = {"reject_symbols": (REJECT_SYMBOL,), "resting_symbols": (RESTING_SYMBOL,)}

    def make(**options: Any) -> FixVenue:
        venue = FixVenue(tmp_path / f"venue{len(venues)}", **{**special, **defaults, **options})
        venues.append(venue)
        venue.start()
        return venue

    try:
        yield make
    finally:
        for venue in venues:
            venue.stop()
            print(logs(venue))
