"""numba compilation shared by the forests' kernels and the feature transform, and the
math functions whose bits must not depend on the CPU.

numpy picks a ufunc's inner loop by the CPU's SIMD extensions at import. For ``log``,
``exp2``, ``log1p`` and ``log2`` on float64 its AVX-512 loops (``X86_V4``, ``AVX512_SKX``)
are not the C library's functions and differ from them in the last bit now and then, while
on an AVX2 machine numpy calls the C library. A score that moves by an ulp can cross a
threshold, so the same replay gave an alert more on an AVX-512 machine than on the AVX2 one
the regression lock was recorded on. The ufuncs here are numba-compiled loops that call the
C library on every x86-64 CPU (numba vectorises them only with Intel's SVML, which
churnguard does not install), so the detectors and feature transforms give the same bits
wherever they run; ``tests/unit/test_compiled.py`` checks them against Python's ``math``.

Compiled code is cached on disk (``cache=True``): next to the module, or under
``NUMBA_CACHE_DIR`` (the Dockerfile warms one at image build; docs/operations.md). numba
needs that directory writable even to read it; where none is, the code is compiled in
memory at each start (seconds) with one warning instead of failing the import.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from numba import njit, vectorize

logger = logging.getLogger(__name__)
IN_MEMORY: list[str] = []  # functions compiled without the on-disk cache
FLOAT_TO_FLOAT = ["float64(float64)"]


def compiled(fn: Callable[..., Any], signatures: list[str] | None = None) -> Any:
    """``njit(cache=True)`` (a ufunc of ``signatures`` with ``vectorize``), compiled in
    memory where numba finds no writable cache directory."""
    jit = njit if signatures is None else partial(vectorize, signatures)
    try:
        return jit(cache=True)(fn)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        if not IN_MEMORY:
            logger.warning(
                "numba cache unusable (%s): kernels compile in memory; set a "
                "writable NUMBA_CACHE_DIR (docs/operations.md)",
                exc,
            )
        IN_MEMORY.append(fn.__name__)
        return jit()(fn)


def _log(x: float) -> float:
    return math.log(x)


def _exp2(x: float) -> float:
    return math.exp2(x)


def _log1p(x: float) -> float:
    return math.log1p(x)


def _log2(x: float) -> float:
    return math.log2(x)


log = compiled(_log, FLOAT_TO_FLOAT)
exp2 = compiled(_exp2, FLOAT_TO_FLOAT)
log1p = compiled(_log1p, FLOAT_TO_FLOAT)
log2 = compiled(_log2, FLOAT_TO_FLOAT)
