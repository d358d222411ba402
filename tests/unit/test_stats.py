import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.stats import percentile

samples = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=200)


@given(samples, st.floats(min_value=0, max_value=100))
def test_matches_numpy_linear_percentile(values: list[float], pct: float) -> None:
    got = percentile(values, pct)
    assert got == pytest.approx(float(np.percentile(values, pct)), rel=1e-9, abs=1e-6)


@given(samples.filter(lambda v: len(v) >= 2), st.integers(min_value=1, max_value=99))
def test_matches_statistics_inclusive_quantiles(values: list[float], pct: int) -> None:
    expected = statistics.quantiles(values, n=100, method="inclusive")[pct - 1]
    assert percentile(values, pct) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_edges() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 0) == 1.0
    assert percentile([3, 1, 2], 100) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile((x for x in [10.0, 20.0]), 25) == 12.5


@pytest.mark.parametrize("pct", [-1, 100.5])
def test_out_of_range_is_refused(pct: float) -> None:
    with pytest.raises(ValueError, match="within 0..100"):
        percentile([1.0], pct)
