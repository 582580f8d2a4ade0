"""The scorer the pipeline calls: baselines, thresholds, guards, alerts, then learning.

For each batch of profiles (emitted together by the pipeline, in a deterministic order):

1. choose each profile's baseline (workload → namespace → cluster, :mod:`baselines`) and
   score each baseline's rows with one vectorised ``score_many`` call;
2. compare with the namespace's threshold (:mod:`thresholds`, fixed for the whole batch so
   the order of profiles inside a batch does not matter); namespaces in learning mode never
   alert through the model, but a guard rule marked ``alone`` can alert there; muted
   namespaces never alert;
3. build explained alerts (:mod:`alerts`);
4. learn from the rows that did not alert and scored below ``learn_below_score`` (so a
   suspicious but sub-threshold pattern is not taught either), within the poisoning cap of
   :mod:`baselines`.

All learned state round-trips through :meth:`Scorer.snapshot` as msgpack (detectors'
own ``to_bytes``), never a pickle of the object.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from churnguard.alerts import Alert, build_alert, explain
from churnguard.baselines import LEARNING, Hierarchy, HierarchyState, level_of_key, namespace_of
from churnguard.config import Settings
from churnguard.errors import ModelError
from churnguard.featurespec import FeatureSpec
from churnguard.guards import fired
from churnguard.profile import Profile
from churnguard.thresholds import Thresholds

if TYPE_CHECKING:
    from churnguard.store import Bundle

__all__ = ["LEARNING", "Scored", "Scorer"]

NO_BASELINE = "-"
_SNAPSHOT_FORMAT = 2


class Scored(msgspec.Struct):
    """One profile as scored: the feature-capture row and, when it alerted, the alert."""

    profile: Profile
    score: float
    threshold: float
    level: str  # workload | namespace | cluster | learning | rules
    baseline_key: str
    alert: Alert | None = None


class _Snapshot(msgspec.Struct):
    format: int
    spec_version: str
    model_version: str
    hierarchy: HierarchyState
    thresholds: dict[str, list[float]]


class Scorer:
    """Scores profiles against learned baselines and decides which become alerts."""

    def __init__(self, settings: Settings, spec: FeatureSpec, bundle: Bundle | None = None) -> None:
        self.settings = settings
        self.spec = spec
        self.hierarchy = Hierarchy(settings.scoring, len(spec.names))
        self.thresholds = Thresholds(settings)
        self.model_version = f"{settings.scoring.detector}:online"
        if bundle is not None:
            self.use_bundle(bundle)

    # ---- hot reload -------------------------------------------------------------------------
    def use_bundle(self, bundle: Bundle) -> None:
        """(Re)start the bundle's baselines from its verified detectors; others keep learning."""
        if bundle.manifest.spec_version != self.spec.version:
            raise ModelError(
                f"bundle {bundle.manifest.bundle_version} is for feature spec"
                f" v{bundle.manifest.spec_version}, scoring uses v{self.spec.version}"
            )
        counts = {k: e.n_seen for k, e in bundle.manifest.entries.items()}
        self.hierarchy.seed_from(dict(bundle.models), counts)
        self.model_version = f"{bundle.manifest.bundle_version}+online"

    def use_settings(self, settings: Settings) -> None:
        """New thresholds, overrides and guard caps apply from the next batch; learned state
        is kept (a changed detector kind applies to baselines created from then on)."""
        self.settings = settings
        self.thresholds.settings = settings
        self.hierarchy.settings = settings.scoring

    # ---- scoring -----------------------------------------------------------------------------
    def score(self, profiles: list[Profile]) -> list[Scored]:
        """Score, threshold, guard and explain a batch, then learn from its quiet rows."""
        if not profiles:
            return []
        spec = self.spec
        raw = spec.matrix([p.values for p in profiles])
        X = spec.transform(raw)
        chosen = [self.hierarchy.choose(p) for p in profiles]
        scores = np.zeros(len(profiles))
        groups: dict[str, list[int]] = defaultdict(list)
        for i, b in enumerate(chosen):
            if b is not None:
                groups[b.key].append(i)
        for key in sorted(groups):
            idx = groups[key]
            scores[idx] = self.hierarchy.baselines[key].detector.score_many(X[idx])
        namespaces = [namespace_of(p) for p in profiles]
        thresholds = {ns: self.thresholds.threshold(ns) for ns in sorted(set(namespaces))}

        results: list[Scored] = []
        observed: dict[str, list[float]] = defaultdict(list)
        quiet: list[int] = []
        for i, p in enumerate(profiles):
            ns, b, score = namespaces[i], chosen[i], float(scores[i])
            threshold = thresholds[ns]
            learning = b is None or self.hierarchy.in_learning(p, self.settings)
            level = LEARNING if b is None or learning else level_of_key(b.key)
            key = NO_BASELINE if b is None else b.key
            guards = fired(p)
            model_alert = not learning and score >= threshold
            forced = learning and any(g.alone for g in guards)
            alert = None
            if (model_alert or forced) and not self.thresholds.muted(ns):
                recent = b.recent_values() if b is not None else np.empty((0, len(spec.names)))
                alert = build_alert(
                    p,
                    score=score,
                    threshold=threshold,
                    level=level,
                    baseline_key=key,
                    top=explain(spec, p.values, recent),
                    spec=spec,
                    rules=[g.name for g in guards],
                    rule_techniques=[g.technique for g in guards],
                    model_version=self.model_version,
                )
            if not learning:
                observed[ns].append(score)
            if alert is None and (b is None or score < self.settings.scoring.learn_below_score):
                quiet.append(i)
            results.append(Scored(p, score, threshold, level, key, alert))
        for ns in sorted(observed):
            self.thresholds.observe(ns, observed[ns])
        if quiet:
            self.hierarchy.learn([profiles[i] for i in quiet], X[quiet], raw[quiet])
        self.hierarchy.note_seen(profiles)
        return results

    # ---- checkpoints -------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """All learned state: detectors, recent values, namespace ages, threshold windows."""
        return msgspec.msgpack.encode(
            _Snapshot(
                format=_SNAPSHOT_FORMAT,
                spec_version=self.spec.version,
                model_version=self.model_version,
                hierarchy=self.hierarchy.export(),
                thresholds=self.thresholds.export(),
            )
        )

    def restore(self, data: bytes) -> None:
        """Replace all learned state with a :meth:`snapshot` (trusted storage only).

        Raises ``msgspec.DecodeError`` for unreadable bytes and ``ValueError`` for another
        format or feature spec, as :meth:`Pipeline.restore` does, so a driver starts fresh.
        """
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        if snap.format != _SNAPSHOT_FORMAT or snap.spec_version != self.spec.version:
            raise ValueError("scorer checkpoint is from another format or feature spec")
        self.hierarchy.load(snap.hierarchy)
        self.thresholds.load(snap.thresholds)
        self.model_version = snap.model_version
