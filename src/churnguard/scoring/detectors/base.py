"""The one interface every anomaly detector implements (river-like, plus batch forms).

Inputs are already in the model view (``FeatureSpec.transform``): detectors never see raw
bytes or seconds. Scores are in [0, 1], higher = more anomalous, so thresholds mean the
same thing whichever detector produced them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np


class Detector(ABC):
    """learn one/many, score one/many, state to bytes."""

    name: str = "detector"

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
