"""The one interface every anomaly detector implements (river-like, plus batch forms).

Inputs are already in the model view (``FeatureSpec.transform``): detectors never see raw
bytes or seconds. Scores are in [0, 1], higher = more anomalous, so thresholds mean the
same thing whichever detector produced them.

Detectors are scikit-learn estimators (``BaseEstimator``): ``__init__`` only stores its
arguments as given, learned state lives in attributes ending with ``_``, and
``get_params``/``set_params``/``clone`` work, so a notebook can grid-search them. ``fit``
and ``score_samples`` are the scikit-learn spelling of ``learn_many`` on a fresh model and
``score_many`` (negated, as scikit-learn's IsolationForest: higher = more normal);
``learn_one``/``score_one`` are river's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator


class Detector(BaseEstimator, ABC):
    """learn one/many, score one/many, state to bytes."""

    name: str = "detector"

    @classmethod
    def prepare(cls) -> None:
        """Get ready to learn and score before any data arrives (compile what needs it).

        A service calls it before joining its consumer group, so that no poll waits on a
        one-off cost and outlives the group's ``max_poll_interval_ms``. Nothing by default.
        """

    @abstractmethod
    def learn_many(self, X: np.ndarray) -> Self:
        """Update the model with rows of X (n, d)."""

    @abstractmethod
    def score_many(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores in [0, 1] for rows of X, shape (n,)."""

    def learn_one(self, x: np.ndarray) -> Self:
        return self.learn_many(np.asarray(x, dtype=float).reshape(1, -1))

    def score_one(self, x: np.ndarray) -> float:
        return float(self.score_many(np.asarray(x, dtype=float).reshape(1, -1))[0])

    def fit(self, X: np.ndarray, y: Any = None) -> Self:
        """Forget everything learned, then learn ``X`` (``y`` is ignored: unsupervised)."""
        for learned in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, learned)
        return self.learn_many(X)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's sign convention (IsolationForest): higher = more normal."""
        return -self.score_many(X)

    def params(self) -> dict[str, Any]:
        """Constructor arguments as JSON data, for ``to_bytes`` (inverse: ``cls(**params)``)."""
        return self.get_params(deep=False)

    @property
    def n_seen(self) -> int:
        """How many rows it has learned from (kept in ``n_seen_`` by every detector)."""
        return int(getattr(self, "n_seen_", 0))

    def _width(self) -> int | None:
        """Row width: what it first learned from, else the ``n_features`` it was given."""
        if hasattr(self, "n_features_in_"):
            return int(self.n_features_in_)
        return getattr(self, "n_features", None)

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Serialised learned state (trusted storage only: checkpoints, signed bundles)."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Inverse of :meth:`to_bytes`."""
