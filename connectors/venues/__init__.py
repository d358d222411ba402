"""Venue adapters and the factory that picks one by name.

``make_venue("paper", latency_ms=5)``, ``make_venue("fix", settings=FixSettings(...))``
or ``make_venue("rest", settings=RestSettings(...))`` (or the settings' fields as
options). More venues register with ``register_venue``; adapters are imported only
when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from connectors.settings import Settings
from connectors.venues.base import VenueAdapter, VenueError, VenueHealth, VenueOrder

VenueFactory = Callable[..., VenueAdapter]


def _paper(**options: Any) -> VenueAdapter:
    from connectors.venues.paper import PaperVenue

    return PaperVenue(**options)


def _fix(**options: Any) -> VenueAdapter:
    from connectors.fix.settings import FixSettings
    from connectors.venues.fix import FixVenue

    settings, adapter_opts = _settings_and_options(FixSettings, options, ("name", "clock"))
    return FixVenue(settings, **adapter_opts)


def _rest(**options: Any) -> VenueAdapter:
    from connectors.rest.settings import RestSettings
    from connectors.venues.rest import RestVenue

    settings, adapter_opts = _settings_and_options(RestSettings, options, ("name", "transport"))
    return RestVenue(settings, **adapter_opts)


M = TypeVar("M", bound=BaseModel)


def _settings_and_options(
    model: type[M], options: dict[str, Any], adapter_keys: tuple[str, ...]
) -> tuple[M, dict[str, Any]]:
    # The adapter's settings (whole as settings=, or as their fields, never both) and its own options.
    settings = options.pop("settings", None)
    adapter_opts = {k: options.pop(k) for k in adapter_keys if k in options}
    if settings is None:
        settings = model(**options)
    elif options:
        raise VenueError(f"pass {model.__name__} or its fields, not both: {sorted(options)}")
    return settings, adapter_opts


VENUES: dict[str, VenueFactory] = {"paper": _paper, "fix": _fix, "rest": _rest}
"""Factories by venue name; ``register_venue`` adds more."""


def register_venue(name: str, factory: VenueFactory) -> None:
    """Register (or replace) the factory of a venue name."""
    VENUES[name] = factory


def venue_from_settings(settings: Settings) -> VenueAdapter:
    """Build the venue adapter the settings name (``execution.venue``), not yet connected."""
    ex = settings.execution
    if ex.venue == "paper":
        return make_venue(
            "paper", latency_ms=ex.paper_latency_ms, fill_fraction=ex.paper_fill_fraction,
            fee_bps=ex.paper_fee_bps, history_ticks=ex.paper_history_ticks, name=ex.served_venue,
        )
    if ex.venue == "rest":
        rest = settings.rest
        if rest.store_dir == Path("data/rest"):  # the default: keep the REST store with the data
            rest = rest.model_copy(update={"store_dir": settings.data_dir / "rest"})
        return make_venue("rest", settings=rest, name=ex.served_venue)
    fix = settings.fix
    if fix.store_dir == Path("data/fix"):  # the default: keep the FIX store with the data
        fix = fix.model_copy(update={"store_dir": settings.data_dir / "fix"})
    return make_venue(ex.venue, settings=fix, name=ex.served_venue)


def make_venue(name: str, /, **options: Any) -> VenueAdapter:
    """Build the adapter registered as ``name`` with its options (not yet connected)."""
    try:
        factory = VENUES[name]
    except KeyError:
        raise VenueError(f"unknown venue {name!r}; known: {sorted(VENUES)}") from None
    return factory(**options)


__all__ = [
    "VENUES",
    "VenueAdapter",
    "VenueError",
    "VenueFactory",
    "VenueHealth",
    "VenueOrder",
    "make_venue",
    "venue_from_settings",
    "register_venue",
]
