"""What each workload's pods read over their whole lives: the yardstick for collection
spread thin.

A collector that reads a few objects every half hour from a long-running pod keeps every
five-minute window inside its workload's baseline; what gives it away is its life: over
hours it reads far more, and far faster, than any other pod of its workload read over
theirs. This memory keeps, per workload (its baseline key), the read totals of its most
recent pods (``Profile.life_reads``: repository reads, distinct objects, secrets) and how
long each had lived, learned only from windows the learning gate let its baselines learn
(quiet ones), so a pod that paged never becomes the yardstick. :meth:`WorkloadLives.peers`
answers for one pod with the largest total and rate among the *other* pods, so the pod's
own early windows never vouch for its later ones. State is in the scorer's snapshot.
"""

from __future__ import annotations

import msgspec

from churnguard.profiling.profile import Profile
from churnguard.scoring.baselines import baseline_keys

PODS_KEPT = 16  # most recent pods remembered per workload (oldest dropped)
WORKLOADS_KEPT = 20_000  # workloads remembered (oldest dropped)
PEERS_MIN = 3  # other pods of the workload with a known life before it is a yardstick
# a life shorter than this counts as this long for its read rate: a pod that read a few
# objects in its first minute is not reading hundreds an hour
RATE_FLOOR_S = 600.0


class Life(msgspec.Struct, array_like=True):
    """One pod's reads so far (``Profile.life_reads``) and the seconds it had lived."""

    reads: dict[str, float]
    lived: float


class Peers(msgspec.Struct, frozen=True):
    """The largest life totals and read rates (per hour of life) of a workload's other pods."""

    pods: int
    total: dict[str, float]
    rate: dict[str, float]


class LivesState(msgspec.Struct):
    workloads: dict[str, dict[str, Life]] = {}


def lived(p: Profile) -> float:
    """Seconds the entity had lived at the end of this window (as far as telemetry saw)."""
    return max(0.0, p.window_end - p.first_seen)


def rate(total: float, seconds: float) -> float:
    """Reads per hour of life, a life under ``RATE_FLOOR_S`` counted as that long."""
    return total * 3600.0 / max(seconds, RATE_FLOOR_S)


class WorkloadLives:
    """Per workload, the whole-life reads of its recent pods that stayed quiet."""

    def __init__(self) -> None:
        self.workloads: dict[str, dict[str, Life]] = {}

    def learn(self, p: Profile) -> None:
        """Remember a quiet window's life so far (a controller's pod only)."""
        if p.entity.kind != "pod" or not p.entity.workload:
            return
        key = baseline_keys(p)[0]
        pods = self.workloads.pop(key, None)
        if pods is None:
            if len(self.workloads) >= WORKLOADS_KEPT:
                del self.workloads[next(iter(self.workloads))]
            pods = {}
        self.workloads[key] = pods  # most recently used last
        entity = p.entity.key()
        pods.pop(entity, None)
        pods[entity] = Life(dict(p.life_reads), lived(p))
        while len(pods) > PODS_KEPT:
            del pods[next(iter(pods))]

    def peers(self, p: Profile) -> Peers | None:
        """The other pods' largest totals and rates, or None under ``PEERS_MIN`` of them."""
        if p.entity.kind != "pod" or not p.entity.workload:
            return None
        pods = self.workloads.get(baseline_keys(p)[0], {})
        entity = p.entity.key()
        others = [life for key, life in pods.items() if key != entity]
        if len(others) < PEERS_MIN:
            return None
        total: dict[str, float] = {}
        fastest: dict[str, float] = {}
        for life in others:
            for name, value in life.reads.items():
                total[name] = max(total.get(name, 0.0), value)
                fastest[name] = max(fastest.get(name, 0.0), rate(value, life.lived))
        return Peers(len(others), total, fastest)

    def export(self) -> LivesState:
        return LivesState(workloads={k: dict(v) for k, v in self.workloads.items()})

    def load(self, state: LivesState) -> None:
        self.workloads = {k: dict(v) for k, v in state.workloads.items()}
