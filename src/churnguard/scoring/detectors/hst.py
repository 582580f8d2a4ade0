"""river's HalfSpaceTrees behind the churnguard interface (the river comparison baseline)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from churnguard.errors import ModelError
from churnguard.scoring.detectors._util import as_matrix, pack, unpack
from churnguard.scoring.detectors.base import Detector


class HalfSpaceTrees(Detector):
    """Half-Space Trees (river) on features rescaled to [0, 1].

    river's trees cut each feature's ``[0, 1]`` range in half, so the adapter rescales every
    row first: with fixed ``limits`` when the caller knows them, otherwise with the running
    min/max of the rows it has *learned* (scored rows never move the scale, so a burst of
    attack traffic cannot stretch it). Values outside the range are clipped to the edge; a
    feature that has been constant so far maps to 0.5, and values off that constant to 0 or 1.
    With the default parameters this is "river HalfSpaceTrees with defaults".

    Parameters
    ----------
    n_trees, height, window_size
        Passed to ``river.anomaly.HalfSpaceTrees`` unchanged.
    limits
        ``(low, high)`` per feature in the model view; None = learned from the data.
    n_features
        Expected row width; None = taken from the first rows learned.
    seed
        Seed of river's tree builder.

    Notes
    -----
    ``to_bytes`` pickles the river model (river has no other format), so its bytes must come
    from trusted storage only: bundles and checkpoints are hash/HMAC-verified before load.

    Example
    -------
    >>> import numpy as np
    >>> hst = HalfSpaceTrees(n_trees=5, height=6, window_size=50, seed=1)
    >>> hst = hst.learn_many(np.random.default_rng(0).normal(0.5, 0.05, size=(300, 2)))
    >>> inlier, outlier = hst.score_many(np.array([[0.5, 0.5], [3.0, -3.0]]))
    >>> bool(outlier > inlier)
    True

    References
    ----------
    Tan, S. C., Ting, K. M., Liu, T. F. (2011). Fast anomaly detection for streaming data.
    IJCAI 2011. https://riverml.xyz/latest/api/anomaly/HalfSpaceTrees/
    """

    name = "hst"

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        limits: Sequence[tuple[float, float]] | None = None,
        n_features: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.limits = limits
        self.n_features = n_features
        self.seed = seed

    def params(self) -> dict[str, Any]:
        """``limits`` as JSON lists of ``[low, high]`` (any sequence of pairs is accepted)."""
        params = super().params()
        if self.limits is not None:
            params["limits"] = [[float(lo), float(hi)] for lo, hi in self.limits]
        return params

    def learn_many(self, X: np.ndarray) -> Self:
        X = as_matrix(X, self._width(), finite=True)
        if len(X) == 0:
            return self
        if not hasattr(self, "model_"):
            self._init_state(X.shape[1])
        if self.limits is None:
            np.minimum(self.lo_, X.min(axis=0), out=self.lo_)
            np.maximum(self.hi_, X.max(axis=0), out=self.hi_)
        for row in self._scale(X).tolist():
            self.model_.learn_one(dict(enumerate(row)))
        self.n_seen_ += len(X)
        return self

    def score_many(self, X: np.ndarray) -> np.ndarray:
        X = as_matrix(X, self._width())
        if not hasattr(self, "model_") or self.n_seen_ == 0:
            return np.full(len(X), 0.5)
        scores = np.array(
            [self.model_.score_one(dict(enumerate(row))) for row in self._scale(X).tolist()],
            dtype=float,
        )
        return np.clip(np.nan_to_num(scores, nan=0.5), 0.0, 1.0)

    def _width(self) -> int | None:
        if hasattr(self, "n_features_in_"):
            return int(self.n_features_in_)
        if self.limits is not None:
            return len(self.limits)
        return self.n_features

    def _init_state(self, d: int) -> None:
        self.n_features_in_ = d
        if self.limits is None:
            self.lo_, self.hi_ = np.full(d, np.inf), np.full(d, -np.inf)
        else:
            bounds = np.asarray(self.limits, dtype=float).reshape(d, 2)
            self.lo_, self.hi_ = bounds[:, 0].copy(), bounds[:, 1].copy()
        from river.anomaly import HalfSpaceTrees as RiverHST  # river only when it is used

        self.model_ = RiverHST(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
        )
        self.n_seen_ = 0

    def _scale(self, X: np.ndarray) -> np.ndarray:
        # halves so that neither difference can overflow for any finite input
        offset = X / 2 - self.lo_ / 2
        span = self.hi_ / 2 - self.lo_ / 2
        flat = ~(span > 0)
        scaled = np.where(flat, 0.5 + 0.5 * np.sign(offset), offset / np.where(flat, 1.0, span))
        return np.clip(np.nan_to_num(scaled, nan=0.5), 0.0, 1.0)

    def to_bytes(self) -> bytes:
        """npz of the scale + the pickled river model (trusted storage only)."""
        meta: dict[str, Any] = {"params": self.params()}
        if not hasattr(self, "model_"):
            return pack(self.name, meta, {})
        meta.update(n_features_in_=self.n_features_in_, n_seen_=self.n_seen_)
        model = np.frombuffer(pickle.dumps(self.model_, protocol=5), dtype=np.uint8)
        return pack(self.name, meta, {"lo_": self.lo_, "hi_": self.hi_, "model_": model})

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Unpickles river's model: call only on verified bytes."""
        meta, arrays = unpack(cls.name, data)
        try:
            params = dict(meta["params"])
            if meta.get("limits") is not None:  # bundles written before limits was a param
                params["limits"] = meta["limits"]
            det = cls(**params)
            if not arrays:
                return det
            det.n_features_in_ = int(meta["n_features_in_"])
            det.n_seen_ = int(meta["n_seen_"])
            det.lo_, det.hi_ = arrays["lo_"].astype(float), arrays["hi_"].astype(float)
            det.model_ = pickle.loads(arrays["model_"].tobytes())  # verified bytes only
        except (KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
            raise ModelError(f"corrupt {cls.name} state: {exc}") from exc
        from river.anomaly import HalfSpaceTrees as RiverHST

        if not isinstance(det.model_, RiverHST):
            raise ModelError(f"corrupt {cls.name} state: not a river HalfSpaceTrees")
        return det
