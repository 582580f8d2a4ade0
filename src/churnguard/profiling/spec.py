"""Load the versioned feature spec (``features/v<N>.toml``) and apply its model transforms.

The spec is the single source of feature names, documentation and scaling for the service,
the detectors and the notebooks; nothing else hard-codes a feature list. Its fields are typed
with their allowed values, so a misspelt key or value is refused at load in one line.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import msgspec
import numpy as np

from churnguard.errors import ConfigError
from churnguard.shipped import shipped
from churnguard.validation import convert

# CHURNGUARD_SPEC_DIR names another directory of specs; else the shipped features/ (the
# wheel's copy, or the repository's in a checkout)
SPEC_DIR = Path(os.environ.get("CHURNGUARD_SPEC_DIR") or shipped("features"))
DEFAULT_VERSION = "1"
GAP_FLOOR = 2.0**-10  # log_gap resolves ratios up to 1 - 1/1024


class FeatureDef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[feature]]`` of the spec; the field comments of ``features/v1.toml`` say why."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$")]
    kind: Literal["count", "bytes", "seconds", "flag", "ratio"]
    transform: Literal["log1p", "identity", "log_gap"]
    doc: Annotated[str, msgspec.Meta(min_length=1)]
    applies: Literal["pod", "instance", "both"] = "both"
    missing: float = 0.0
    strategy: Literal[
        "deletion", "collection", "archive_exfil", "c2", "credentials", "escape", "context"
    ] = "context"
    scale: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    direction: Literal["high", "low"] = "high"  # which way is suspicious: more, or less

    def applies_to(self, entity_kind: str) -> bool:
        return self.applies == "both" or self.applies == entity_kind


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    version: str
    window_seconds: float
    allowed_lateness_seconds: float
    idle_expiry_seconds: float
    features: tuple[FeatureDef, ...]
    # worked out once from ``features``: the scorer reads them for every batch and alert
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _missing: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _columns: _Columns = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(f.name for f in self.features))
        object.__setattr__(self, "_missing", tuple(f.missing for f in self.features))
        object.__setattr__(self, "_columns", _columns(self.features))

    def by_name(self, name: str) -> FeatureDef:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def vector(self, values: dict[str, float]) -> np.ndarray:
        """Raw values in spec order; absent features take their ``missing`` value."""
        return np.array([values.get(f.name, f.missing) for f in self.features], dtype=float)

    def matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        """Raw values of many rows, shape (n, n_features)."""
        if not rows:
            return np.empty((0, len(self.features)))
        names, missing = self.names, self._missing
        # one flat pass (each value converted as np.array converts it), no list per row
        values = chain.from_iterable([map(r.get, names, missing) for r in rows])
        return np.fromiter(values, float, count=len(rows) * len(names)).reshape(len(rows), -1)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """The model view: log1p on counts, bytes and durations, ``-log2(1 - x)`` (floored,
        ``log_gap``) on ratios whose meaning is in how close they come to 1, divided by
        ``scale``, and negated for ``direction = "low"`` features so that larger always
        means more suspicious (the detectors' range novelty looks upward only)."""
        out = np.array(raw, dtype=float, ndmin=2)  # a copy; one row becomes (1, d)
        # column groups, not one column at a time: the same operations on the same
        # elements in the same order per element, so the values are identical
        # (log1p and log2 are the C library's, not numpy's CPU-dependent SIMD loops;
        # np.maximum and the array's clip are what np.clip calls), each group's
        # temporaries reused in place: a tick's few rows cost numpy's per-call overhead
        log1p, log2 = _compiled_math()
        cols = self._columns
        if cols.log1p is not None:
            x = np.maximum(out[:, cols.log1p], 0.0)
            out[:, cols.log1p] = log1p(x, out=x)
        if cols.log_gap is not None:
            gap = out[:, cols.log_gap].clip(0.0, 1.0)
            np.subtract(1.0, gap, out=gap)
            gap += GAP_FLOOR  # (1 - x) + floor, as written
            out[:, cols.log_gap] = np.negative(log2(gap, out=gap), out=gap)
        if cols.divisors is not None:
            out /= cols.divisors  # every column at once: x / 1.0 is x, NaN and -0.0 included
        if cols.low is not None:
            np.negative(out, out=out, where=cols.low)
        return out

    def inverse(self, j: int, value: float) -> float:
        """Back from the model view of feature ``j`` to its raw unit (for explanations)."""
        f = self.features[j]
        value *= f.scale if f.direction == "high" else -f.scale
        if f.transform == "log1p":
            return math.expm1(value)
        if f.transform == "log_gap":
            return float(1.0 + GAP_FLOOR - 2.0**-value)
        return float(value)


@cache
def _compiled_math() -> tuple[np.ufunc, np.ufunc]:
    """``compiled.log1p`` and ``compiled.log2`` as the numpy ufuncs numba built (float64
    loops: the same code without the Python layer numba's wrapper adds to each call),
    imported on first use so that reading a spec needs no numba."""
    from churnguard import compiled

    return compiled.log1p.ufunc, compiled.log2.ufunc


class _Columns(NamedTuple):
    """Which columns each step of :meth:`FeatureSpec.transform` applies to (None: none);
    a run of adjacent columns is a slice, whose view costs no gather and no scatter."""

    log1p: np.ndarray | slice | None
    log_gap: np.ndarray | slice | None
    divisors: np.ndarray | None  # every column's scale (1.0 where it has none)
    low: np.ndarray | None  # a mask: True for the columns negated


def _columns(features: tuple[FeatureDef, ...]) -> _Columns:
    def where(test: Callable[[FeatureDef], bool]) -> np.ndarray | slice | None:
        at = [j for j, f in enumerate(features) if test(f)]
        if not at:
            return None
        if at == list(range(at[0], at[-1] + 1)):
            return slice(at[0], at[-1] + 1)
        return np.array(at, dtype=np.intp)

    divisors = np.array([f.scale for f in features], dtype=float)
    low = np.array([f.direction == "low" for f in features], dtype=bool)
    return _Columns(
        log1p=where(lambda f: f.transform == "log1p"),
        log_gap=where(lambda f: f.transform == "log_gap"),
        divisors=divisors if np.any(divisors != 1.0) else None,
        low=low if low.any() else None,
    )


def spec_path(version: str = DEFAULT_VERSION) -> Path:
    """The spec file for a version, from the repo's ``features/`` directory."""
    p = SPEC_DIR / f"v{version}.toml"
    if p.exists():
        return p
    raise ConfigError(f"feature spec version {version!r} not found under {SPEC_DIR}")


def load_spec(path: str | Path | None = None, version: str = DEFAULT_VERSION) -> FeatureSpec:
    """Parse and validate a feature spec file."""
    p = Path(path) if path else spec_path(version)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read feature spec {p}: {exc}") from exc
    doc = convert(data, _SpecFile, f"feature spec {p}")
    seen: set[str] = set()
    for f in doc.feature:
        if f.name in seen:
            raise ConfigError(f"feature spec {p}: feature {f.name} defined twice")
        seen.add(f.name)
    return FeatureSpec(
        version=doc.version,
        window_seconds=doc.window_seconds,
        allowed_lateness_seconds=doc.allowed_lateness_seconds,
        idle_expiry_seconds=doc.idle_expiry_seconds,
        features=tuple(doc.feature),
    )


class _SpecFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The spec file as written; :class:`FeatureSpec` is what the code uses."""

    version: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+$")]
    window_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    allowed_lateness_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    idle_expiry_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    feature: Annotated[list[FeatureDef], msgspec.Meta(min_length=1)]


def render_markdown(spec: FeatureSpec) -> str:
    """docs/features.md, generated from the spec so the two never drift (a test checks)."""
    lines = [
        f"# Feature spec v{spec.version}",
        "",
        f"Generated from `features/v{spec.version}.toml` by `python -m churnguard.profiling.spec`;"
        " edit the spec, not this file.",
        "",
        f"Windows: {spec.window_seconds:g} s (anchored on each entity's start; a pod that lives"
        " less than one window is profiled once, whole, when it ends). Allowed lateness:"
        f" {spec.allowed_lateness_seconds:g} s. Idle entities expire after"
        f" {spec.idle_expiry_seconds:g} s.",
        "",
        "| feature | applies to | kind | model transform | scale | missing | strategy | meaning |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in spec.features:
        lines.append(
            f"| `{f.name}` | {f.applies} | {f.kind} | {f.transform} | {f.scale:g} | {f.missing:g} |"
            f" {f.strategy} | {f.doc} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(load_spec()), end="")
