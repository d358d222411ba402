"""Settings of the REST/WebSocket venue adapter, frozen and strict.

They live under ``Settings.rest`` and so are read from ``TRADEFLOW_REST__<FIELD>``
(``TRADEFLOW_REST__BASE_URL``, ``TRADEFLOW_REST__SECRET_FILE``...); tests and tools build
``RestSettings(...)`` directly. The signing secret is a ``SecretStr`` (or a file holding
it), so it never shows in reprs or logs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.secrets import resolve_secret


class RestSettings(BaseModel):
    """Where the venue's HTTP API and user stream are, who we are, and how we pace and wait."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "http://127.0.0.1:8480"
    """The HTTP API's root; requests go to ``<base_url>/api/v1/...``."""
    ws_url: str = "ws://127.0.0.1:8481/api/v1/stream"
    """The WebSocket user stream (executions, numbered)."""
    api_key: str = Field(default="tradeflow", min_length=1)
    """Sent as ``X-API-Key``; also names the adapter's store directory."""
    secret: SecretStr | None = None
    """The HMAC secret of ``api_key`` (``TRADEFLOW_REST__SECRET``)."""
    secret_file: Path | None = None
    """File holding the secret (a mounted secret, ``TRADEFLOW_REST__SECRET_FILE``)."""
    request_timeout_s: float = Field(default=2.0, gt=0)
    """An order request not answered within this is IN_FLIGHT: resolved by a status query."""
    status_after_s: float = Field(default=0.5, gt=0)
    """An IN_FLIGHT order is asked about this long after it went (and again at this
    interval until it is known)."""
    unknown_resend_after_s: float = Field(default=5.0, gt=0)
    """An IN_FLIGHT order the venue still says it does not know this long after its
    request went is sent again with the same client order id (the venue is idempotent
    on it: the same order, never a second one)."""
    rate_limit_per_s: float = Field(default=50.0, gt=0)
    """Our own pace: requests per second to this venue (token bucket)."""
    rate_burst: int = Field(default=20, ge=1)
    """Requests that may go at once before the pace applies."""
    max_concurrent: int = Field(default=16, ge=1)
    """Requests in flight at once."""
    reconnect_initial_s: float = Field(default=0.2, gt=0)
    """First reconnect delay of the user stream; doubles up to ``reconnect_max_s``."""
    reconnect_max_s: float = Field(default=5.0, gt=0)
    """Largest reconnect delay."""
    pending_order_timeout_s: float = Field(default=30.0, gt=0)
    """An order that could not be sent at all (venue unreachable) for this long is rejected
    locally and never sent later."""
    store_dir: Path = Path("data/rest")
    """Directory of the adapter's store (order map, ExecIDs seen, report outbox, cursor)."""
    fsync: bool = True
    """Fsync store writes before the request goes (off only for tests and benchmarks)."""
    max_seen_exec_ids: int = Field(default=100_000, ge=1)
    """ExecIDs remembered (and persisted) for de-duplication."""

    @model_validator(mode="after")
    def _resolve(self) -> RestSettings:
        object.__setattr__(self, "secret", resolve_secret("secret", self.secret, self.secret_file))
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self

    @property
    def session_dir(self) -> Path:
        """Return the store directory of this API key."""
        return self.store_dir / self.api_key
