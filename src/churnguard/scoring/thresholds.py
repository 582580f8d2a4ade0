"""Per-namespace alert thresholds: a target alert rate, floored, overridable by glob.

The default threshold of a namespace is the ``1 - target_alert_rate`` quantile of its recent
scores (a bounded window), never below ``min_score``. A quantile means something only when
the window holds several scores beyond it: at a 0.2 % rate and 300 scores, the "quantile" is
simply the highest score seen, so one earlier attack would silence the next. Until a
namespace has ``MIN_TAIL / rate`` scores (at least ``MIN_SCORES_FOR_QUANTILE``, at most the
window) the cluster's scores stand in for it, and until the cluster has as many, the floor.
The TOML config can pin a namespace glob to a fixed threshold, give it its own rate, or mute
it. Only profiles scored outside learning mode are observed.

The tail of the window counts *entities*, not profiles: the threshold is the score that the
``rate * n``-th highest-scoring entity of the window reached (each entity counted at its
highest score). Counted per profile, one long-running implant scoring high in every window
(a beacon every 5 minutes for hours) fills the tail by itself and lifts the threshold over
its own score and every other attack's: the attacker would mute the detector by being
persistent. Counted per entity it takes that many *different* unusual entities.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import msgspec
import numpy as np

from churnguard.config import Settings

MIN_SCORES_FOR_QUANTILE = 200
MIN_TAIL = 10  # scores expected beyond the quantile before it is trusted
# the quantile threshold never rises above this: a profile this far outside its baseline
# alerts even in a namespace whose recent scores were themselves extreme (the range-novelty
# score saturates near 1, so a quantile of saturated scores would otherwise mute it)
MAX_QUANTILE_THRESHOLD = 0.999
CLUSTER = "*cluster*"


class Thresholds:
    """Streaming per-namespace score windows and the threshold each implies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.windows: dict[str, deque[float]] = {}
        self.entities: dict[str, deque[str]] = {}  # parallel to ``windows``: whose score
        # entity_quantile per (window, rate) until that window changes: a batch's
        # namespaces that fall back to the cluster's window share one computation
        self._quantiles: dict[tuple[str, float], float] = {}
        # each window's scores as an array as of its last quantile, and the scores observed
        # since: a quantile appends those instead of converting the whole window again
        self._arrays: dict[str, np.ndarray] = {}
        self._pending: dict[str, list[float]] = {}

    def _window(self, namespace: str) -> tuple[deque[float], deque[str]]:
        w = self.windows.get(namespace)
        if w is None:
            size = self.settings.thresholds.window_profiles
            w = self.windows[namespace] = deque(maxlen=size)
            self.entities[namespace] = deque(maxlen=size)
        return w, self.entities[namespace]

    def threshold(self, namespace: str) -> float:
        """The score at or above which a profile of this namespace alerts."""
        t = self.settings.thresholds
        override = self.settings.namespace_override(namespace)
        if override is not None and override.threshold is not None:
            return float(override.threshold)
        rate = t.target_alert_rate
        if override is not None and override.target_alert_rate is not None:
            rate = override.target_alert_rate
        # math.ceil: the integer int(np.ceil(...)) gave, without a numpy scalar
        needed = min(max(MIN_SCORES_FOR_QUANTILE, math.ceil(MIN_TAIL / rate)), t.window_profiles)
        key = namespace
        if len(self.windows.get(key, ())) < needed:
            key = CLUSTER
        if len(self.windows.get(key, ())) < needed:
            return t.min_score
        q = self._quantiles.get((key, rate))
        if q is None:
            q = entity_quantile(self._values(key), self.entities[key], rate)
            self._quantiles[key, rate] = q
        return max(t.min_score, min(q, MAX_QUANTILE_THRESHOLD))

    def _values(self, key: str) -> np.ndarray:
        """Window ``key``'s scores, oldest first, as an array (the same values as the deque)."""
        window, pending = self.windows[key], self._pending.pop(key, None)
        values = self._arrays.get(key)
        if values is None:
            values = np.fromiter(window, float, count=len(window))
        elif pending:
            values = np.concatenate([values, np.array(pending, dtype=float)])
            values = values[len(values) - len(window) :]
        self._arrays[key] = values
        return values

    def muted(self, namespace: str) -> bool:
        override = self.settings.namespace_override(namespace)
        return bool(override is not None and override.mute)

    def observe(
        self, namespace: str, scores: Sequence[float], entities: Sequence[str] | None = None
    ) -> None:
        """Add scored (non-learning) profiles to the namespace's and the cluster's windows.

        ``entities`` names whose score each is (entity keys); None = all different.
        """
        if entities is None:
            first = sum(len(w) for w in self.windows.values())
            entities = [f"#{first + i}" for i in range(len(scores))]
        if len(entities) != len(scores):
            raise ValueError("one entity per score")
        for key in (namespace, CLUSTER):
            window, owners = self._window(key)
            window.extend(scores)
            owners.extend(entities)
            if key in self._arrays:
                self._pending.setdefault(key, []).extend(scores)
        for cached in [k for k in self._quantiles if k[0] == namespace or k[0] == CLUSTER]:
            del self._quantiles[cached]

    def export(self) -> dict[str, ThresholdWindow]:
        return {
            ns: ThresholdWindow(scores=list(w), entities=list(self.entities[ns]))
            for ns, w in sorted(self.windows.items())
        }

    def load(self, data: dict[str, ThresholdWindow]) -> None:
        self.windows, self.entities, self._quantiles = {}, {}, {}
        self._arrays, self._pending = {}, {}
        for ns, saved in data.items():
            window, owners = self._window(ns)
            window.extend(saved.scores)
            owners.extend(saved.entities)


class ThresholdWindow(msgspec.Struct):
    """Serialised form of one namespace's window (checkpoints)."""

    scores: list[float]
    entities: list[str]


def entity_quantile(
    scores: np.ndarray | Sequence[float], entities: Sequence[str], rate: float
) -> float:
    """The score of the ``ceil(rate * n)``-th highest-scoring distinct entity of a window.

    Only the top of the window is sorted: the tail holds a handful of entities, so the
    first ``4 k`` scores almost always contain ``k`` distinct ones; a window dominated by a
    few entities falls back to sorting all of it.
    """
    values = np.asarray(scores, dtype=float)
    k = max(1, int(np.ceil(rate * len(values))))
    for m in (min(len(values), 4 * k + 16), len(values)):
        top = np.argpartition(-values, m - 1)[:m] if m < len(values) else np.arange(m)
        top = top[np.argsort(-values[top], kind="stable")]
        seen: set[str] = set()
        for i in top.tolist():
            seen.add(entities[i])
            if len(seen) == k:
                return float(values[i])
    return float(values.min())
