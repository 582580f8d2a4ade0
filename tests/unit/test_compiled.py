"""The math the detectors and feature transforms use gives the same bits on every CPU.

numpy's float64 ``log``, ``exp2``, ``log1p`` and ``log2`` take AVX-512 loops on CPUs that
have them, and those differ from the C library in the last bit now and then: the same
replay gave one alert more on an AVX-512 machine than on the AVX2 machine the regression
lock was recorded on. ``churnguard.compiled``'s ufuncs call the C library, which is what
Python's ``math`` calls, on any CPU.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard import compiled

SRC = Path(compiled.__file__).parent
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
NUMPY_TRANSCENDENTALS = re.compile(r"np\.(log|log1p|log2|log10|exp|exp2|expm1|power)\(")


@settings(max_examples=300, deadline=None)
@given(st.lists(FINITE, min_size=1, max_size=40))
def test_the_ufuncs_are_the_c_librarys_functions_bit_for_bit(values: list[float]) -> None:
    x = np.array(values)
    positive, small = np.abs(x) + 1e-300, np.clip(x, -1000.0, 1000.0)
    cases = [
        (compiled.log, math.log, positive),
        (compiled.log2, math.log2, positive),
        (compiled.log1p, math.log1p, np.abs(x)),
        (compiled.exp2, math.exp2, small),
    ]
    for ufunc, reference, xs in cases:
        got = ufunc(xs)
        want = np.array([reference(v) for v in xs.tolist()])
        assert got.tobytes() == want.tobytes(), ufunc.__name__


def test_the_ufuncs_keep_shapes_and_take_scalars() -> None:
    matrix = np.arange(1.0, 7.0).reshape(2, 3)
    assert compiled.log(matrix).shape == (2, 3)
    assert float(compiled.exp2(np.float64(3.0))) == 8.0


def test_scoring_and_features_use_no_numpy_transcendental() -> None:
    """One place for the rule: what decides an alert takes its log/exp from
    ``churnguard.compiled``, never from numpy directly."""
    hot = [SRC / "profiling", SRC / "scoring", SRC / "pipeline.py"]
    files = [p for root in hot for p in ([root] if root.is_file() else root.rglob("*.py"))]
    offenders = [
        f"{p.relative_to(SRC)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if NUMPY_TRANSCENDENTALS.search(line.split("#")[0])
    ]
    assert offenders == []
