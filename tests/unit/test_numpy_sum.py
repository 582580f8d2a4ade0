"""The feature builder's beacon regularity sums gaps in plain Python in numpy's order
(``features.numpy_sum``): the same bits as numpy, or every alert id would move."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.profiling.features import _regularity, numpy_sum

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# connection times as the entity state keeps them: epoch seconds, a few to a few hundred apart
epoch_times = st.lists(
    st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False), min_size=0, max_size=16
).map(sorted)


def _numpy_regularity(times: list[float]) -> float:
    """The regularity as numpy computed it before (``features._regularity``'s reference)."""
    if len(times) < 4:
        return 0.0
    gaps = np.diff(np.asarray(times))
    mean = float(gaps.mean())
    return 1.0 - float(gaps.std()) / mean if mean > 0 else 0.0


@settings(max_examples=2000, deadline=None)
@given(st.lists(finite, max_size=300))
def test_sum_is_numpys_bit_for_bit(values: list[float]) -> None:
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf is NaN both ways
        expected = float(np.add.reduce(np.asarray(values, dtype=np.float64)))
    got = numpy_sum(values)
    assert got == expected or (np.isnan(got) and np.isnan(expected))
    assert np.signbit(got) == np.signbit(expected)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=8, max_size=40))
def test_sum_of_blocks_of_eight_is_numpys(values: list[float]) -> None:
    """The 8-accumulator block (8 to 128 values), where a naive sum differs most often."""
    assert numpy_sum(values) == float(np.asarray(values).sum())


@settings(max_examples=3000, deadline=None)
@given(epoch_times)
def test_regularity_is_numpys_bit_for_bit(times: list[float]) -> None:
    assert _regularity(times) == _numpy_regularity(times)


def test_regularity_of_a_jittered_beacon() -> None:
    times = [1.77e9 + 1800.0 * i + (37.0 if i % 2 else -41.0) for i in range(16)]
    assert _regularity(times) == _numpy_regularity(times)
    assert 0.9 < _regularity(times) < 1.0
    assert _regularity(times[:3]) == 0.0
    assert _regularity([5.0, 5.0, 5.0, 5.0]) == 0.0  # no positive mean gap
