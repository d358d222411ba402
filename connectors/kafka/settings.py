"""Settings of the ``kafka`` profile, owned by this backend.

They live under ``Settings.kafka`` (``connectors.settings``) and so are read from
``TRADEFLOW_KAFKA__<FIELD>``; tests and tools build ``KafkaSettings(...)`` directly.

Security (docs/security.md): with ``sasl_username`` set the clients authenticate with
SASL (``sasl_mechanism``: SCRAM-SHA-512 by default, or PLAIN) over TLS; with
``ssl_ca_location`` (or a client certificate) set they use TLS and verify the broker's
certificate against that CA and its host name. Every password is a ``SecretStr``
that can also come from a file (``TRADEFLOW_KAFKA__SASL_PASSWORD_FILE``, the
Docker/Kubernetes secrets convention; ``connectors.secrets``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from connectors.secrets import resolve_secret

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
SECRET_FIELDS = ("sasl_password", "ssl_key_password", "ssl_keystore_password")
"""The secret fields; each has a ``<name>_file`` twin."""


class KafkaSettings(BaseModel):
    """Kafka profile (env ``TRADEFLOW_KAFKA__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = 3
    security_protocol: SecurityProtocol | None = None
    """Left out: SASL_SSL with a username, SSL with a CA or client certificate, else
    PLAINTEXT. SASL_PLAINTEXT (credentials in the clear) must be asked for by name."""
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    """File holding the SASL password (a mounted secret); read once, instead of ``sasl_password``."""
    ssl_ca_location: Path | None = None
    """PEM file of the CA that signed the broker's certificate (else the system's CAs)."""
    ssl_certificate_location: Path | None = None
    """Client certificate (PEM), for brokers that ask for one; with ``ssl_key_location``."""
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None
    ssl_keystore_location: Path | None = None
    """Client certificate and key as one PKCS12 file (instead of the two PEM files)."""
    ssl_keystore_password: SecretStr | None = None
    ssl_keystore_password_file: Path | None = None

    @model_validator(mode="after")
    def _secrets_and_protocol(self) -> KafkaSettings:
        # Files are read here, once, so a missing secret fails at start-up, not at the
        # first connection.
        for name in SECRET_FIELDS:
            secret = resolve_secret(name, getattr(self, name), getattr(self, f"{name}_file"))
            object.__setattr__(self, name, secret)
        if self.sasl_username is not None and self.sasl_password is None:
            raise ValueError("sasl_username is set but neither sasl_password nor sasl_password_file")
        protocol = self.effective_protocol
        if protocol.startswith("SASL") and self.sasl_username is None:
            raise ValueError(f"security_protocol {protocol} needs sasl_username and a password")
        if self.ssl_certificate_location is not None and self.ssl_key_location is None:
            raise ValueError("ssl_certificate_location needs ssl_key_location")
        return self

    @property
    def tls(self) -> bool:
        """Tell whether any TLS setting is given."""
        return any(
            p is not None
            for p in (self.ssl_ca_location, self.ssl_certificate_location, self.ssl_keystore_location)
        )

    @property
    def effective_protocol(self) -> SecurityProtocol:
        """Return the security protocol the clients use."""
        if self.security_protocol is not None:
            return self.security_protocol
        if self.sasl_username is not None:
            return "SASL_SSL"
        return "SSL" if self.tls else "PLAINTEXT"


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """Return the environment that gives a child process these settings.

    ``TRADEFLOW_KAFKA`` holds every field but the secrets as JSON; a secret read from
    a file is passed as its file (the child reads it again), one given directly as its
    own variable (``TRADEFLOW_KAFKA__SASL_PASSWORD``): never in the JSON, which tools
    print.
    """
    env = {"TRADEFLOW_KAFKA": kafka.model_dump_json(exclude=set(SECRET_FIELDS))}
    for name in SECRET_FIELDS:
        secret: SecretStr | None = getattr(kafka, name)
        if secret is not None and getattr(kafka, f"{name}_file") is None:
            env[f"TRADEFLOW_KAFKA__{name.upper()}"] = secret.get_secret_value()
    return env
