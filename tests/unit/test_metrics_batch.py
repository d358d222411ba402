"""``connectors.metrics.observe_many`` against prometheus-client's own ``Histogram.observe``."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from connectors.metrics import HOP_LATENCY, observe_many


def _state(hist: Histogram) -> list[tuple[str, dict[str, str], float]]:
    # each sample by its suffix (_bucket, _count, _sum), labels and value
    return [(s.name.removeprefix(hist._name), s.labels, s.value)  # noqa: SLF001
            for metric in hist.collect() for s in metric.samples if not s.name.endswith("_created")]


def _pair() -> tuple[Histogram, Histogram]:
    buckets = HOP_LATENCY._upper_bounds  # noqa: SLF001 - the job's own buckets
    one, many = (Histogram(f"t_{name}", "test", ["hop"], buckets=buckets[:-1], registry=CollectorRegistry())
                 for name in ("one", "many"))
    return one, many


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_lands_in_the_buckets_and_sum_observe_gives(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test values, not secrets
    bounds = HOP_LATENCY._upper_bounds  # noqa: SLF001
    values = [rng.choice([*bounds[:-1], 0.0, -0.001, 1e9, math.inf, rng.expovariate(20)])
              for _ in range(rng.randint(0, 300))]
    one, many = _pair()
    for v in values:
        one.labels("x").observe(v)
    for start in range(0, len(values), 37):  # in batches, as sinks write them
        observe_many(many.labels("x"), values[start:start + 37])
    assert _state(many) == _state(one)
    assert sum(s[2] for s in _state(many) if s[0].endswith("_count")) == len(values)


def test_nan_goes_to_the_sum_and_to_no_bucket_as_observe_puts_it() -> None:
    one, many = _pair()
    one.labels("x").observe(math.nan)
    one.labels("x").observe(0.002)
    observe_many(many.labels("x"), [math.nan, 0.002])
    got, want = _state(many), _state(one)
    assert [s for s in got if not s[0].endswith("_sum")] == [s for s in want if not s[0].endswith("_sum")]
    assert math.isnan(next(s[2] for s in got if s[0].endswith("_sum")))


def test_an_empty_batch_changes_nothing_and_a_parent_is_refused() -> None:
    one, many = _pair()
    one.labels("x")
    observe_many(many.labels("x"), [])
    assert _state(many) == _state(one)
    with pytest.raises(ValueError, match="label"):
        observe_many(many, [0.1])
