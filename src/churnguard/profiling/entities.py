"""Entity resolution and lifecycle: which pod or instance each event is about, and its state.

Pods are keyed ``(pod, namespace, name)``, instances ``(instance, "", id)``. Events that carry
only an address (flows, CloudTrail calls from a pod IP) or only a service account are
resolved *deferred*: once the watermark has passed their event time, every binding that
could explain them has arrived, so attribution does not depend on arrival order. Events
that name their entity are routed once the watermark has passed them too (by the
pipeline), so a deletion that arrives late still decides which incarnation they belong to.

The table keeps, per entity, the identity it has learned, its lifecycle (created, deleted and
by whom) and the events not yet folded into an emitted profile. Windows are anchored on the
entity's own start (creation, else first event), so a pod that lives less than one window
is profiled exactly once, whole.
"""

from __future__ import annotations

import bisect
import operator
import posixpath
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from churnguard.ingest.events import (  # the members, read without the enum hook
    CLOUD_CALL_EVENT,
    CONTAINER_ENTITY,
    INSTANCE_ACTOR,
    INSTANCE_ENTITY,
    INSTANCE_IP_EVENT,
    INSTANCE_RUN_EVENT,
    INSTANCE_TERMINATE_EVENT,
    PERSON_ACTOR,
    POD_CREATE_EVENT,
    POD_DELETE_EVENT,
    POD_ENTITY,
    POD_EXEC_EVENT,
    POD_IP_EVENT,
    PROCESS_EXEC_EVENT,
    EntityKey,
    Event,
)
from churnguard.profiling.profile import Evidence

# pod-template-hash: hex in old clusters, k8s "safe" alphabet (no vowels, no 0/1/3) since
_REPLICASET_SUFFIX = re.compile(
    r"^(?P<base>.+)-(?:[0-9a-f]{6,10}|[bcdfghjklmnpqrstvwxz2456789]{5,10})$"
)
_JOB_SUFFIX = re.compile(r"^(?P<base>.+)-\d{8,10}$")  # a CronJob run: scheduled minute
# a deleted pod's name may come back (StatefulSets): events this long after the delete
# belong to a new incarnation, anything before it to the dead one. The pipeline routes
# events only once its watermark has passed them, so a deletion that arrives after such
# an event (within the allowed lateness) still decides
DEATH_GRACE_S = 30.0
_TOMBSTONES_MAX = 100_000
_DORMANT_MAX = 100_000  # idle pods whose identity is kept for their next event
_EXEC_HISTORY = 16
_SEEN_IDS = 64  # action ids (audit auditID) remembered per entity to count each once
_DEST_HISTORY = 16
_DEST_MAX = 32
_SAME_CONNECTION_S = 1.0
# bindings kept; past these the oldest is forgotten, so a flood of fake pods cannot stop
# new real pods from being bound (only the flood's oldest fakes become unattributable)
_CONTAINERS_MAX = 500_000
_IP_BINDINGS_MAX = 500_000
_OWNERS_PER_IP = 8  # successive pods an address is remembered for
# container runtimes' command-line clients: one of them starting a container from a pod
# (after nsenter to the host) is how a container outside the orchestrator is born
RUNTIME_CLIS = frozenset({"docker", "nerdctl", "ctr", "podman", "crictl", "runc"})
_RUNTIME_STARTS = frozenset({"run", "runp", "create", "start"})
LAUNCH_WINDOW_S = 900.0  # a container appearing this soon after a runtime start is its child
_LAUNCHES_PER_NODE = 8
_LAUNCH_NODES_MAX = 10_000
# kubelet status patches (the pod-IP binding) lag the container's first traffic: an address
# is matched to a binding stamped up to this much later, deferred events wait this long,
# and so does every profile (so address-attributed events reach their window in time)
IP_BINDING_LAG_S = 30.0


def normalise_workload(owner: str | None) -> str | None:
    """Map a pod's direct owner to the workload a person manages.

    ``ReplicaSet/web-5d8f7c9b6`` → ``Deployment/web``; ``Job/backup-29012345`` →
    ``CronJob/backup``; anything else is kept. Baselines and first-seen memories are per
    workload, so pods of every rollout and every CronJob run share one history.
    """
    if not owner or "/" not in owner:
        return owner or None
    kind, _, name = owner.partition("/")
    if kind == "ReplicaSet" and (m := _REPLICASET_SUFFIX.match(name)):
        return f"Deployment/{m.group('base')}"
    if kind == "Job" and (m := _JOB_SUFFIX.match(name)):
        return f"CronJob/{m.group('base')}"
    return owner


@dataclass(slots=True)
class EntityState:
    """What the table knows about one pod or instance incarnation."""

    key: EntityKey
    anchor: float  # start of window 0: creation time, else first event time
    namespace: str | None = None
    pod: str | None = None
    uid: str | None = None
    container: str | None = None
    container_ids: set[str] = field(default_factory=set)
    instance_id: str | None = None
    workload: str | None = None
    image: str | None = None
    service_account: str | None = None
    node: str | None = None
    pod_ips: set[str] = field(default_factory=set)  # a pod's addresses; an instance's private IP
    created_at: float | None = None
    created_by: str | None = None
    created_by_kind: str | None = None
    deleted_at: float | None = None
    deleted_by: str | None = None
    deleter_kind: str | None = None
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    emitted_until: float | None = None  # end of the last emitted window
    pending: list[Event] = field(default_factory=list)
    exec_times: list[float] = field(default_factory=list)  # sorted, last few, across windows
    seen_ids: list[str] = field(default_factory=list)  # last few action ids folded in
    dest_times: dict[str, list[float]] = field(default_factory=dict)  # external dest -> times
    windows_emitted: int = 0
    launch: Event | None = None  # container outside the orchestrator: the runtime start
    # running totals of the windows profiled so far (features.FeatureBuilder): what a
    # short life's final profile reports as its whole story
    life: dict[str, float] = field(default_factory=dict)
    # the key records of the windows profiled so far: a whole life's evidence (who ran it,
    # what it read, who terminated it), not only its last window's
    life_evidence: list[Evidence] = field(default_factory=list)
    # the largest archive written so far in its life: (path, bytes written to it)
    archive: tuple[str, int] | None = None
    # external destinations new to the namespace when it first sent to them after that
    # archive -> bytes out to them since (features.FeatureBuilder._archive_shipped)
    archive_sent: dict[str, int] = field(default_factory=dict)
    # the first program it ran that its workload's pods never ran: (binary, start time),
    # and the hosts new to the workload it called after it (features._unfamiliar_callers)
    drift: tuple[str, float] | None = None
    drift_sent: tuple[str, ...] = ()  # a tuple: most pods never drift (no set per pod)
    # identities that acted on it while new to the cluster and with no peer the cluster
    # knows (features.FeatureBuilder._strangers), so far in its life, sorted
    strangers: list[str] = field(default_factory=list)

    def window_start(self) -> float:
        return self.emitted_until if self.emitted_until is not None else self.anchor


class Dormant(msgspec.Struct, array_like=True, omit_defaults=True):
    """Who a pod is, kept when its state is forgotten after an idle hour without a delete:
    only its create event names its creator, and only some sensors its owner and image."""

    uid: str | None = None
    created_at: float | None = None
    created_by: str | None = None
    created_by_kind: str | None = None
    workload: str | None = None
    image: str | None = None
    service_account: str | None = None
    container: str | None = None
    strangers: list[str] = []
    node: str | None = None
    windows_emitted: int = 0  # a woken pod's next window is not its first (novelty, creator)
    container_ids: list[str] = []
    pod_ips: list[str] = []

    @classmethod
    def of(cls, state: EntityState) -> Dormant:
        kept = {name: getattr(state, name) for name in cls.__struct_fields__}
        kept["strangers"] = list(state.strangers)
        for name in _DORMANT_SETS:
            kept[name] = sorted(kept[name])
        return cls(**kept)

    def wake(self, state: EntityState) -> None:
        """Give the pod's next state the identity the forgotten one had."""
        for name in self.__struct_fields__:
            setattr(state, name, getattr(self, name))
        state.strangers = list(self.strangers)
        for name in _DORMANT_SETS:
            setattr(state, name, set(getattr(self, name)))


_DORMANT_SETS = ("container_ids", "pod_ips")  # sets on EntityState, sorted lists when kept


class EntityTable:
    """Routes events to entity states; keeps the pod-IP and service-account bindings."""

    def __init__(self) -> None:
        self.states: dict[EntityKey, EntityState] = {}
        self._ip_bindings: dict[str, list[tuple[float, EntityKey]]] = {}
        self._containers: dict[str, EntityKey] = {}  # short container id -> pod
        self._tombstones: OrderedDict[EntityKey, float] = OrderedDict()
        # pods forgotten after an idle hour, not deleted: a JupyterHub server idle between
        # sessions, an hourly poller. Their next event starts a new state (its windows and
        # totals anew) that is still the same pod: same creator, owner, image, strangers
        self._dormant: OrderedDict[EntityKey, Dormant] = OrderedDict()
        self.launches: dict[str, list[Event]] = {}  # node -> recent runtime starts from pods
        self.counters: Counter[str] = Counter()

    # ---- bindings -------------------------------------------------------------------------
    def bind_ip(self, ip: str, key: EntityKey, since: float) -> None:
        """Remember that ``ip`` belonged to ``key`` from ``since`` (sorted by time)."""
        if ip not in self._ip_bindings and len(self._ip_bindings) >= _IP_BINDINGS_MAX:
            del self._ip_bindings[next(iter(self._ip_bindings))]
        entries = self._ip_bindings.setdefault(ip, [])
        i = bisect.bisect_right(entries, (since, _MAX_KEY))
        # one entry per owner period: every flow re-states the binding, and keeping each
        # restatement would push the pod's first (earliest) binding out of the list
        if i > 0 and entries[i - 1][1] == key:
            return
        if i < len(entries) and entries[i][1] == key:
            entries[i] = (since, key)  # the same owner, known from earlier
            return
        entries.insert(i, (since, key))
        if len(entries) > _OWNERS_PER_IP:
            del entries[0]

    def owner_of_ip(self, ip: str, at: float) -> EntityKey | None:
        """The pod that held ``ip`` at event time ``at`` (latest binding not after it)."""
        entries = self._ip_bindings.get(ip)
        if not entries:
            return None
        i = bisect.bisect_right(entries, (at, _MAX_KEY))
        if i == 0:
            return entries[0][1] if entries[0][0] - at <= IP_BINDING_LAG_S else None
        return entries[i - 1][1]

    def bind_container(self, container_id: str, key: EntityKey) -> None:
        """Container ids are unique per pod; Falco prints 12 characters, Tetragon all 64."""
        short = container_id[:12]
        if short not in self._containers and len(self._containers) >= _CONTAINERS_MAX:
            del self._containers[next(iter(self._containers))]
        self._containers[short] = key

    def pods_of_service_account(self, namespace: str, sa: str, at: float) -> list[EntityKey]:
        return sorted(
            s.key
            for s in self.states.values()
            if s.namespace == namespace
            and s.service_account == sa
            and s.first_seen - IP_BINDING_LAG_S <= at  # no later than deferred events wait
            and (s.deleted_at is None or at <= s.deleted_at)
        )

    # ---- routing --------------------------------------------------------------------------
    def subject_key(self, ev: Event) -> EntityKey | None:
        """The entity an event is directly about, or None when it needs deferred resolution."""
        about_instance = ev.kind in _INSTANCE_KINDS or (ev.kind is CLOUD_CALL_EVENT and not ev.pod)
        if ev.instance_id and about_instance:
            return EntityKey(INSTANCE_ENTITY, "", ev.instance_id)
        if ev.namespace and ev.pod:
            return EntityKey(POD_ENTITY, ev.namespace, ev.pod)
        return None

    def needs_resolution(self, ev: Event) -> bool:
        return self.subject_key(ev) is None and bool(
            ev.pod_ip or ev.container_id or (ev.namespace and ev.service_account)
        )

    def resolve(self, ev: Event) -> EntityKey | None:
        """Deferred attribution by container id, pod IP, else a service account's one pod.

        A runtime container id no pod claimed by then (deferred events wait for the
        bindings) is a container outside the orchestrator: its own entity on its node.
        """
        if ev.container_id and (key := self._containers.get(ev.container_id[:12])):
            return key
        if ev.container_id and ev.node and not ev.pod:
            return EntityKey(CONTAINER_ENTITY, ev.node, ev.container_id[:12])
        if ev.pod_ip and (key := self.owner_of_ip(ev.pod_ip, ev.time)):
            return key
        if ev.namespace and ev.service_account:
            pods = self.pods_of_service_account(ev.namespace, ev.service_account, ev.time)
            if len(pods) == 1:
                return pods[0]
        return None

    def is_dead(self, key: EntityKey, ev: Event) -> bool:
        """True for events of an incarnation that has already been profiled and forgotten.

        Within ``DEATH_GRACE_S`` of the end, the next incarnation's own events are not the
        dead one's: its creation, and whatever follows it once its state exists.
        """
        died = self._tombstones.get(key)
        if died is None or ev.time > died + DEATH_GRACE_S or ev.kind is POD_CREATE_EVENT:
            return False
        successor = self.states.get(key)
        return successor is None or successor.created_at is None or ev.time < successor.created_at

    def bury(self, state: EntityState) -> None:
        """Forget an entity, remembering its end so stragglers are counted, not resurrected;
        a pod forgotten without a delete (idle, evicted) keeps its identity for its next event."""
        self.states.pop(state.key, None)
        end = state.deleted_at if state.deleted_at is not None else state.last_seen
        self._tombstones[state.key] = end
        self._tombstones.move_to_end(state.key)
        while len(self._tombstones) > _TOMBSTONES_MAX:
            self._tombstones.popitem(last=False)
        self._dormant.pop(state.key, None)
        if state.key.kind is POD_ENTITY and state.deleted_at is None:
            self._dormant[state.key] = Dormant.of(state)
            while len(self._dormant) > _DORMANT_MAX:
                self._dormant.popitem(last=False)

    def state_for(self, key: EntityKey, ev: Event) -> EntityState:
        state = self.states.get(key)
        if state is None:
            state = EntityState(key=key, anchor=ev.time)
            if key.kind is POD_ENTITY:
                state.namespace, state.pod = key.namespace, key.name
                dormant = self._dormant.pop(key, None)
                if dormant is not None and _same_pod(dormant, ev):
                    dormant.wake(state)
            elif key.kind is CONTAINER_ENTITY:
                state.node = key.namespace
                state.container_ids.add(key.name)
                self._link_launch(state, ev.time)
            else:
                state.instance_id = key.name
            self.states[key] = state
        return state

    def note_launch(self, state: EntityState, ev: Event) -> None:
        """Remember a pod's process starting a container with a runtime CLI, per node."""
        node = ev.node or state.node
        if state.key.kind is not POD_ENTITY or node is None or not starts_container(ev):
            return
        if node not in self.launches and len(self.launches) >= _LAUNCH_NODES_MAX:
            return
        recent = self.launches.setdefault(node, [])
        recent.append(ev)
        del recent[:-_LAUNCHES_PER_NODE]

    def _link_launch(self, state: EntityState, t: float) -> None:
        """A new container's launcher: the node's latest runtime start from a pod before it."""
        starts = [
            ev
            for ev in self.launches.get(state.node or "", [])
            if ev.time <= t and t - ev.time <= LAUNCH_WINDOW_S
        ]
        if starts:
            launch = max(starts, key=lambda ev: ev.time)
            state.launch = launch
            state.created_by = f"{launch.namespace}/{launch.pod}"
            state.created_at = launch.time

    def apply(self, state: EntityState, ev: Event) -> bool:
        """Fold an event's identity and lifecycle facts into the state; queue it for features.

        False (nothing applied) for an action already folded in under the same id: the
        second audit stage of one exec session.
        """
        if ev.event_id is not None:
            if ev.event_id in state.seen_ids:
                return False
            state.seen_ids.append(ev.event_id)
            del state.seen_ids[:-_SEEN_IDS]
        _learn_identity(state, ev)
        if state.key.kind is INSTANCE_ENTITY and ev.pod_ip and ev.kind in _ADDRESS_KINDS:
            # its private IP: flows and calls that carry only that address are the instance's
            self.bind_ip(ev.pod_ip, state.key, ev.time)
        if ev.kind in (POD_CREATE_EVENT, INSTANCE_RUN_EVENT):
            if state.created_at is None or ev.time < state.created_at:
                state.created_at = ev.time
                state.created_by = ev.actor
                state.created_by_kind = ev.actor_kind
            state.anchor = min(state.anchor, ev.time)
        elif ev.kind in (POD_DELETE_EVENT, INSTANCE_TERMINATE_EVENT):
            # the first delete wins: later ones are the controller finishing the job
            if state.deleted_at is None or ev.time < state.deleted_at:
                state.deleted_at = ev.time
                state.deleted_by = ev.actor
                state.deleter_kind = ev.actor_kind
        elif ev.kind is POD_EXEC_EVENT:
            bisect.insort(state.exec_times, ev.time)
            del state.exec_times[:-_EXEC_HISTORY]
        elif ev.kind is PROCESS_EXEC_EVENT:
            self.note_launch(state, ev)
        t = ev.time  # finite (the pipeline counts and drops the rest): min/max as compares
        if state.emitted_until is None and t < state.anchor:
            state.anchor = t
        if t < state.first_seen:
            state.first_seen = t
        if t > state.last_seen:
            state.last_seen = t
        if ev.kind not in _BINDING_ONLY:
            state.pending.append(ev)
        return True


# pending lists shorter than this are measured whole (as cheap as the bookkeeping); an
# entry for every entity cost ~0.4 KiB per tracked pod (bench_scale's memory row)
_KEEP_OLDEST_FROM = 32
_TIME = operator.attrgetter("time")  # min(map(_TIME, ...)): no generator frame per event


class OldestPending:
    """Each entity's oldest pending event time, kept up as events are appended.

    The pipeline asks for it at every routing and window; a ``min`` over all pending events
    each time made a busy entity's window quadratic in its events. An entry remembers the
    pending list it measured and how far: a list appended to is measured from there on, a
    replaced one (a window emitted) afresh. A cache, never checkpointed.
    """

    def __init__(self) -> None:
        self._seen: dict[EntityKey, tuple[list[Event], int, float]] = {}

    def of(self, state: EntityState) -> float:
        """The oldest event time in ``state.pending`` (which must not be empty)."""
        pending = state.pending
        if len(pending) < _KEEP_OLDEST_FROM:
            self._seen.pop(state.key, None)  # a long list it measured was replaced
            return min(map(_TIME, pending))
        entry = self._seen.get(state.key)
        if entry is not None and entry[0] is pending:
            _, measured, oldest = entry
            for i in range(measured, len(pending)):
                t = pending[i].time
                if t < oldest:
                    oldest = t
        else:
            oldest = min(map(_TIME, pending))
        self._seen[state.key] = (pending, len(pending), oldest)
        return oldest

    def forget(self, key: EntityKey) -> None:
        self._seen.pop(key, None)


_MAX_KEY = EntityKey(POD_ENTITY, "\U0010ffff", "\U0010ffff")
_INSTANCE_KINDS = (INSTANCE_RUN_EVENT, INSTANCE_TERMINATE_EVENT, INSTANCE_IP_EVENT)
_ADDRESS_KINDS = (INSTANCE_RUN_EVENT, INSTANCE_IP_EVENT)  # events that bind an address
_BINDING_ONLY = (POD_IP_EVENT, INSTANCE_IP_EVENT)  # no behaviour, only an address


def _same_pod(dormant: Dormant, ev: Event) -> bool:
    """The event is the idle pod's, not a new pod's of that name (its create, another uid)."""
    if ev.kind is POD_CREATE_EVENT:
        return False
    return not (ev.pod_uid and dormant.uid and ev.pod_uid != dormant.uid)


def _learn_identity(state: EntityState, ev: Event) -> None:
    if ev.pod_uid and state.key.kind is POD_ENTITY:
        state.uid = state.uid or ev.pod_uid
    if ev.container_id:
        state.container_ids.add(ev.container_id)
    if ev.container and not state.container:
        state.container = ev.container
    if ev.workload:
        state.workload = state.workload or normalise_workload(ev.workload)
    if ev.image and not state.image:
        state.image = ev.image
    if ev.service_account and not state.service_account and ev.kind is not CLOUD_CALL_EVENT:
        state.service_account = ev.service_account
    if ev.node and not state.node:
        state.node = ev.node
    if ev.pod_ip and (state.key.kind is POD_ENTITY or ev.kind in _ADDRESS_KINDS):
        state.pod_ips.add(ev.pod_ip)


def of_next_life(state: EntityState, ev: Event, held: Sequence[Event]) -> bool:
    """Whether ``ev``, routed to a deleted pod's name, belongs to the pod recreated under it.

    A StatefulSet recreates ``redis-0`` within a second of the delete, so the grace that
    gives the dying pod its stragglers would hand it the successor's creation and start-up
    reads (and the successor, its creation lost, would look new and short-lived). A pod's
    events are the successor's when they come ``DEATH_GRACE_S`` after the delete, are a
    creation after it, name another pod uid, or follow a creation already ``held`` for it.
    """
    deleted = state.deleted_at
    if deleted is None:
        return False
    if ev.time > deleted + DEATH_GRACE_S:
        return True
    if ev.kind is POD_CREATE_EVENT and ev.time >= deleted:
        return True
    if ev.pod_uid is not None and state.uid is not None and ev.pod_uid != state.uid:
        return True
    return any(e.kind is POD_CREATE_EVENT and e.time <= ev.time for e in held)


def credentials_out_of_place(state: EntityState, ev: Event) -> bool:
    """A cloud call of this entity's story made with credentials that do not belong there.

    GuardDuty's InstanceCredentialExfiltration pattern, both ways round: a role that is
    neither a person's nor the entity's own (a CI role's keys, another workload's mapped
    role) used *from* the entity's address, or the entity's own instance role used from
    another internal address. A person's own session on their test instance is theirs to
    use anywhere; calls from outside the private ranges carry no address to compare (not
    counted: instances behind a NAT call from its public address).
    """
    if ev.kind is not CLOUD_CALL_EVENT:
        return False
    own_address = ev.pod_ip is not None and ev.pod_ip in state.pod_ips
    if state.key.kind is INSTANCE_ENTITY:
        if ev.actor_kind is INSTANCE_ACTOR and ev.instance_id == state.instance_id:
            return ev.pod_ip is not None and bool(state.pod_ips) and not own_address
        return own_address and ev.actor_kind is not PERSON_ACTOR
    # a pod's calls reach it by its address: out of place when made under a role mapped
    # to another namespace or service account (``ingest.role_map``)
    return own_address and (
        (ev.namespace is not None and ev.namespace != state.namespace)
        or (ev.service_account is not None and ev.service_account != state.service_account)
    )


def starts_container(ev: Event) -> bool:
    """``docker run``, ``nerdctl run``, ``ctr run``/``ctr task start``, ``crictl runp`` ..."""
    if posixpath.basename(ev.binary or "") not in RUNTIME_CLIS:
        return False
    return any(word in _RUNTIME_STARTS for word in (ev.args or "").split())


def remember_destination(state: EntityState, dest: str, t: float) -> None:
    """Keep the last few connection times per external destination, across windows.

    Beacon regularity needs more gaps than one window holds for slow beacons.
    """
    times = state.dest_times.setdefault(dest, [])
    i = bisect.bisect_left(times, t)
    # one connection seen twice (a flow record and a tcp_connect kprobe) is one connection
    if (i < len(times) and times[i] - t < _SAME_CONNECTION_S) or (
        i > 0 and t - times[i - 1] < _SAME_CONNECTION_S
    ):
        return
    times.insert(i, t)
    del times[:-_DEST_HISTORY]
    if len(state.dest_times) > _DEST_MAX:
        stalest = min(state.dest_times, key=lambda d: (state.dest_times[d][-1], d))
        del state.dest_times[stalest]
