"""A token bucket per venue that also honours the venue's 429 and Retry-After.

Pure: the caller passes the time (``time.monotonic()`` in the adapter), and ``delay``
says how long to wait before the next request may go; ``take`` spends a token. A 429
(``penalize``) empties the bucket and blocks every request until its Retry-After has
passed, whatever tokens would have accrued.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_RETRY_AFTER_S = 1.0
"""Wait after a 429 without a readable Retry-After."""
MAX_RETRY_AFTER_S = 60.0
"""A Retry-After beyond this is capped (a venue asking for an hour is misconfigured)."""


class TokenBucket:
    """``rate`` requests per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now
        self._blocked_until = now
        self.penalties = 0

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def delay(self, now: float) -> float:
        """Return the seconds to wait before a request may go (0: now)."""
        self._refill(now)
        blocked = max(0.0, self._blocked_until - now)
        short = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
        return max(blocked, short)

    def take(self, now: float) -> bool:
        """Spend a token if a request may go now; False (nothing spent) otherwise."""
        if self.delay(now) > 0:
            return False
        self._tokens -= 1
        return True

    def penalize(self, retry_after_s: float, now: float) -> None:
        """Take a 429: no request before ``now + retry_after_s``, and the bucket starts empty."""
        self.penalties += 1
        self._refill(now)
        self._tokens = 0.0
        self._at = now + retry_after_s
        self._blocked_until = max(self._blocked_until, now + retry_after_s)


def retry_after_s(value: str | None, now: datetime | None = None) -> float:
    """Parse a Retry-After header (seconds or an HTTP date) into seconds, capped; bad: the default."""
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER_S
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or seconds < 0:
        return 0.0 if not math.isnan(seconds) else DEFAULT_RETRY_AFTER_S
    return min(seconds, MAX_RETRY_AFTER_S)
