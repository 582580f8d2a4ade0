"""What every detector shares: input checks and a pickle-free state container.

State is an ``.npz`` archive (numpy arrays + one JSON ``meta`` blob) read back with
``allow_pickle=False``, so loading a detector's own arrays can never run code. Detectors that
wrap a third-party model (river, scikit-learn) embed that model's bytes as one array and say
in their docstring how those bytes are decoded.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from churnguard.errors import ModelError

_META = "__meta__"


def as_matrix(X: Any, n_features: int | None, *, finite: bool = False) -> np.ndarray:
    """X as a float (n, d) array; a single row may be given as (d,).

    ``finite=True`` refuses NaN/inf, used on the learning path: one NaN in a bounding box or a
    running min/max would poison every later score.
    """
    arr = np.asarray(X, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"expected a (n, d) matrix, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"expected {n_features} features, got {arr.shape[1]}")
    if finite:
        refuse_non_finite(arr)
    return arr


def refuse_non_finite(arr: np.ndarray) -> None:
    """ValueError if ``arr`` holds NaN or inf (see :func:`as_matrix`)."""
    if not np.isfinite(arr).all():
        raise ValueError("cannot learn from NaN or infinite values")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's exact state as plain JSON data (PCG64 ints are arbitrary precision)."""
    return rng.bit_generator.state


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    """Inverse of :func:`rng_state`; only PCG64 (numpy's default) is accepted."""
    if state.get("bit_generator") != "PCG64":
        raise ModelError(f"unsupported random generator {state.get('bit_generator')!r}")
    bit_generator = np.random.PCG64()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def pack(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """An npz archive of ``arrays`` plus ``meta`` (JSON) tagged with the detector ``kind``."""
    blob = json.dumps({"kind": kind, **meta}, sort_keys=True).encode()
    buf = io.BytesIO()
    np.savez(buf, **{_META: np.frombuffer(blob, dtype=np.uint8)}, **arrays)
    return buf.getvalue()


def unpack(kind: str, data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`pack`; a blob of another detector kind or a broken one is a ModelError."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(arrays.pop(_META).tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelError(f"not a serialised {kind} detector: {exc}") from exc
    if meta.pop("kind", None) != kind:
        raise ModelError(f"not a serialised {kind} detector")
    return meta, arrays
