"""Anomaly detectors behind one interface, chosen by name (``scoring.detector`` in config).

===========  ==================================================================
name         detector
===========  ==================================================================
``oif``      :class:`OnlineIsolationForest`: the default, sliding window, numba loops
``hst``      :class:`HalfSpaceTrees`: river's HalfSpaceTrees (comparison baseline)
``iforest``  :class:`BatchIsolationForest`: scikit-learn, refit on a reservoir
===========  ==================================================================

Example
-------
>>> import numpy as np
>>> det = make_detector("oif", n_features=2, seed=3, n_trees=8)
>>> det = det.learn_many(np.random.default_rng(0).normal(size=(500, 2)))
>>> again = detector_from_bytes("oif", det.to_bytes())
>>> bool((again.score_many(np.zeros((1, 2))) == det.score_many(np.zeros((1, 2)))).all())
True
"""

from __future__ import annotations

from typing import Any

from churnguard.errors import ConfigError, ModelError
from churnguard.scoring.detectors.base import Detector
from churnguard.scoring.detectors.batch import BatchIsolationForest
from churnguard.scoring.detectors.hst import HalfSpaceTrees
from churnguard.scoring.detectors.oif import OnlineIsolationForest

__all__ = [
    "DETECTORS",
    "BatchIsolationForest",
    "Detector",
    "HalfSpaceTrees",
    "OnlineIsolationForest",
    "detector_from_bytes",
    "make_detector",
    "prepare_detector",
]


DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (OnlineIsolationForest, HalfSpaceTrees, BatchIsolationForest)
}


def _detector_class(name: str) -> type[Detector]:
    try:
        return DETECTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown detector {name!r} (choose from {', '.join(sorted(DETECTORS))})"
        ) from None


def prepare_detector(name: str) -> None:
    """Ready the named detector's code before data arrives (see :meth:`Detector.prepare`)."""
    _detector_class(name).prepare()


def make_detector(name: str, n_features: int, seed: int = 0, **params: Any) -> Detector:
    """A fresh detector of the named kind; ``params`` go to its constructor."""
    cls = _detector_class(name)
    try:
        return cls(n_features=n_features, seed=seed, **params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for detector {name!r}: {exc}") from exc


def detector_from_bytes(name: str, data: bytes) -> Detector:
    """Inverse of ``Detector.to_bytes``; only for verified bytes (a bundle or a checkpoint)."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ModelError(f"unknown detector {name!r} in serialised state") from None
    return cls.from_bytes(data)
