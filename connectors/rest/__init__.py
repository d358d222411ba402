"""The pure parts of the REST/WebSocket venue adapter (``connectors.venues.rest``).

``settings`` (``RestSettings``), ``signing`` (HMAC request signatures), ``ratelimit``
(the token bucket that honours 429/Retry-After), ``sequence`` (gap detection on the
user stream) and ``codec`` (JSON bodies to and from ``VenueFill``/``ValidatedOrder``).
None of them does I/O; the adapter wires them to httpx2 and websockets.
"""
