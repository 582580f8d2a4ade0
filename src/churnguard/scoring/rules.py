"""The static rules the detection strategies imply, as a scorer: the comparison baseline.

These are the rules a team writes first (the strategy table of ``../shared/DESIGN.md`` read
literally), and the reason churnguard learns baselines instead: CronJobs, CI runners and
spot reclaims delete short-lived pods and instances all day, and backup jobs write archives
and upload hundreds of MB (docs/scenarios.md). ``churnguard evaluate`` runs them side by
side with the learned models to show how noisy they are at the recall they reach.

:class:`StaticRuleScorer` has the interface of :class:`churnguard.scoring.scorer.Scorer`, so the
pipeline and both drivers take either. A rule has no baseline, so its explanation reports a
baseline median of 0 and the 100th percentile: the rule's feature is what fired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from churnguard.alerts.alert import FeatureExplanation, build_alert
from churnguard.alerts.incidents import Incident, Incidents
from churnguard.config import Settings
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import FeatureSpec
from churnguard.scoring.scorer import Scored

if TYPE_CHECKING:
    from churnguard.store import Bundle

LEVEL = "rules"
MODEL_VERSION = "static-rules"
SCORE_FIRED = 1.0
THRESHOLD = 0.5
NO_RULE = "-"


@dataclass(frozen=True, slots=True)
class StaticRule:
    """Fires when ``feature`` is above ``limit`` (``above``) or below it, on entities of
    ``kind`` (None = both); ``final_only`` for lifetimes, which mean something only once
    the entity has ended (an open window's lifetime is the feature's "missing" value)."""

    name: str
    technique: str
    doc: str
    kind: str | None
    feature: str
    limit: float
    above: bool
    final_only: bool = False

    def holds(self, profile: Profile) -> bool:
        if self.kind is not None and profile.entity.kind != self.kind:
            return False
        if self.final_only and not profile.final:
            return False
        value = profile.values.get(self.feature)
        if value is None:
            return False
        return value > self.limit if self.above else value < self.limit


STATIC_RULES: tuple[StaticRule, ...] = (
    # T1578.003 "containers deleted to evade": the adversary deletes the pod minutes later
    StaticRule(
        "pod-deleted-within-5-min",
        "T1578.003",
        "a pod deleted less than 5 minutes after it was created",
        "pod",
        "lifetime_s",
        300.0,
        above=False,
        final_only=True,
    ),
    # T1560.002 "archive via library": an archive file written inside a container
    StaticRule(
        "archive-written-in-container",
        "T1560.002",
        "an archive file written inside a container",
        "pod",
        "archive_writes",
        0.0,
        above=True,
    ),
    # T1560.002 + T1041 exfiltration: a large upload in one window
    StaticRule(
        "egress-over-100mb",
        "T1560.002",
        "more than 100 MB sent by one entity in one window",
        None,
        "egress_bytes",
        1e8,
        above=True,
    ),
    # T1578.003 for cloud compute: an instance run and terminated within the hour
    StaticRule(
        "instance-terminated-within-1-h",
        "T1578.003",
        "an EC2 instance terminated less than 1 hour after launch",
        "instance",
        "lifetime_s",
        3600.0,
        above=False,
        final_only=True,
    ),
)


class StaticRuleScorer:
    """Alerts on every profile for which any static rule holds (score 1 > threshold 0.5).

    Its only state is the open incidents (:mod:`incidents`): a rule that holds on every
    window of an entity pages once, as churnguard's model does, so the two are compared
    on the same alert grouping. ``use_bundle`` has nothing to do; it exists because the
    drivers hot-reload whatever scorer they are given.
    """

    model_version = MODEL_VERSION

    def __init__(
        self,
        settings: Settings,
        spec: FeatureSpec,
        bundle: Bundle | None = None,
        rules: tuple[StaticRule, ...] = STATIC_RULES,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.rules = rules
        self.incidents = Incidents()

    def score(self, profiles: list[Profile]) -> list[Scored]:
        """One :class:`Scored` per profile; an alert when a rule holds and the namespace is
        not muted by config (operators mute rules the same way they mute the model)."""
        out: list[Scored] = []
        for p in profiles:
            hits = [r for r in self.rules if r.holds(p)]
            key = "+".join(r.name for r in hits) or NO_RULE
            alert = None
            if hits and not self._muted(p):
                alert = build_alert(
                    p,
                    score=SCORE_FIRED,
                    threshold=THRESHOLD,
                    level=LEVEL,
                    baseline_key=key,
                    top=[_explain(r, p) for r in hits],
                    spec=self.spec,
                    rules=[r.name for r in hits],
                    rule_techniques=[r.technique for r in hits],
                    model_version=MODEL_VERSION,
                )
            folded = alert is not None and self.incidents.note(p.entity.key(), p.window_end, alert)
            if alert is None:
                self.incidents.calm(p.entity.key(), p.window_start)
            if p.final:
                self.incidents.close(p.entity.key())
            score = SCORE_FIRED if hits else 0.0
            out.append(Scored(p, score, THRESHOLD, LEVEL, key, None if folded else alert, folded))
        return out

    def _muted(self, p: Profile) -> bool:
        override = self.settings.namespace_override(p.entity.namespace)
        return override is not None and override.mute

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.incidents.export())

    def restore(self, data: bytes) -> None:
        """Open incidents only: rules learn nothing."""
        self.incidents.load(msgspec.msgpack.decode(data, type=dict[str, Incident]))

    def use_bundle(self, bundle: Bundle) -> None:
        """Rules do not load models."""

    def use_settings(self, settings: Settings) -> None:
        self.settings = settings


def _explain(rule: StaticRule, p: Profile) -> FeatureExplanation:
    return FeatureExplanation(
        feature=rule.feature,
        observed=round(p.values[rule.feature], 3),
        baseline_median=0.0,
        baseline_percentile=100.0,
        contribution=0.0,
        doc=f"static rule {rule.name}: {rule.doc}",
    )
