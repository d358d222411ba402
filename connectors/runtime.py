"""How a job's Python process runs: its garbage collector.

A job holds a large, long-lived state (Job C: a book per account, each with its orders,
positions and rows) and allocates records at a high rate. CPython's default collector
thresholds (700, 10, 10) start a young collection every 700 net allocations and
re-scan survivors again and again while such a state is being built: restoring 30,000
account books from their snapshots spent 70 % of its time in the collector
(``bench/risk.py``, ``restore_s_100k_accounts`` beside ``restore_s_100k_accounts_default_gc``).
The jobs raise the thresholds instead of turning collection off, so reference cycles
are still freed, only in fewer and larger passes.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

JOB_GC_THRESHOLDS = (100_000, 50, 1_000)
"""``gc.set_threshold`` of a job process (``Settings.gc_thresholds``'s default)."""


def tune_gc(thresholds: tuple[int, int, int] | None) -> None:
    """Set the collector's thresholds (None: leave Python's defaults)."""
    if thresholds is None:
        return
    if gc.get_threshold() != thresholds:
        gc.set_threshold(*thresholds)
        log.info("gc thresholds %s", thresholds)
