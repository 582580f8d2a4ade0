"""Per-namespace alert thresholds: a target alert rate, floored, overridable by glob.

The default threshold of a namespace is the ``1 - target_alert_rate`` quantile of its recent
scores (a bounded window), never below ``min_score``. A quantile means something only when
the window holds several scores beyond it: at a 0.2 % rate and 300 scores, the "quantile" is
simply the highest score seen, so one earlier attack would silence the next. Until a
namespace has ``MIN_TAIL / rate`` scores (at least ``MIN_SCORES_FOR_QUANTILE``, at most the
window) the cluster's scores stand in for it, and until the cluster has as many, the floor.
The TOML config can pin a namespace glob to a fixed threshold, give it its own rate, or mute
it. Only profiles scored outside learning mode are observed.
"""

from __future__ import annotations

from collections import deque

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

    def _window(self, namespace: str) -> deque[float]:
        w = self.windows.get(namespace)
        if w is None:
            w = self.windows[namespace] = deque(maxlen=self.settings.thresholds.window_profiles)
        return w

    def threshold(self, namespace: str) -> float:
        """The score at or above which a profile of this namespace alerts."""
        t = self.settings.thresholds
        override = self.settings.namespace_override(namespace)
        if override is not None and override.threshold is not None:
            return float(override.threshold)
        rate = t.target_alert_rate
        if override is not None and override.target_alert_rate is not None:
            rate = override.target_alert_rate
        needed = min(max(MIN_SCORES_FOR_QUANTILE, int(np.ceil(MIN_TAIL / rate))), t.window_profiles)
        scores = self.windows.get(namespace)
        if scores is None or len(scores) < needed:
            scores = self.windows.get(CLUSTER)
        if scores is None or len(scores) < needed:
            return t.min_score
        q = float(np.quantile(np.fromiter(scores, float), 1.0 - rate, method="higher"))
        return max(t.min_score, min(q, MAX_QUANTILE_THRESHOLD))

    def muted(self, namespace: str) -> bool:
        override = self.settings.namespace_override(namespace)
        return bool(override is not None and override.mute)

    def observe(self, namespace: str, scores: list[float]) -> None:
        """Add scored (non-learning) profiles to the namespace's and the cluster's windows."""
        self._window(namespace).extend(scores)
        self._window(CLUSTER).extend(scores)

    def export(self) -> dict[str, list[float]]:
        return {ns: list(w) for ns, w in sorted(self.windows.items())}

    def load(self, data: dict[str, list[float]]) -> None:
        self.windows = {}
        for ns, scores in data.items():
            self._window(ns).extend(scores)
