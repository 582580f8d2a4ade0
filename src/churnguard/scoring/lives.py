"""What each workload's pods did over their lives: the yardstick for collection spread thin,
and for a spawned server doing what the other servers of its spawner do.

A collector that reads a few objects every half hour from a long-running pod keeps every
five-minute window inside its workload's baseline; what gives it away is its life: over
hours it reads far more, and far faster, than any other pod of its workload read over
theirs. This memory keeps, per workload (its baseline key), the read totals of its most
recent pods (``Profile.life_reads``: repository reads, distinct objects, secrets) and how
long each had lived, learned only from windows the learning gate let its baselines learn
(quiet ones), so a pod that paged never becomes the yardstick. :meth:`WorkloadLives.peers`
answers for one pod with the largest total and rate among the *other* pods, so the pod's
own early windows never vouch for its later ones.

It also keeps each pod's *peak*: the largest value of each collection fact
(:data:`PEAK_FACTS`: reads, archives, bytes sent out of the cluster) in one quiet window
(a whole short life's row is not a window and is left out). :attr:`Peers.peak`, the largest
peak among the other pods, is what a live window of a pod its namespace's own service
account spawned (a JupyterHub user's server) is measured against by
``routine.replica_routine``: a data scientist's notebook reading forty parquet files in
five minutes is what the hub's other servers do, the same window from a server that never
had a peer doing it is not. Controllers' pods and such spawned pods are kept (a person's
own bare pod is not: nothing recurs across one person's one-off pods).

And each pod's *start-up*: its reads (:data:`START_UP_FACTS`) in its first window of life
(:func:`start_up_window`), if that window was quiet. :meth:`WorkloadLives.start_up`, the
largest among the other pods, is what a controller's new replica's own first window is
measured against: a one-replica Deployment reads its secret once as each pod starts, so its
baseline holds a start-up window or two among hundreds of quiet polling windows and a
rollout's new pod looks rare (tuning seed 35: config-reloader's third pod read 1 secret,
2 objects at start, as its second had, and paged at 0.948). Only what earlier pods read
as *they* started vouches, never the pod's own windows. State is in the scorer's snapshot.
"""

from __future__ import annotations

import msgspec

from churnguard.alerts.alert import TECHNIQUE_FEATURES
from churnguard.profiling.features import WHOLE_LIFE_S
from churnguard.profiling.profile import Profile
from churnguard.scoring.baselines import baseline_keys
from churnguard.scoring.learning import spawned_here

PODS_KEPT = 16  # most recent pods remembered per workload (oldest dropped)
WORKLOADS_KEPT = 20_000  # workloads remembered (oldest dropped)
PEERS_MIN = 3  # other pods of the workload with a known life before it is a yardstick
# what a start-up vouches for: the reads behind T1213 only. An archive or upload in a new
# pod's first window pages whatever its predecessors did at theirs (a Deployment whose
# learning period taught it to ship archives as it starts: attack-learning-period)
START_UP_FACTS = frozenset(TECHNIQUE_FEATURES["T1213"])
# a life shorter than this counts as this long for its read rate: a pod that read a few
# objects in its first minute is not reading hundreds an hour
RATE_FLOOR_S = 600.0
# what a pod collects and sends, one window at a time: the facts behind T1213, T1560.002 and
# T1041 (alerts.TECHNIQUE_FEATURES) that are amounts (new_destinations is memory's, not one)
PEAK_FACTS = tuple(
    sorted(
        {f for t in ("T1213", "T1560.002", "T1041") for f in TECHNIQUE_FEATURES[t]}
        - {"new_destinations"}
    )
)


class Life(msgspec.Struct, array_like=True):
    """One pod's reads so far (``Profile.life_reads``), the seconds it had lived, its
    largest :data:`PEAK_FACTS` values in one quiet window and its :data:`START_UP_FACTS`
    values in its quiet start-up window (None: its start-up was not seen, or not quiet)."""

    reads: dict[str, float]
    lived: float
    peak: dict[str, float] = {}
    start: dict[str, float] | None = None


class Peers(msgspec.Struct, frozen=True):
    """The largest life totals, read rates (per hour of life) and one-window peaks of a
    workload's other pods."""

    pods: int
    total: dict[str, float]
    rate: dict[str, float]
    peak: dict[str, float] = {}


class LivesState(msgspec.Struct):
    workloads: dict[str, dict[str, Life]] = {}


def lived(p: Profile) -> float:
    """Seconds the entity had lived at the end of this window (as far as telemetry saw)."""
    return max(0.0, p.window_end - p.first_seen)


def rate(total: float, seconds: float) -> float:
    """Reads per hour of life, a life under ``RATE_FLOOR_S`` counted as that long."""
    return total * 3600.0 / max(seconds, RATE_FLOOR_S)


def whole_life(p: Profile) -> bool:
    """The row is an ended short life's whole story (features.WHOLE_LIFE_S), not a window."""
    return p.final and p.values.get("lifetime_s", WHOLE_LIFE_S + 1) <= WHOLE_LIFE_S


def start_up_window(p: Profile, whole: bool | None = None) -> bool:
    """The row is a pod's first window of life, its creation seen (not a whole life's row):
    what a replica reads as it starts (its secret, its ConfigMap). ``whole`` is
    :func:`whole_life` of the row when the caller has it already."""
    return (
        p.entity.kind == "pod"
        and p.created_by is not None
        and p.window_start <= p.first_seen < p.window_end
        and not (whole_life(p) if whole is None else whole)
    )


def collected(p: Profile) -> dict[str, float]:
    """The row's non-zero :data:`PEAK_FACTS` values."""
    get = p.values.get
    return {name: v for name in PEAK_FACTS if (v := get(name, 0.0)) > 0}


def kept(p: Profile) -> bool:
    """A pod whose lives recur: a controller's, or one its namespace's own account spawned."""
    return p.entity.kind == "pod" and bool(p.entity.workload or spawned_here(p))


class WorkloadLives:
    """Per workload, the lives of its recent pods that stayed quiet."""

    def __init__(self) -> None:
        self.workloads: dict[str, dict[str, Life]] = {}

    def learn(self, p: Profile, key: str | None = None, entity: str | None = None) -> None:
        """Remember a quiet window's life so far (a controller's or a spawned pod only);
        ``key`` is its workload baseline key and ``entity`` its entity key when the caller
        has them already."""
        if not kept(p):
            return
        if key is None:
            key = baseline_keys(p)[0]
        workloads = self.workloads
        pods = workloads.pop(key, None)
        if pods is None:
            if len(workloads) >= WORKLOADS_KEPT:
                del workloads[next(iter(workloads))]
            pods = {}
        workloads[key] = pods  # most recently used last
        if entity is None:
            entity = p.entity.key()
        before = pods.pop(entity, None)
        peak = before.peak if before is not None else {}
        start = before.start if before is not None else None
        if not whole_life(p):
            got = collected(p)
            if got:
                higher = {name: v for name, v in got.items() if v > peak.get(name, 0.0)}
                if higher:  # a new dict, never the earlier Life's, which a snapshot may hold
                    peak = {**peak, **higher}
            if start_up_window(p, whole=False):
                start = {f: v for f, v in got.items() if f in START_UP_FACTS}
        pods[entity] = Life(dict(p.life_reads), lived(p), peak, start)
        while len(pods) > PODS_KEPT:
            del pods[next(iter(pods))]

    def peers(self, p: Profile) -> Peers | None:
        """The other pods' largest totals, rates and peaks, or None under ``PEERS_MIN`` of them."""
        if not kept(p):
            return None
        pods = self.workloads.get(baseline_keys(p)[0], {})
        entity = p.entity.key()
        others = [life for key, life in pods.items() if key != entity]
        if len(others) < PEERS_MIN:
            return None
        total: dict[str, float] = {}
        fastest: dict[str, float] = {}
        peak: dict[str, float] = {}
        for life in others:
            for name, value in life.reads.items():
                total[name] = max(total.get(name, 0.0), value)
                fastest[name] = max(fastest.get(name, 0.0), rate(value, life.lived))
            for name, value in life.peak.items():
                peak[name] = max(peak.get(name, 0.0), value)
        return Peers(len(others), total, fastest, peak)

    def start_up(self, p: Profile) -> dict[str, float] | None:
        """The largest :data:`START_UP_FACTS` values the workload's *other* pods reached in their
        quiet start-up windows, or None when none of them has one. One is enough: a
        one-replica Deployment has one pod a rollout, and each was its controller's."""
        if not kept(p):
            return None
        pods = self.workloads.get(baseline_keys(p)[0], {})
        entity = p.entity.key()
        starts = [
            life.start for key, life in pods.items() if key != entity and life.start is not None
        ]
        if not starts:
            return None
        most: dict[str, float] = {}
        for start in starts:
            for name, value in start.items():
                most[name] = max(most.get(name, 0.0), value)
        return most

    def export(self) -> LivesState:
        return LivesState(workloads={k: dict(v) for k, v in self.workloads.items()})

    def load(self, state: LivesState) -> None:
        self.workloads = {k: dict(v) for k, v in state.workloads.items()}
