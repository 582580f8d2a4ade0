"""The baseline hierarchy: per workload, else per namespace, else the cluster.

Each baseline is one detector plus a window of the raw feature values it recently learned
(for the explanation's medians and percentiles) and the workloads those rows came from (for
the poisoning guard). Keys, also the keys of model bundles (``store.Bundle.models``):

    cluster:<kind>                    every entity of that kind
    ns:<namespace>:<kind>             one namespace
    wl:<namespace>/<workload>:<kind>  one workload, e.g. ``wl:shop/Deployment/web:pod``;
                                      pods without an owner use ``image/<repository>``
                                      and instances ``instances``, each followed by
                                      ``@<identity>`` of a creator that is not a
                                      controller (see :func:`workload_of`)

where ``<kind>`` is ``pod`` or ``instance``. Instances have no namespace: they are
baselined under the pseudo-namespace ``_cloud`` (workload ``instances``).

A baseline scores only once it is *mature*: it has learned its level's minimum of rows
(``workload_min_profiles``; ``namespace_min_profiles`` for namespace and cluster) and has
been learning for ``learning_seconds`` of event time, so a burst of rows from a brand-new
deployment does not become its normal within minutes. Until then the next level up scores.
Baselines seeded from a bundle are mature on arrival.

Learning mode is per namespace: until a namespace has ``learning_profiles`` profiles *and*
``learning_seconds`` of event time behind it, its profiles are scored (level ``learning``)
but never alert through the model. A new workload in an established namespace is *not* in
learning mode: the namespace baseline judges it, which is what catches an attacker's
one-off pod.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import msgspec
import numpy as np

from churnguard.config import ScoringSettings, Settings
from churnguard.errors import ModelError
from churnguard.profiling.entities import normalise_workload
from churnguard.profiling.features import identity_name
from churnguard.profiling.profile import Profile, image_repository
from churnguard.scoring.detectors import Detector, detector_from_bytes, make_detector
from churnguard.scoring.detectors.grouped import learn_groups
from churnguard.scoring.detectors.oif import OnlineIsolationForest
from churnguard.scoring.detectors.pool import NodePool

CLOUD_NAMESPACE = "_cloud"
LEARNING = "learning"
RECENT_ROWS = 512  # raw rows per baseline kept for medians and percentiles
SHARE_WINDOW = 1000  # learned rows over which a workload's share of a baseline is measured
SHARE_WARMUP = 50  # the share cap applies once a baseline's window holds this many rows
# online-forest sizes per scope: workload models are many and small (an hourly CronJob has
# 24 runs a day), the cluster model is one and wide
OIF_PARAMS = {
    "wl": {"window_size": 256, "max_leaf_samples": 8},
    "ns": {"window_size": 1024, "max_leaf_samples": 16},
    "cluster": {"window_size": 2048, "max_leaf_samples": 32},
}
LEVELS = {"wl": "workload", "ns": "namespace", "cluster": "cluster"}


# normalise_workload per owner name, remembered: each window of a pod asks it again (a
# regular expression a row); bounded, as the owners of a cluster come and go
_workload_name = lru_cache(maxsize=4096)(normalise_workload)


def namespace_of(profile: Profile) -> str:
    return profile.entity.namespace or CLOUD_NAMESPACE


def workload_of(profile: Profile) -> str:
    """The workload a profile belongs to. Pods without an owner group by image repository
    and instances all together, each *with the identity that created them* (a person, a
    CI role, a service account; not a controller or the autoscaler): an SRE's weekly debug
    pods are their own baseline, the same image run by anyone else is not part of it."""
    e = profile.entity
    if e.kind == "pod" and e.workload:
        return _workload_name(e.workload) or e.workload
    image = image_repository(e.image) or "unknown"
    base = "instances" if e.kind == "instance" else f"image/{image}"
    who = identity_name(profile.created_by, profile.creator_kind)
    return f"{base}@{who}" if who else base


def baseline_keys(profile: Profile, workload: str | None = None) -> tuple[str, str, str]:
    """(workload, namespace, cluster) keys for a profile; ``workload`` is its
    :func:`workload_of` when the caller has it already."""
    e = profile.entity
    kind, ns = e.kind, e.namespace or CLOUD_NAMESPACE  # namespace_of, once a row
    wl = workload_of(profile) if workload is None else workload
    return (f"wl:{ns}/{wl}:{kind}", f"ns:{ns}:{kind}", f"cluster:{kind}")


def level_of_key(key: str) -> str:
    return LEVELS[key.split(":", 1)[0]]


def gather(X: np.ndarray, groups: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """``[X.take(g, axis=0) for g in groups]``, as slices of one take: a tick's ~10 baselines
    cost one numpy gather, not one each. The slices share that take's memory, which
    nothing else holds, so reading or copying them is reading the per-group takes."""
    return _split(X.take([i for g in groups for i in g], axis=0), groups)


def _split(rows: np.ndarray, groups: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """``rows`` (the groups' rows, one after another) cut back into the groups."""
    out, start = [], 0
    for g in groups:
        end = start + len(g)
        out.append(rows[start:end])
        start = end
    return out


class RecentRows:
    """The last ``limit`` raw rows a baseline learned, oldest first, for explanations.

    Rows are appended to one float array with room for up to ``2 * limit``; when it is full
    the newest rows move to its start, so adding a tick's rows and reading the window
    (a contiguous view) cost no per-row Python objects and no conversion per alert.
    The window's model view (:meth:`view`) is kept beside it once asked for, so a
    baseline that alerts again transforms only the rows it learned since.
    """

    def __init__(self, limit: int = RECENT_ROWS) -> None:
        self.limit = limit
        self._rows = np.empty((0, 0))
        self._end = 0  # rows written; the window is the last ``limit`` of them
        # model view of self._rows[_view_from:_viewed] (None: never asked for)
        self._view: np.ndarray | None = None
        self._view_from = self._viewed = 0

    def __len__(self) -> int:
        return min(self._end, self.limit)

    def values(self) -> np.ndarray:
        """The rows as an (n, d) matrix, oldest first (a view: do not write to it)."""
        return self._rows[self._end - len(self) : self._end]

    def view(self, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """:meth:`values` through ``transform`` (the spec's model view), the same bits:
        the transform is elementwise, so rows transformed as they came are the rows
        transformed together (a view: do not write to it)."""
        start, end = self._end - len(self), self._end
        if self._view is None or not self._view_from <= start <= self._viewed:
            if self._view is None:
                self._view = np.empty_like(self._rows)
            self._view_from = self._viewed = start  # nothing of the window viewed yet
        if self._viewed < end:
            self._view[self._viewed : end] = transform(self._rows[self._viewed : end])
            self._viewed = end
        return self._view[start:end]

    def extend(self, rows: np.ndarray | list[list[float]]) -> None:
        new = np.asarray(rows, dtype=float)
        n = len(new)
        if n > self.limit:
            new, n = new[-self.limit :], self.limit
        if not n:
            return
        end = self._end
        if end + n > len(self._rows):  # make room: keep what stays, at the start
            keep = min(len(self), self.limit - n)
            size = min(2 * self.limit, max(16, 2 * (keep + n)))
            rows = np.empty((size, new.shape[1]))
            rows[:keep] = self._rows[end - keep : end] if keep else 0.0
            self._rows, end = rows, keep
            self._move_view(keep)
        self._rows[end : end + n] = new
        self._end = end + n

    def _move_view(self, keep: int) -> None:
        """The model view follows the ``keep`` newest rows to the new array's start."""
        view, end = self._view, self._end
        if view is None:
            return
        if self._view_from > end - keep or self._viewed < end:
            self._view = None  # not all of them viewed: the next view() starts afresh
            return
        self._view = np.empty_like(self._rows)
        self._view[:keep] = view[end - keep : end]
        self._view_from, self._viewed = 0, keep


@dataclass
class Baseline:
    """One detector and what it has learned from."""

    key: str
    detector: Detector
    n_learned: int = 0
    # event time of the first row learned (None: nothing yet; -inf: seeded from a bundle)
    first_time: float | None = None
    recent: RecentRows = field(default_factory=RecentRows)
    recent_workloads: deque[str] = field(default_factory=lambda: deque(maxlen=SHARE_WINDOW))
    # rows of each workload in recent_workloads (only workloads present: a plain dict, once
    # per learned row and level)
    workload_counts: dict[str, int] = field(default_factory=dict)

    def share_of(self, workload: str) -> float:
        n = len(self.recent_workloads)
        return self.workload_counts.get(workload, 0) / n if n else 0.0

    def note_workload(self, workload: str) -> None:
        recent, counts = self.recent_workloads, self.workload_counts
        if len(recent) == recent.maxlen:
            old = recent[0]
            left = counts[old] - 1
            if left:
                counts[old] = left
            else:
                del counts[old]
        recent.append(workload)
        counts[workload] = counts.get(workload, 0) + 1

    def recent_values(self) -> np.ndarray:
        """The recent raw rows as an (n, d) matrix (n may be 0), oldest first."""
        return self.recent.values()


class BaselineState(msgspec.Struct):
    """Serialised form of a :class:`Baseline` (checkpoints; no pickle)."""

    detector: str
    model: bytes
    n_learned: int
    first_time: float | None
    recent: list[list[float]]
    recent_workloads: list[str]


class NamespaceAge(msgspec.Struct):
    """How long and how much a namespace has been seen: drives learning mode."""

    first_time: float
    profiles: int = 0
    from_bundle: bool = False  # a bundle brought baselines for it: known, not new


class HierarchyState(msgspec.Struct):
    baselines: dict[str, BaselineState]
    namespaces: dict[str, NamespaceAge]


class Hierarchy:
    """Chooses the baseline that scores a profile and teaches the ones that learn from it."""

    def __init__(self, settings: ScoringSettings, n_features: int) -> None:
        self.n_features = n_features
        self.settings = settings
        self.baselines: dict[str, Baseline] = {}
        self.namespaces: dict[str, NamespaceAge] = {}
        # the online forests' node arrays, all in one store: a tick's forests are routed
        # and taught in place, without being copied side by side (detectors/pool.py)
        self.pool = NodePool(n_features)

    def _keep(self, key: str, b: Baseline) -> Baseline:
        """Hold ``b`` under ``key``, its online forest's nodes in the shared pool."""
        if isinstance(b.detector, OnlineIsolationForest) and b.detector._width() in (
            None,
            self.n_features,
        ):
            self.pool.adopt(b.detector)
        self.baselines[key] = b
        return b

    @property
    def settings(self) -> ScoringSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: ScoringSettings) -> None:
        """Refuses an unknown detector here, where settings arrive, so that building the
        first baseline (inside ``Pipeline.process``, which never raises) cannot."""
        make_detector(settings.detector, self.n_features)
        self._settings = settings

    def _new(self, key: str) -> Baseline:
        scope = key.split(":", 1)[0]
        params = dict(OIF_PARAMS[scope]) if self.settings.detector == "oif" else {}
        seed = self.settings.seed + _stable_hash(key) % 10_000
        det = make_detector(self.settings.detector, self.n_features, seed, **params)
        return Baseline(key=key, detector=det)

    def get(self, key: str) -> Baseline:
        b = self.baselines.get(key)
        if b is None:
            b = self._keep(key, self._new(key))
        return b

    def _mature(self, b: Baseline | None, minimum: int, now: float) -> bool:
        return (
            b is not None
            and b.n_learned >= minimum
            and b.first_time is not None
            and now - b.first_time >= self.settings.learning_seconds
        )

    def choose(self, profile: Profile, keys: tuple[str, str, str] | None = None) -> Baseline | None:
        """The most specific mature baseline, or None (nothing can judge it yet); ``keys``
        are the profile's :func:`baseline_keys` when the caller has them already."""
        s = self.settings
        wl, ns, cluster = keys or baseline_keys(profile)
        get, mature, now = self.baselines.get, self._mature, profile.window_end
        if s.hierarchy:  # once a row: no tuple of candidates
            # a baseline not yet created (most workloads' in their first minutes) is not
            # mature: no call to say so
            if (b := get(wl)) is not None and mature(b, s.workload_min_profiles, now):
                return b
            if (b := get(ns)) is not None and mature(b, s.namespace_min_profiles, now):
                return b
        b = get(cluster)
        return b if b is not None and mature(b, s.namespace_min_profiles, now) else None

    # ---- learning mode -------------------------------------------------------------------
    def in_learning(self, profile: Profile, settings: Settings) -> bool:
        """True while the profile's namespace is new, by count *and* event time."""
        return self.learning_flags([profile], settings)[0]

    def learning_flags(self, profiles: list[Profile], settings: Settings) -> list[bool]:
        """:meth:`in_learning` of each profile of a batch, each namespace looked up once."""
        s = self.settings
        per_namespace: dict[str | None, tuple[int, NamespaceAge | None]] = {}
        flags = []
        for p in profiles:
            namespace = p.entity.namespace
            known = per_namespace.get(namespace)
            if known is None:
                needed = s.learning_profiles
                override = settings.namespace_override(namespace)
                if override is not None and override.learning_profiles is not None:
                    needed = override.learning_profiles
                age = self.namespaces.get(namespace or CLOUD_NAMESPACE)
                known = per_namespace[namespace] = (needed, age)
            needed, age = known
            if age is None:
                flags.append(needed > 0 or s.learning_seconds > 0)
            elif age.from_bundle:
                flags.append(False)
            else:
                young = p.window_end - age.first_time < s.learning_seconds
                flags.append(age.profiles < needed or young)
        return flags

    def note_seen(self, profiles: list[Profile]) -> None:
        """Age each profile's namespace (every profile counts, alerting or not)."""
        for p in profiles:
            ns = namespace_of(p)
            age = self.namespaces.get(ns)
            if age is None:
                age = self.namespaces[ns] = NamespaceAge(first_time=p.window_start)
            age.first_time = min(age.first_time, p.window_start)
            age.profiles += 1

    # ---- learning ------------------------------------------------------------------------
    def learn(
        self,
        profiles: list[Profile],
        X: np.ndarray,
        raw: np.ndarray | None = None,
        admits: Callable[[Baseline, str], bool] | None = None,
        workloads: list[str] | None = None,
        keys: list[tuple[str, str, str]] | None = None,
    ) -> None:
        """Teach every level from these rows (the learning gate chose them).

        ``X`` is the model view; ``raw`` the same rows' raw values for the recent-values
        window the explanations read (None when only the detectors matter, e.g. offline
        training). ``admits(baseline, workload)`` is the gate's share cap (None: every row).
        ``workloads`` and ``keys`` are the rows' :func:`workload_of` and
        :func:`baseline_keys` when the caller has them already.
        """
        by_key: dict[str, list[int]] = {}
        if workloads is None:
            workloads = [workload_of(p) for p in profiles]
        if keys is None:
            keys = [baseline_keys(p, wl) for p, wl in zip(profiles, workloads, strict=True)]
        first = 0 if self.settings.hierarchy else 2
        for i, row_keys in enumerate(keys):
            for key in row_keys[first:]:
                at = by_key.get(key)
                if at is None:
                    by_key[key] = [i]
                else:
                    at.append(i)
        taught: list[tuple[Baseline, list[int]]] = []
        for key in sorted(by_key):
            b = self.get(key)
            note, rows = b.note_workload, []
            for i in by_key[key]:
                wl = workloads[i]
                if admits is None or admits(b, wl):
                    rows.append(i)
                    note(wl)
            if rows:
                taught.append((b, rows))
        groups = [rows for _, rows in taught]
        flat = [i for g in groups for i in g]  # gather's, once for both views
        learn_groups([b.detector for b, _ in taught], _split(X.take(flat, axis=0), groups))
        recent = _split(raw.take(flat, axis=0), groups) if raw is not None else [None] * len(taught)
        for (b, rows), raw_rows in zip(taught, recent, strict=True):
            b.n_learned += len(rows)
            if b.first_time is None:
                b.first_time = min(profiles[i].window_start for i in rows)
            if raw_rows is not None:
                b.recent.extend(raw_rows)

    # ---- persistence ---------------------------------------------------------------------
    def export(self) -> HierarchyState:
        return HierarchyState(
            baselines={
                key: BaselineState(
                    detector=b.detector.name,
                    model=b.detector.to_bytes(),
                    n_learned=b.n_learned,
                    first_time=b.first_time,
                    recent=b.recent.values().tolist(),
                    recent_workloads=list(b.recent_workloads),
                )
                for key, b in sorted(self.baselines.items())
            },
            namespaces=dict(sorted(self.namespaces.items())),
        )

    def load(self, state: HierarchyState) -> None:
        self.baselines = {}
        self.pool = NodePool(self.n_features)
        for key, st in state.baselines.items():
            b = Baseline(
                key=key,
                detector=detector_from_bytes(st.detector, st.model),
                n_learned=st.n_learned,
                first_time=st.first_time,
            )
            b.recent.extend(st.recent)
            for wl in st.recent_workloads:
                b.note_workload(wl)
            self._keep(key, b)
        self.namespaces = dict(state.namespaces)

    def seed_from(self, models: dict[str, Detector], counts: dict[str, int]) -> None:
        """Start from a bundle's detectors (keys as in this module's docstring).

        They are mature on arrival, and the namespaces they name skip learning mode.
        """
        for key, det in models.items():
            if key.split(":", 1)[0] not in LEVELS:
                raise ModelError(f"bundle model key {key!r} is not a baseline key")
            width = det._width()
            if width is not None and width != self.n_features:
                # the spec's version is unchanged when a feature is added: say so here,
                # not as a shape error on the first batch
                raise ModelError(
                    f"bundle model {key!r} takes {width} features, the feature spec has"
                    f" {self.n_features}: rebuild the bundle (models/README.md)"
                )
            self._keep(
                key,
                Baseline(
                    key=key,
                    detector=det,
                    n_learned=counts.get(key, det.n_seen),
                    first_time=float("-inf"),
                ),
            )
            if not key.startswith("cluster:"):  # ns:<ns>:<kind> or wl:<ns>/<wl>:<kind>
                ns = key.split(":", 1)[1].rsplit(":", 1)[0].split("/", 1)[0]
                age = self.namespaces.setdefault(ns, NamespaceAge(first_time=float("-inf")))
                age.from_bundle = True


def _stable_hash(text: str) -> int:
    """A hash that does not change between processes (Python's str hash is salted)."""
    h = 2166136261
    for ch in text.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h
