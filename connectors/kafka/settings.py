"""Settings of the ``kafka`` profile, owned by this backend.

They live under ``Settings.kafka`` (``connectors.settings``) and so are read from
``TRADEFLOW_KAFKA__<FIELD>``; tests and tools build ``KafkaSettings(...)`` directly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr


class KafkaSettings(BaseModel):
    """Kafka profile (env ``TRADEFLOW_KAFKA__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = 3
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
