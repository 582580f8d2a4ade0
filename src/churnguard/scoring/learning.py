"""The learning gate: the one place that decides what the baselines and memories learn.

An online model learns from what it sees, so an attacker who acts while a baseline is
learning (a new namespace, a new workload, a fresh start) would teach it that the attack is
normal. The gate stands between scoring and learning (the idea of river's
``anomaly.QuantileFilter``: only rows the model does not find unusual update it):

* **Withheld**: a row that alerted, a row of an entity that alerted earlier in its life, a
  row that hit a guard rule (also in learning mode, where nothing pages through the
  model), a row scoring at or above ``learn_below_score``, and in learning mode a row a
  mature baseline scored at or above ``learning_withhold_score``. Withheld rows are not
  learned, so the same behaviour stays alertable later. Both score bars are off (1.0) by
  default: with range novelty every new-but-benign value scores near 1 in a new namespace,
  and a row never learned keeps scoring high (on the hard mix, 0.99 in learning mode kept
  CI runners out of their baselines and multiplied false alerts).
* **Released**: withheld rows wait per controller-owned workload and are learned once
  ``release_after_entities`` distinct entities of that workload produced them (a CronJob
  whose every run now reads more objects): behaviour that recurs on separate runs of one
  controller is the workload's own. When a guard held for any of them, they must also span
  ``RELEASE_GUARDED_AFTER_S`` (6 h) of event time: a new hourly log archiver shipping to a
  bucket its namespace never used becomes normal after a few hours of runs, a burst of
  replicas shipping archives to a new host in a new Deployment's first hours does not.
  Released rows also teach the first-seen memory (their destinations, images, owners,
  identities), or the archiver's bucket would stay "new" and page on every run. Bare pods
  and instances never release: whoever holds the credentials can make them again and
  again; except bare pods that a service account of their own namespace spawned
  (JupyterHub's servers), whose controller that account is.
* **Quarantined**: rows of a bare pod or an instance created by a person are held until
  that entity ends, and learned then only if nothing of its life was withheld: a person's
  one-off pod or instance enters a baseline only once its whole story is known.
* **Share cap**: a workload's rows join a shared (namespace, cluster) baseline only while
  the workload holds at most its cap of that baseline's recent rows, so a busy workload (or
  an attacker's) cannot crowd the others out.
* **First-seen memory**: only windows that did not page teach it what is known
  (destinations, images, owners, identities, first contacts), and a quarantined window
  only through its release; see
  :meth:`FeatureBuilder.remember`. A withheld window that did not page still does: a
  guard that holds until a destination is known would otherwise hold forever.

Everything here is state in the scorer's snapshot, so a restart keeps it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from churnguard.config import ScoringSettings
from churnguard.profiling.profile import Profile
from churnguard.scoring.baselines import SHARE_WARMUP, Baseline, baseline_keys

WITHHELD_ROWS = 64  # withheld rows kept per workload (oldest dropped)
QUARANTINE_ROWS = 64  # rows kept per quarantined entity (oldest dropped)
QUARANTINE_ENTITIES = 10_000  # quarantined entities at most (oldest entity dropped)
# withheld rows of a workload that include a guard hit are released only once they span
# this much event time (besides coming from release_after_entities distinct entities)
RELEASE_GUARDED_AFTER_S = 6 * 3600.0
PERSON = "person"
SERVICE_ACCOUNT = "service_account"


class GateState(msgspec.Struct):
    """Serialised form of a :class:`LearningGate` (checkpoints; no pickle)."""

    withheld: dict[str, list[Profile]]
    quarantine: dict[str, list[Profile]]
    spoiled: list[str]
    guarded: list[str]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate decided for one row: learn it now, and which held rows to learn too."""

    learn_now: bool
    released: Sequence[Profile]
    withheld: bool


# the two verdicts most rows get, made once
_LEARN = Verdict(True, (), False)
_WITHHOLD = Verdict(False, (), True)


class LearningGate:
    """Decides, row by row, what the baselines learn (see the module docstring)."""

    def __init__(self, settings: ScoringSettings) -> None:
        self.settings = settings
        # workload baseline key -> rows withheld from learning, oldest first
        self.withheld: dict[str, deque[Profile]] = {}
        # entity key -> rows of a person's bare pod or instance, until it ends
        self.quarantine: dict[str, deque[Profile]] = {}
        self.spoiled: set[str] = set()  # quarantined entities with a withheld row
        self.guarded: set[str] = set()  # workload keys whose withheld rows include a guard hit

    def decide(
        self,
        profile: Profile,
        *,
        score: float,
        judged: bool,
        learning: bool,
        alerted: bool,
        entity_alerted: bool,
        guarded: bool,
    ) -> Verdict:
        """The verdict for one scored row.

        ``judged``: a mature baseline scored it; ``learning``: its namespace is in learning
        mode; ``alerted``: it raised an alert; ``entity_alerted``: its entity has an open
        incident; ``guarded``: a guard rule holds for it.
        """
        suspect = (
            alerted
            or entity_alerted
            or guarded
            or score >= self.settings.learn_below_score
            or (judged and learning and score >= self.settings.learning_withhold_score)
        )
        if quarantined(profile):
            return self._quarantine(profile, profile.entity.key(), suspect)
        if not suspect:
            return _LEARN
        if not judged:
            return _WITHHOLD
        return Verdict(False, self._withhold(profile, guarded), True)

    def _quarantine(self, profile: Profile, entity: str, suspect: bool) -> Verdict:
        if suspect:
            self.spoiled.add(entity)
        if entity not in self.spoiled:
            rows = self.quarantine.get(entity)
            if rows is None:
                if len(self.quarantine) >= QUARANTINE_ENTITIES:
                    oldest = next(iter(self.quarantine))
                    del self.quarantine[oldest]
                rows = self.quarantine[entity] = deque(maxlen=QUARANTINE_ROWS)
            rows.append(profile)
        if not profile.final:
            return Verdict(False, [], suspect)
        held = list(self.quarantine.pop(entity, ()))
        quiet = entity not in self.spoiled
        self.spoiled.discard(entity)
        return Verdict(False, held if quiet else [], suspect)

    def _withhold(self, profile: Profile, guarded: bool) -> list[Profile]:
        """Hold a suspect row back; the workload's held rows once they recur enough."""
        if profile.entity.kind != "pod" or not (profile.entity.workload or spawned_here(profile)):
            return []  # no controller to vouch for a recurrence: never learned
        key = baseline_keys(profile)[0]
        rows = self.withheld.get(key)
        if rows is None:
            rows = self.withheld[key] = deque(maxlen=WITHHELD_ROWS)
        rows.append(profile)
        if guarded:
            self.guarded.add(key)
        if len({r.entity.key() for r in rows}) < self.settings.release_after_entities:
            return []
        span = rows[-1].window_end - rows[0].window_start
        if key in self.guarded and span < RELEASE_GUARDED_AFTER_S:
            return []  # a guard's pattern must recur for hours, not one burst of replicas
        del self.withheld[key]
        self.guarded.discard(key)
        return list(rows)

    def admits(self, b: Baseline, workload: str) -> bool:
        """Share cap: may this workload's row join the (shared) baseline ``b``?

        Workload baselines take every row. For a shared one, no once the workload holds its
        cap of the baseline's recent learned rows: the larger of ``max_workload_share`` and
        a fair share among the workloads present, so a namespace of one or two workloads
        can still learn them.
        """
        n = len(b.recent_workloads)
        if n < SHARE_WARMUP or b.key.startswith("wl:"):
            return True
        counts = b.workload_counts
        held = counts.get(workload, 0)  # rows of it in the window; absent: not present yet
        fair = 1.0 / (len(counts) + (held == 0))
        cap = self.settings.max_workload_share
        # the workload's share (Baseline.share_of, n > 0 here) against max(cap, fair),
        # without a call: three a row
        return held / n <= (fair if fair > cap else cap)

    @staticmethod
    def teaches_memory(profile: Profile, paged: bool) -> bool:
        """May this window teach the first-seen memory what is known? One that did not page,
        and not a quarantined one: a person's bare pod or instance makes its identity,
        hosts and image known only when its whole story ended quietly (released rows)."""
        return not paged and not quarantined(profile)

    @staticmethod
    def kept_from_memory(profile: Profile, *, shared: Callable[[str], bool]) -> list[str]:
        """Hosts a withheld window (the caller asks only for those) does not teach the
        first-seen memory, though it did not page: those it shipped an archive to that were
        new to its namespace (``Profile.archive_shipped``) and that the cluster does not
        share.

        In a namespace's learning period nothing pages, so an attacker's first backup Job
        shipping the dump to their host would teach the namespace that host, and the same
        Job a day later would ship to a "known" one. Withheld, the host stays new until
        the rows are released (a controller's runs shipping there for hours: its own
        bucket); a shared host (the organisation's bucket) is taught as before."""
        return [a.dest for a in profile.archive_shipped if not shared(a.dest)]

    # ---- persistence ---------------------------------------------------------------------
    def export(self) -> GateState:
        return GateState(
            withheld={k: list(v) for k, v in sorted(self.withheld.items())},
            quarantine={k: list(v) for k, v in self.quarantine.items()},
            spoiled=sorted(self.spoiled),
            guarded=sorted(self.guarded),
        )

    def load(self, state: GateState) -> None:
        self.withheld = {k: deque(v, maxlen=WITHHELD_ROWS) for k, v in state.withheld.items()}
        self.quarantine = {k: deque(v, maxlen=QUARANTINE_ROWS) for k, v in state.quarantine.items()}
        self.spoiled = set(state.spoiled)
        self.guarded = set(state.guarded)


def spawned_here(profile: Profile) -> bool:
    """A bare pod its own namespace's service account created (JupyterHub's single-user
    servers, an executor's task pods): that account is the pods' controller, and what
    recurs across its pods is its workload's, as for a ReplicaSet's."""
    e = profile.entity
    prefix = f"system:serviceaccount:{e.namespace}:"
    return (
        e.kind == "pod"
        and profile.creator_kind == SERVICE_ACCOUNT
        and (profile.created_by or "").startswith(prefix)
    )


def quarantined(profile: Profile) -> bool:
    """A bare pod or an instance that a person created: learned only once it ended quietly."""
    e = profile.entity
    bare = e.kind == "instance" or not e.workload
    return bare and profile.creator_kind == PERSON
