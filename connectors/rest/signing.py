r"""Request signing: HMAC-SHA256 over timestamp, method, path (with query) and body.

The string signed is ``f"{ts}\n{METHOD}\n{path_and_query}\n{body}"`` with ``ts`` the
epoch milliseconds also sent as ``X-Timestamp``; the hex digest goes in ``X-Signature``
and the key in ``X-API-Key``. The venue (deploy/fix-venue ``RestApi``) computes the same
and answers 401 to any mismatch, unknown key or timestamp outside its receive window.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

API_KEY_HEADER = "X-API-Key"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"


def payload(ts_ms: int, method: str, path_and_query: str, body: bytes | str) -> bytes:
    """Return the bytes that are signed."""
    raw = body if isinstance(body, bytes) else body.encode()
    return f"{ts_ms}\n{method.upper()}\n{path_and_query}\n".encode() + raw


def signature(secret: SecretStr, ts_ms: int, method: str, path_and_query: str, body: bytes | str) -> str:
    """Return the hex HMAC-SHA256 of the request with the secret."""
    key = secret.get_secret_value().encode()
    return hmac.new(key, payload(ts_ms, method, path_and_query, body), hashlib.sha256).hexdigest()


def signed_headers(
    api_key: str, secret: SecretStr, ts_ms: int, method: str, path_and_query: str, body: bytes | str = b""
) -> dict[str, str]:
    """Return the three headers of a signed request."""
    return {
        API_KEY_HEADER: api_key,
        TIMESTAMP_HEADER: str(ts_ms),
        SIGNATURE_HEADER: signature(secret, ts_ms, method, path_and_query, body),
    }


def verify(
    secret: SecretStr, headers: dict[str, str], method: str, path_and_query: str, body: bytes | str
) -> bool:
    """Tell whether the headers carry the right signature (constant-time comparison)."""
    try:
        ts = int(headers[TIMESTAMP_HEADER])
        got = headers[SIGNATURE_HEADER]
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(signature(secret, ts, method, path_and_query, body), got.lower())
