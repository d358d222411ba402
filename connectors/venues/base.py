"""The venue adapter interface, as the adapters in this package import it.

The interface itself (``VenueAdapter``, ``VenueOrder``, ``VenueHealth``) is defined in
``operators.venue``, next to the execution engine written against it; see its table of
required and optional methods.
"""

from __future__ import annotations

from operators.venue import VenueAdapter, VenueFinding, VenueHealth, VenueOrder


class VenueError(RuntimeError):
    """A venue adapter is misconfigured or was used out of order."""


__all__ = ["VenueAdapter", "VenueError", "VenueFinding", "VenueHealth", "VenueOrder"]
