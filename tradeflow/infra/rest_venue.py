"""The venue's REST/WebSocket order API: what ``FixVenue(rest=VenueRest(...))`` adds.

The same JVM and the same order book serve FIX and, with ``rest``, an HTTP order API
and a WebSocket user stream (``io.tradeflow.venue.RestApi`` and ``UserStream``; the API
is in deploy/fix-venue/README.md). Both listen on 127.0.0.1, each on a free port chosen
at the first start and kept across restarts. The signing secret goes to the venue in a
file of mode 0600.

``VenueRest.client_settings()`` returns the ``RestSettings`` an adapter needs, and
``VenueRest.call()`` makes one signed request (tests read ``/api/v1/stats``).
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from connectors.rest.settings import RestSettings
from connectors.rest.signing import signed_headers
from tradeflow.infra.common import free_port

HOST = "127.0.0.1"
SECRET_FILE = "rest.secret"  # noqa: S105 - a file name
STREAM_PATH = "/api/v1/stream"


@dataclass
class VenueRest:
    """Settings of the venue's REST API (see ``io.tradeflow.venue.RestConfig``)."""

    api_key: str = "tradeflow"
    secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    rate_limit: float = 0.0
    """Requests per second per API key above which the venue answers 429 (0: none)."""
    rate_burst: int = 10
    retry_after_s: int = 1
    delay_symbols: tuple[str, ...] = ()
    """Orders in these symbols are booked at once but answered after ``delay_ms``."""
    delay_ms: int = 0
    http_port: int | None = None
    ws_port: int | None = None

    def ensure_ports(self) -> None:
        """Pick the two ports on the first start (kept for restarts)."""
        if self.http_port is None:
            self.http_port = free_port()
        if self.ws_port is None:
            self.ws_port = free_port()

    @property
    def base_url(self) -> str:
        """Return the HTTP API's root."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """Return the user stream's URL."""
        return f"ws://{HOST}:{self.ws_port}{STREAM_PATH}"

    def settings(self, data_dir: Path) -> dict[str, str]:
        """Return the venue settings ([DEFAULT] keys) of the REST API."""
        self.ensure_ports()
        return {
            "RestBindAddress": HOST,
            "RestHttpPort": str(self.http_port),
            "RestWsPort": str(self.ws_port),
            "RestApiKey": self.api_key,
            "RestSecretFile": str(data_dir / SECRET_FILE),
            "RestRateLimit": str(self.rate_limit),
            "RestRateBurst": str(self.rate_burst),
            "RestRetryAfterS": str(self.retry_after_s),
            "RestDelaySymbols": ",".join(self.delay_symbols),
            "RestDelayMs": str(self.delay_ms),
        }

    def client_settings(self, store_dir: Path, **options: Any) -> RestSettings:
        """Return the ``RestSettings`` of an adapter talking to this API."""
        return RestSettings(
            base_url=self.base_url, ws_url=self.ws_url, api_key=self.api_key,
            secret=SecretStr(self.secret), store_dir=store_dir, **options,
        )

    def call(
        self, method: str, path: str, body: bytes = b"", *, secret: str | None = None
    ) -> tuple[int, Any]:
        """Make one signed request; return the status and the decoded JSON answer."""
        key = SecretStr(self.secret if secret is None else secret)
        headers = signed_headers(self.api_key, key, time.time_ns() // 1_000_000, method, path, body)
        req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.base_url + path, data=body or None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - http://127.0.0.1 only
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def stats(self) -> dict[str, int]:
        """Return the API's counters (requests, unauthorized, rate_limited, last_seq...)."""
        status, data = self.call("GET", "/api/v1/stats")
        if status != 200:
            raise RuntimeError(f"stats answered {status}: {data}")
        return dict(data)
