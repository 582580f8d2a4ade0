"""scikit-learn's IsolationForest, refit on a bounded reservoir: the batch reference model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import numpy as np

from churnguard.errors import ModelError
from churnguard.scoring.detectors._util import as_matrix, pack, rng_from_state, rng_state, unpack
from churnguard.scoring.detectors.base import Detector

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

# every type a fitted IsolationForest's skops file may name; anything else is refused on load
TRUSTED_TYPES = [
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
]
_F32_MAX = float(np.finfo(np.float32).max)


def _float32_range(X: np.ndarray) -> np.ndarray:
    """scikit-learn's trees work in float32: larger finite values would become inf there."""
    return np.clip(X, -_F32_MAX, _F32_MAX)


class BatchIsolationForest(Detector):
    """Isolation Forest (scikit-learn), refit on a uniform reservoir of the rows seen so far.

    ``learn_many`` adds rows to a reservoir of at most ``reservoir_size`` (Algorithm R, so
    every row seen has the same chance to be in it) and refits once ``refit_every`` new rows
    have arrived since the last fit (always on the first call), so feeding it one row at a
    time does not refit a hundred trees per row. The fitted estimator is ``estimator_``, a
    plain scikit-learn object for notebooks.

    Parameters
    ----------
    n_estimators, max_samples
        Passed to ``sklearn.ensemble.IsolationForest``.
    reservoir_size
        How many rows the refit sees at most.
    refit_every
        New rows between refits; 1 = refit on every ``learn_many``.
    n_features
        Expected row width; None = taken from the first rows learned.
    seed
        Seeds the reservoir sampler and each refit's ``random_state``.

    Notes
    -----
    Scores are ``-score_samples``: scikit-learn negates the paper's ``2 ** (-E[h] / c(n))``,
    so this is exactly the paper score, in (0, 1]. State is saved with skops, loaded with
    only :data:`TRUSTED_TYPES` allowed, never with pickle.

    Example
    -------
    >>> import numpy as np
    >>> forest = BatchIsolationForest(n_estimators=50, seed=1)
    >>> forest = forest.learn_many(np.random.default_rng(0).normal(size=(500, 2)))
    >>> inlier, outlier = forest.score_many(np.array([[0.0, 0.0], [5.0, 5.0]]))
    >>> bool(outlier > inlier > 0.0)
    True

    References
    ----------
    Liu, F. T., Ting, K. M., Zhou, Z.-H. (2008). Isolation Forest. ICDM 2008.
    https://scikit-learn.org/stable/modules/generated/sklearn.ensemble.IsolationForest.html
    """

    name = "iforest"

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        reservoir_size: int = 4096,
        refit_every: int = 256,
        n_features: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.reservoir_size = reservoir_size
        self.refit_every = refit_every
        self.n_features = n_features
        self.seed = seed

    def learn_many(self, X: np.ndarray) -> Self:
        X = _float32_range(as_matrix(X, self._width(), finite=True))
        if len(X) == 0:
            return self
        if not hasattr(self, "reservoir_"):
            self._init_state(X.shape[1])
        self._sample(X)
        self.pending_ += len(X)
        if self.estimator_ is None or self.pending_ >= self.refit_every:
            self.refit()
        return self

    def refit(self) -> Self:
        """Fit a new forest on the current reservoir (also called by ``learn_many``)."""
        from sklearn.ensemble import IsolationForest  # scikit-learn only when it is used

        seed = int(self.rng_.integers(2**31 - 1))
        self.estimator_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=seed
        ).fit(self.reservoir_)
        self.pending_ = 0
        return self

    def score_many(self, X: np.ndarray) -> np.ndarray:
        X = as_matrix(X, self._width())
        if getattr(self, "estimator_", None) is None or len(X) == 0:
            return np.full(len(X), 0.5)
        return np.clip(-self.estimator_.score_samples(_float32_range(X)), 0.0, 1.0)

    def _init_state(self, d: int) -> None:
        self.n_features_in_ = d
        self.rng_ = np.random.default_rng(self.seed)
        self.reservoir_ = np.empty((0, d))
        self.estimator_: IsolationForest | None = None
        self.n_seen_ = 0
        self.pending_ = 0

    def _sample(self, X: np.ndarray) -> None:
        """Algorithm R over the rows, vectorised: row t replaces slot j ~ U[0, t] if j < size."""
        room = max(0, self.reservoir_size - len(self.reservoir_))
        self.reservoir_ = np.vstack([self.reservoir_, X[:room]])
        rest = X[room:]
        if len(rest):
            seen = self.n_seen_ + room + np.arange(len(rest))
            slots = self.rng_.integers(0, seen + 1)
            keep = slots < self.reservoir_size
            for slot, row in zip(slots[keep].tolist(), rest[keep], strict=True):
                self.reservoir_[slot] = row
        self.n_seen_ += len(X)

    def to_bytes(self) -> bytes:
        """npz of the reservoir + the estimator as skops bytes (no pickle)."""
        meta: dict[str, Any] = {"params": self.params()}
        if not hasattr(self, "reservoir_"):
            return pack(self.name, meta, {})
        meta.update(
            n_features_in_=self.n_features_in_,
            n_seen_=self.n_seen_,
            pending_=self.pending_,
            rng_=rng_state(self.rng_),
        )
        arrays = {"reservoir_": self.reservoir_}
        if self.estimator_ is not None:
            import skops.io as sio  # only serialisation needs skops

            arrays["estimator_"] = np.frombuffer(sio.dumps(self.estimator_), dtype=np.uint8)
        return pack(self.name, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        import skops.io as sio  # only serialisation needs skops

        meta, arrays = unpack(cls.name, data)
        try:
            det = cls(**meta["params"])
            if not arrays:
                return det
            det._init_state(int(meta["n_features_in_"]))
            det.reservoir_ = arrays["reservoir_"].astype(float)
            det.n_seen_, det.pending_ = int(meta["n_seen_"]), int(meta["pending_"])
            det.rng_ = rng_from_state(meta["rng_"])
            if "estimator_" in arrays:
                blob = arrays["estimator_"].tobytes()
                det.estimator_ = sio.loads(blob, trusted=TRUSTED_TYPES)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"corrupt {cls.name} state: {exc}") from exc
        except sio.exceptions.UntrustedTypesFoundException as exc:
            raise ModelError(f"{cls.name} state names untrusted types: {exc}") from exc
        from sklearn.ensemble import IsolationForest

        if det.estimator_ is not None and not isinstance(det.estimator_, IsolationForest):
            raise ModelError(f"corrupt {cls.name} state: not an IsolationForest")
        return det
