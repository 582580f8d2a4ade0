"""Per-namespace threshold tuning from captured scores (``churnguard thresholds suggest``).

The service's default threshold is a streaming score quantile per namespace with a floor
(``thresholds.target_alert_rate``, ``thresholds.min_score``). An operator who wants a fixed,
reviewed value per namespace instead takes a capture of what the service scored, picks a
target alert rate here, checks the alert volume it implies (and, with labelled data, the
precision and recall it gives), and writes ``[namespaces."<ns>"] threshold = ...`` overrides
that ``churnguard.config.load_settings`` reads.

Everything mirrors the service: alerting is ``score >= threshold``; the quantile is the
service's entity tail (:func:`churnguard.scoring.thresholds.entity_quantile`: each entity counted
at its highest score, so one long-running implant cannot set the bar); instances are tuned under the
pseudo-namespace ``_cloud`` their baselines and overrides use; rows scored in learning mode
are left out (the service never thresholds them). Precision and recall are counted per
entity (a pod or an instance is caught when any of its windows reaches the threshold), the
unit an analyst triages and the unit labels are written in.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from churnguard.errors import ConfigError
from churnguard.offline import evaluate
from churnguard.offline.capture import CaptureRow
from churnguard.scoring.baselines import CLOUD_NAMESPACE
from churnguard.scoring.scorer import LEARNING
from churnguard.scoring.thresholds import entity_quantile

_DAY_S = 86_400.0


def group_of(namespace: str | None) -> str:
    """The namespace a row or label is tuned under (instances: ``_cloud``, as in baselines)."""
    return namespace if namespace is not None else CLOUD_NAMESPACE


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """What one threshold does to one namespace's captured rows."""

    threshold: float
    alerting_profiles: int
    alerts_per_day: float
    flagged_entities: int
    true_positives: int | None = None  # None without labels
    malicious_entities: int | None = None

    @property
    def precision(self) -> float | None:
        if self.true_positives is None or self.flagged_entities == 0:
            return None
        return self.true_positives / self.flagged_entities

    @property
    def recall(self) -> float | None:
        if self.true_positives is None or not self.malicious_entities:
            return None
        return self.true_positives / self.malicious_entities


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The suggested threshold of one namespace and how it would behave on the capture."""

    namespace: str
    profiles: int
    quantile: float  # the raw score quantile at 1 - target rate, before the floor
    at: OperatingPoint

    @property
    def threshold(self) -> float:
        return self.at.threshold


class NamespaceScores:
    """One namespace's captured scores, grouped per entity so thresholds can be swept fast."""

    def __init__(self, rows: Sequence[CaptureRow], span_days: float) -> None:
        self.scores = np.array([r.score for r in rows], dtype=float)
        self.owners = [r.profile.entity.key() for r in rows]  # whose score each is
        best: dict[str, float] = {}
        for r in rows:
            key = r.profile.entity.key()
            best[key] = max(best.get(key, -np.inf), r.score)
        self.entity_keys = list(best)
        self.entity_max = np.array([best[k] for k in self.entity_keys], dtype=float)
        self.span_days = span_days

    def __len__(self) -> int:
        return len(self.scores)

    def at(self, threshold: float, malicious: set[str] | None = None) -> OperatingPoint:
        """Alert volume and (with the labelled entity keys) entity-level hits at a threshold."""
        alerting = int(np.count_nonzero(self.scores >= threshold))
        flagged_mask = self.entity_max >= threshold
        tp = None
        if malicious is not None:
            tp = sum(
                1
                for k, hit in zip(self.entity_keys, flagged_mask, strict=True)
                if hit and k in malicious
            )
        return OperatingPoint(
            threshold=float(threshold),
            alerting_profiles=alerting,
            alerts_per_day=alerting / self.span_days,
            flagged_entities=int(np.count_nonzero(flagged_mask)),
            true_positives=tp,
            malicious_entities=None if malicious is None else len(malicious),
        )

    def sweep(
        self, thresholds: Iterable[float], malicious: set[str] | None = None
    ) -> list[OperatingPoint]:
        """Operating points over a grid of thresholds (the notebooks' curves)."""
        return [self.at(t, malicious) for t in thresholds]


def score_quantile(
    scores: np.ndarray, target_rate: float, entities: Sequence[str] | None = None
) -> float:
    """The service's tail (:func:`thresholds.entity_quantile`): the score the
    ``target_rate * n``-th most unusual entity reached; 0 with no scores.

    Without ``entities`` every score counts as its own entity (the plain quantile).
    """
    if not len(scores):
        return 0.0
    owners = entities if entities is not None else [str(i) for i in range(len(scores))]
    return entity_quantile(list(scores), owners, target_rate)


def quantile_threshold(
    scores: np.ndarray,
    target_rate: float,
    min_score: float,
    entities: Sequence[str] | None = None,
) -> float:
    """:func:`score_quantile` floored at ``min_score``, like the service's thresholds."""
    return max(score_quantile(scores, target_rate, entities), float(min_score))


def capture_span_days(rows: Sequence[CaptureRow]) -> float:
    """Event time the capture covers, in days (at least one window, so rates stay finite)."""
    if not rows:
        return 1.0
    start = min(r.profile.window_start for r in rows)
    end = max(r.profile.window_end for r in rows)
    return max(end - start, 300.0) / _DAY_S


def by_namespace(rows: Iterable[CaptureRow]) -> dict[str, list[CaptureRow]]:
    """Thresholded rows (not learning mode) grouped by namespace, in sorted order."""
    groups: dict[str, list[CaptureRow]] = defaultdict(list)
    for r in rows:
        if r.level != LEARNING:
            groups[group_of(r.profile.entity.namespace)].append(r)
    return dict(sorted(groups.items()))


def read_labels(path: str | Path) -> dict[str, set[str]]:
    """Malicious entity keys (``EntityRef.key()``) per namespace group from ``labels.jsonl``."""
    out: dict[str, set[str]] = defaultdict(set)
    for label in evaluate.read_labels(path):
        out[group_of(label.namespace)].add(label.key())
    return dict(out)


def suggest(
    rows: Sequence[CaptureRow],
    target_rate: float,
    *,
    min_score: float,
    labels: dict[str, set[str]] | None = None,
) -> list[Suggestion]:
    """One suggestion per namespace in the capture (plus labelled namespaces it lacks)."""
    if not 0.0 < target_rate < 1.0:
        raise ConfigError(f"target rate must be in (0, 1), got {target_rate}")
    span = capture_span_days(rows)
    groups = by_namespace(rows)
    for ns in labels or {}:
        groups.setdefault(ns, [])
    out = []
    for ns in sorted(groups):
        scores = NamespaceScores(groups[ns], span)
        raw_q = score_quantile(scores.scores, target_rate, scores.owners)
        threshold = max(raw_q, float(min_score))
        malicious = None if labels is None else labels.get(ns, set())
        out.append(Suggestion(ns, len(scores), raw_q, scores.at(threshold, malicious)))
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def render_table(suggestions: Sequence[Suggestion], *, with_labels: bool) -> str:
    """The plain-text table ``thresholds suggest`` prints."""
    head = f"{'namespace':<24} {'profiles':>8} {'threshold':>9} {'alerts/day':>10}"
    if with_labels:
        head += f" {'malicious':>9} {'caught':>6} {'precision':>9} {'recall':>6}"
    lines = [head]
    for s in suggestions:
        line = (
            f"{s.namespace:<24} {s.profiles:>8,} {s.threshold:>9.4f} {s.at.alerts_per_day:>10.1f}"
        )
        if with_labels:
            line += (
                f" {s.at.malicious_entities or 0:>9} {s.at.true_positives or 0:>6}"
                f" {_fmt(s.at.precision):>9} {_fmt(s.at.recall):>6}"
            )
        lines.append(line)
    return "\n".join(lines)


def config_fragment(thresholds: dict[str, float], *, header: Sequence[str] = ()) -> str:
    """``[namespaces."<ns>"] threshold = ...`` TOML for ``churnguard.config.load_settings``."""
    lines = [f"# {h}" for h in header]
    for ns, value in sorted(thresholds.items()):
        lines += ["", f"[namespaces.{json.dumps(ns)}]", f"threshold = {value:.6f}"]
    return "\n".join(lines) + "\n"


def write_config(path: str | Path, thresholds: dict[str, float], *, header: Sequence[str] = ()):
    """Write :func:`config_fragment` to ``path`` (parents created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(config_fragment(thresholds, header=header))
    return p
