"""The one percentile used for every latency figure (execution_metrics, venue health, the report, bench).

Linear interpolation between the two nearest ranks ("type 7" of Hyndman and Fan): the
default of ``numpy.percentile``, of ``statistics.quantiles(method="inclusive")`` and of
spreadsheets' PERCENTILE.INC. ``p0`` is the minimum, ``p100`` the maximum, and one
sample is every percentile. It lives in ``operators`` so that connectors, flows, the
CLI layer and the benchmarks all use the same one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], pct: float) -> float | None:
    """Return the ``pct``-th percentile (0..100) of ``values``, or None when there are none."""
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct!r}")
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * pct / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (rank - lo) * (ordered[hi] - ordered[lo])


__all__ = ["percentile"]
