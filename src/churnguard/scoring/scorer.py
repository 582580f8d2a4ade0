"""The scorer the pipeline calls: baselines, thresholds, guards, alerts, then learning.

For each batch of profiles (emitted together by the pipeline, in a deterministic order):

1. choose each profile's baseline (workload → namespace → cluster, :mod:`baselines`) and
   score every baseline's rows in one pass (:func:`~churnguard.scoring.detectors.grouped.
   score_groups`: the online forests of a tick are routed together);
2. compare with the namespace's threshold (:mod:`thresholds`, fixed for the whole batch so
   the order of profiles inside a batch does not matter); namespaces in learning mode never
   alert through the model, but a guard rule marked ``alone`` can alert there (one marked
   ``pages``, anywhere); muted namespaces never alert;
3. build explained alerts (:mod:`alerts`) unless one is only a known person's lifecycle
   action (:mod:`routine`), one per incident: a later window of an entity
   that already alerted is *folded* into that alert (``Scored.folded``, not paged again)
   unless it names a technique the entity has not alerted on or raises the severity; a
   beaconing implant, or a benign new workload polling a new host, pages once, not every
   five minutes;
4. hand every row to the :class:`~churnguard.scoring.learning.LearningGate`, the one place
   that decides what is learned (withheld, released, quarantined rows, the share cap), and
   learn what it lets through.

All learned state round-trips through :meth:`Scorer.snapshot` as msgpack (detectors'
own ``to_bytes``), never a pickle of the object.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from churnguard.alerts.alert import Alert, build_alert, campaign_alert, explain
from churnguard.alerts.incidents import Incident, Incidents
from churnguard.config import Settings
from churnguard.errors import ModelError
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import FeatureSpec
from churnguard.scoring.baselines import (
    LEARNING,
    Baseline,
    Hierarchy,
    HierarchyState,
    baseline_keys,
    gather,
    level_of_key,
    namespace_of,
    workload_of,
)
from churnguard.scoring.campaigns import Campaigns, CampaignState
from churnguard.scoring.detectors.grouped import score_groups
from churnguard.scoring.guards import Context, Guard, facts_of, fired, may_fire
from churnguard.scoring.learning import GateState, LearningGate, spawned_here
from churnguard.scoring.lives import LivesState, WorkloadLives, start_up_window
from churnguard.scoring.routine import (
    new_workload_routine,
    own_instance_routine,
    replica_routine,
    routine,
    shared_service_routine,
)
from churnguard.scoring.thresholds import Thresholds, ThresholdWindow

if TYPE_CHECKING:
    from churnguard.store import Bundle

__all__ = ["LEARNING", "Scored", "Scorer"]

NO_BASELINE = "-"
_NO_CONTEXT = Context()  # a row no guard can fire for: its alert quotes no guard's facts
_SNAPSHOT_FORMAT = 4


class Scored(msgspec.Struct):
    """One profile as scored: the feature-capture row and, when it alerted, the alert."""

    profile: Profile
    score: float
    threshold: float
    level: str  # workload | namespace | cluster | learning | rules
    baseline_key: str
    alert: Alert | None = None
    folded: bool = False  # alerted again, folded into the entity's earlier alert (not paged)
    withheld: bool = False  # the learning gate kept it out of the baselines and memory
    campaign: Alert | None = None  # it completed or joined a campaign (scoring/campaigns.py)
    # hosts this row does not teach the first-seen memory (LearningGate.kept_from_memory)
    kept_hosts: list[str] = msgspec.field(default_factory=list)


class _Snapshot(msgspec.Struct):
    format: int
    spec_version: str
    model_version: str
    hierarchy: HierarchyState
    thresholds: dict[str, ThresholdWindow]
    gate: GateState
    campaigns: CampaignState
    incidents: dict[str, Incident]
    lives: LivesState = msgspec.field(default_factory=LivesState)


class Scorer:
    """Scores profiles against learned baselines and decides which become alerts."""

    def __init__(self, settings: Settings, spec: FeatureSpec, bundle: Bundle | None = None) -> None:
        self.settings = settings
        self.spec = spec
        self.hierarchy = Hierarchy(settings.scoring, len(spec.names))
        self.thresholds = Thresholds(settings)
        self.gate = LearningGate(settings.scoring)
        self.campaigns = Campaigns()
        self.lives = WorkloadLives()  # what each workload's quiet pods read over their lives
        self.released: list[Profile] = []  # rows the last batch released from withholding
        self.incidents = Incidents()  # live entities that alerted: what they were paged for
        self.model_version = f"{settings.scoring.detector}:online"
        if bundle is not None:
            self.use_bundle(bundle)

    # ---- hot reload -------------------------------------------------------------------------
    def use_bundle(self, bundle: Bundle) -> None:
        """(Re)start the bundle's baselines from its verified detectors; others keep learning.

        The detectors are copied: a hot reload hands one loaded bundle to every shard of the
        process, and shards that shared its forests would learn each other's rows."""
        if bundle.manifest.spec_version != self.spec.version:
            raise ModelError(
                f"bundle {bundle.manifest.bundle_version} is for feature spec"
                f" v{bundle.manifest.spec_version}, scoring uses v{self.spec.version}"
            )
        counts = {k: e.n_seen for k, e in bundle.manifest.entries.items()}
        self.hierarchy.seed_from(copy.deepcopy(dict(bundle.models)), counts)
        self.model_version = f"{bundle.manifest.bundle_version}+online"

    def use_settings(self, settings: Settings) -> None:
        """New thresholds, overrides and guard caps apply from the next batch; learned state
        is kept (a changed detector kind applies to baselines created from then on)."""
        self.hierarchy.settings = settings.scoring  # first: it refuses an unknown detector
        self.settings = settings
        self.thresholds.settings = settings
        self.gate.settings = settings.scoring

    # ---- scoring -----------------------------------------------------------------------------
    def score(self, profiles: list[Profile]) -> list[Scored]:
        """Score, threshold, guard and explain a batch, then learn from its quiet rows."""
        self.released = []
        if not profiles:
            return []
        spec = self.spec
        raw = spec.matrix([p.values for p in profiles])
        X = spec.transform(raw)
        workloads = [workload_of(p) for p in profiles]  # once a row: keys, learning
        row_keys = [baseline_keys(p, w) for p, w in zip(profiles, workloads, strict=True)]
        chosen = [self.hierarchy.choose(p, k) for p, k in zip(profiles, row_keys, strict=True)]
        scores = np.zeros(len(profiles))
        groups: dict[str, list[int]] = defaultdict(list)
        for i, b in enumerate(chosen):
            if b is not None:
                groups[b.key].append(i)
        keys = sorted(groups)
        if keys:  # one scatter of every group's scores, not one put a baseline
            detectors = [self.hierarchy.baselines[key].detector for key in keys]
            got = score_groups(detectors, gather(X, [groups[k] for k in keys]))
            scores[[i for k in keys for i in groups[k]]] = np.concatenate(got)
        namespaces = [namespace_of(p) for p in profiles]
        thresholds = {ns: self.thresholds.threshold(ns) for ns in sorted(set(namespaces))}
        muted = {ns: self.thresholds.muted(ns) for ns in thresholds}
        in_learning = self.hierarchy.learning_flags(profiles, self.settings)
        levels = {key: level_of_key(key) for key in keys}
        shared, peers, gate, lives = self.campaigns.shared, self.lives.peers, self.gate, self.lives
        incidents, observe = self.incidents, self.campaigns.observe

        results: list[Scored] = []
        observed: dict[str, list[tuple[str, float]]] = defaultdict(list)
        quiet: list[int] = []
        released: list[Profile] = []
        for i, (p, ns, b, score) in enumerate(
            zip(profiles, namespaces, chosen, scores.tolist(), strict=True)
        ):
            threshold = thresholds[ns]
            learning = b is None or in_learning[i]
            level = LEARNING if learning else levels[b.key]  # type: ignore[union-attr]
            key = NO_BASELINE if b is None else b.key
            own = b is not None and b.key == row_keys[i][0]
            # the context only where a guard may hold or an archive's hosts are asked about
            # (kept_from_memory); elsewhere no guard fires and nothing reads it
            check = may_fire(p)
            if check or p.archive_shipped:
                ctx = Context(
                    workload_learning=not own,
                    namespace_learning=learning,
                    shared=partial(shared, ns=ns, now=p.window_end),
                    # a controller's replicas run the same code: one reading over its life
                    # far beyond the others is collecting. People's spawned servers read as
                    # their people do (their peers vouch only for one window: _yardstick)
                    peers_of=partial(peers, p)
                    if own and p.life_reads and p.entity.workload
                    else None,
                )
            else:
                ctx = _NO_CONTEXT
            guards = fired(p, ctx) if check else []
            model_alert = not learning and score >= threshold
            forced = any(g.pages or (learning and g.alone) for g in guards) if guards else False
            silenced = muted[ns]

            args = (p, score, threshold, level, key, b, guards, ctx)
            alert = self._alert(*args) if (model_alert or forced) and not silenced else None
            if alert is not None and not forced and self._routine(p, alert, b):
                alert = None  # an operator's or a replica's routine (scoring/routine.py)
            entity = p.entity.key()
            joined = observe(p, entity)
            campaign = None
            if joined is not None and not learning and not silenced:
                members = [m.entity for m in joined[1]]
                campaign = campaign_alert(alert or self._alert(*args), joined[0], members)
            entity_alerted = entity in incidents
            if alert is not None or campaign is not None or entity_alerted:
                self.campaigns.paged(entity)  # what pages does not teach the shared hosts
            if not learning and not (forced and any(not g.in_tail for g in guards)):
                # a new workload's burst of replicas, paged by a guard, is not part of the
                # namespace's unusual tail: it would lift the bar for every other entity
                observed[ns].append((entity, score))
            folded = False
            if alert is not None:
                folded = incidents.note(entity, p.window_end, alert)
            elif campaign is None and entity_alerted:
                incidents.calm(entity, p.window_start)
            verdict = gate.decide(
                p,
                score=score,
                judged=b is not None,
                learning=learning,
                alerted=alert is not None or campaign is not None,
                entity_alerted=entity_alerted,
                guarded=bool(guards),
            )
            if verdict.learn_now:
                quiet.append(i)
                lives.learn(p, row_keys[i][0], entity)
            if verdict.released:
                released.extend(verdict.released)
            if p.final:
                incidents.close(entity)
            paged = None if folded else alert
            kept = gate.kept_from_memory(p, shared=ctx.shared) if verdict.withheld else []
            results.append(
                Scored(
                    p, score, threshold, level, key, paged, folded, verdict.withheld, campaign, kept
                )
            )
        for ns in sorted(observed):
            owners, values = zip(*observed[ns], strict=True)
            self.thresholds.observe(ns, values, owners)
        self.released = released
        learn = [profiles[i] for i in quiet] + released
        if learn:
            # this batch's rows are already in both views (as they are when every row is
            # learned: Hierarchy.learn only takes rows from them); only released rows need them
            if len(quiet) == len(profiles):
                raw_learn, x_learn = raw, X
            else:
                raw_learn, x_learn = raw.take(quiet, axis=0), X.take(quiet, axis=0)
            if released:
                raw_released = spec.matrix([p.values for p in released])
                raw_learn = np.vstack([raw_learn, raw_released])
                x_learn = np.vstack([x_learn, spec.transform(raw_released)])
            learned_workloads = [workloads[i] for i in quiet] + [workload_of(p) for p in released]
            learned_keys = [row_keys[i] for i in quiet] + [
                baseline_keys(p, w)
                for p, w in zip(released, learned_workloads[len(quiet) :], strict=True)
            ]
            self.hierarchy.learn(
                learn, x_learn, raw_learn, self.gate.admits, learned_workloads, learned_keys
            )
        self.hierarchy.note_seen(profiles)
        return results

    def _routine(self, p: Profile, alert: Alert, b: Baseline | None) -> bool:
        """A known person's lifecycle action (a pod, or a person's own instance), a
        controller's young pod talking only to the cluster's shared services, a new
        workload's replica calling the API its code uses, or a replica doing what its
        workload did before (:meth:`_yardstick`)."""
        if routine(p, alert) or own_instance_routine(p, alert):
            return True
        ns = p.entity.namespace or ""
        shared = partial(self.campaigns.shared, ns=ns, now=p.window_end)
        if shared_service_routine(p, alert, shared):
            return True
        own = b is not None and b.key == baseline_keys(p)[0]
        judged_by = None if own else self._learned_max(b)  # the namespace's quiet windows
        if new_workload_routine(p, alert, workload_learning=not own, namespace_max=judged_by):
            return True
        return replica_routine(p, alert, self._yardstick(p, b if own else None))

    def _learned_max(self, b: Baseline | None) -> dict[str, float] | None:
        """The largest value of each feature baseline ``b`` learned (None: nothing yet)."""
        if b is None or not b.recent:
            return None
        return dict(zip(self.spec.names, b.recent_values().max(axis=0), strict=True))

    def _yardstick(self, p: Profile, own: Baseline | None) -> dict[str, float] | None:
        """What a replica's alert is measured against (``routine.replica_routine``): for its
        last row, the largest values its own mature baseline (``own``, None when another
        judged it) learned; for a live window of a pod its namespace's account spawned,
        the other pods' one-window peaks (``lives.Peers.peak``); for a controller's pod's
        first window, what the workload's other pods read in theirs
        (``lives.WorkloadLives.start_up``); else nothing."""
        if p.final:
            return self._learned_max(own)
        if spawned_here(p):
            peers = self.lives.peers(p)
            return None if peers is None else peers.peak
        if p.entity.workload and start_up_window(p):
            return self.lives.start_up(p)
        return None

    def _alert(
        self,
        p: Profile,
        score: float,
        threshold: float,
        level: str,
        key: str,
        b: Baseline | None,
        guards: list[Guard],
        ctx: Context,
    ) -> Alert:
        """The explained alert of one row, against the baseline that judged it."""
        spec = self.spec
        if b is not None and b.recent:
            recent, view = b.recent_values(), b.recent.view(spec.transform)
        else:
            recent, view = np.empty((0, len(spec.names))), None
        return build_alert(
            p,
            score=score,
            threshold=threshold,
            level=level,
            baseline_key=key,
            top=explain(spec, p.values, recent, recent_view=view),
            spec=spec,
            rules=[g.name for g in guards],
            rule_techniques=[g.technique for g in guards],
            model_version=self.model_version,
            rule_facts=facts_of(guards, p, ctx),
        )

    # ---- checkpoints -------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """All learned state: detectors, recent values, namespace ages, threshold windows,
        the learning gate's held rows and open incidents."""
        return msgspec.msgpack.encode(
            _Snapshot(
                format=_SNAPSHOT_FORMAT,
                spec_version=self.spec.version,
                model_version=self.model_version,
                hierarchy=self.hierarchy.export(),
                thresholds=self.thresholds.export(),
                gate=self.gate.export(),
                campaigns=self.campaigns.export(),
                incidents=self.incidents.export(),
                lives=self.lives.export(),
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
        self.gate.load(snap.gate)
        self.campaigns.load(snap.campaigns)
        self.incidents.load(snap.incidents)
        self.lives.load(snap.lives)
        self.model_version = snap.model_version
