"""Which data plane a stream lives on.

Its own module, with no imports of the backends, so a backend package can name a
profile at import time while ``connectors.settings`` (which composes the backends'
settings models) is still being imported.
"""

from __future__ import annotations

from enum import StrEnum


class Profile(StrEnum):
    """Which data plane the streams live on."""

    LOCAL = "local"
    KAFKA = "kafka"
    FLUSS = "fluss"
