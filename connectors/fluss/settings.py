"""Settings of the ``fluss`` profile, owned by this backend.

They live under ``Settings.fluss`` (``connectors.settings``) and so are read from
``TRADEFLOW_FLUSS__<FIELD>``; tests and tools build ``FlussSettings(...)`` directly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FlussSettings(BaseModel):
    """Fluss profile (env ``TRADEFLOW_FLUSS__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str = "127.0.0.1:9123"
    database: str = "tradeflow"
    buckets: int = 3
    lookup_cache_ttl_s: float = 1.0
