"""Who may change a control, as pure functions (the app calls them; tests call them too).

- Reading is open: the console binds 127.0.0.1 unless told otherwise, and then only
  with a token set (``check_bind``).
- A control change needs the console's token in the ``X-Console-Token`` header
  (missing: 401, wrong: 403), compared in constant time.
- And it needs the CSRF token of the page it came from: the page is served with a
  random token in a ``SameSite=Strict`` cookie and in a ``<meta>`` tag, and the request
  must carry the same value in ``X-CSRF-Token`` (double submit; a page of another site
  can neither read the cookie nor the meta tag). A request whose ``Origin`` names
  another host is refused as well.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN_HEADER = "x-console-token"  # noqa: S105 - a header name, not a secret
CSRF_HEADER = "x-csrf-token"
CSRF_COOKIE = "tf_csrf"


class ConsoleError(RuntimeError):
    """The console cannot start as asked (printed as ``error: ...``)."""


@dataclass(frozen=True)
class Refusal:
    """Why a control change is refused: the HTTP status and a message for the operator."""

    status: int
    reason: str


def new_token() -> str:
    """Return a fresh random token (for the console token or a page's CSRF token)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token_configured: bool) -> None:
    """Refuse to serve on a non-loopback address unless a token was set in the settings."""
    if not is_loopback(host) and not token_configured:
        raise ConsoleError(
            f"refusing to bind {host}: the console binds other addresses than loopback only with a "
            "token set (TRADEFLOW_CONSOLE__TOKEN), never with one made at start-up"
        )


def check_write(
    *, token: str, given_token: str | None, csrf_header: str | None, csrf_cookie: str | None,
    origin: str | None, host: str | None,
) -> Refusal | None:
    """Return why a control change must be refused, or None when it may go through."""
    if not given_token:
        return Refusal(401, f"a control change needs the console token in the {TOKEN_HEADER} header")
    if not hmac.compare_digest(given_token.encode(), token.encode()):
        return Refusal(403, "wrong console token")
    if not csrf_header or not csrf_cookie or not hmac.compare_digest(csrf_header.encode(),
                                                                     csrf_cookie.encode()):
        return Refusal(403, "missing or wrong CSRF token: reload the console page and try again")
    if origin and origin != "null" and host and urlsplit(origin).netloc != host:
        return Refusal(403, f"cross-origin request from {origin} refused")
    return None
