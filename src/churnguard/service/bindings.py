"""The route stage's bindings table and the rule that gives a record's events their scope.

A *scope* is the unit of state a shard owns: a namespace (every pod of it, its service
accounts, its pods' IPs and containers), the fixed scope of cloud instances, or a node for
containers outside the orchestrator that no pod launched. Records that name their scope are
routed at once; records known only by an address, a container id or a node need a binding
another record taught: pod IP → namespace, instance IP → instances, container id →
namespace, and a pod's runtime start on a node → that namespace (the container it starts
belongs with the pod that launched it, so the launch evidence of T1610 meets it).

Every router learns bindings from what it reads and shares them on a compacted topic that
every router reads in full (a global table), so a CloudTrail call read by one router finds
the pod IP learned by another. Routers also share how far they have read each input
(``progress`` entries, after the bindings of what they read, on the same one-partition
topic): a record that waits for a binding waits until *every* input, whichever router reads
it, has been read past its time plus the binding lag (:meth:`BindingTable.frontier`), so
its scope does not depend on how the inputs are spread over the routers.

IP bindings keep their time, like the entity table's
(:meth:`~churnguard.profiling.entities.EntityTable.owner_of_ip`): an address reused by a
later pod routes by the owner at the call's event time. Role → namespace needs no table:
``pipeline.role_map`` is configuration every router has.

The table answers as the entity table does once a deferred event's binding lag has passed
(:meth:`~churnguard.pipeline.Pipeline._resolve_deferred`): a binding counts for an event at
``t`` only if it was learned from an event at or before ``t + IP_BINDING_LAG_S``. So a
router that has read further ahead answers as one that has not, and ``replay --shards``
(:mod:`churnguard.offline.shards`), which knows the whole table, answers as a router does.

:func:`shard_of` is the one scope → partition rule: the router produces by it and
``replay --shards`` splits by it.

Contact facts (:func:`contacts_of`, :func:`other_shards`): which external destinations a
namespace contacted, and first when. Campaign memory counts a host many namespaces use
from the cluster's first hours as a shared service (``Campaigns.shared``); a shard sees
only its own namespaces, so the router tells every *other* shard each namespace's first
contacts, and ``replay --shards`` hands the same facts to the same shards. With one shard
there is no other shard and nothing is sent.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from kafka.partitioner.default import murmur2

from churnguard.ingest.events import Event, EventKind
from churnguard.profiling.entities import (
    IP_BINDING_LAG_S,
    LAUNCH_WINDOW_S,
    EntityTable,
    starts_container,
)
from churnguard.profiling.features import NetworkClassifier

INSTANCES = "~instances"  # the scope of every cloud instance (their IPs bind to it)
UNATTRIBUTED = "~unattributed"  # events no binding can ever place (the pipeline counts them)
FALLBACK = "~unresolved"  # records that waited past a cap for a binding
IDLE = "idle"  # the scope field of a progress entry whose input is read to its end
_OWNERS_PER_IP = 8
_LAUNCHES_PER_NODE = 8
_SUBJECT = EntityTable()  # subject_key reads nothing of the table: one place for that rule


class Binding(msgspec.Struct, array_like=True, frozen=True):
    """One fact of the table: ``kind`` (ip, container, launch), its subject, since, scope;
    or an input's progress: ``kind`` progress, the input, the event time read up to, and
    :data:`IDLE` or ``""`` as its scope."""

    kind: str
    subject: str
    since: float
    scope: str

    def key(self) -> bytes:
        """Compaction key: one record per owner period of an IP, per container, per launch;
        the latest progress per input."""
        if self.kind in ("container", "progress"):
            return f"{self.kind}/{self.subject}".encode()
        return f"{self.kind}/{self.subject}/{self.since!r}".encode()


@dataclass
class BindingTable:
    """What every router knows: owners of addresses, containers and recent launches."""

    ips: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    containers: dict[str, tuple[float, str]] = field(default_factory=dict)  # since, scope
    launches: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    # input (``topic[partition]``) -> event time read up to, and whether it is read to its end
    progress: dict[str, tuple[float, bool]] = field(default_factory=dict)
    bounded: bool = True  # keep the latest few per address and node (a router's memory)

    def add(self, b: Binding) -> bool:
        """Fold a binding in; False when the table already knew it (nothing to share)."""
        if b.kind == "progress":
            return self.note_progress(b.subject, b.since, b.scope == IDLE)
        if b.kind == "container":
            known = self.containers.get(b.subject)
            if known is not None and known[1] == b.scope and known[0] <= b.since:
                return False
            self.containers[b.subject] = (b.since, b.scope)
            return True
        table = self.ips if b.kind == "ip" else self.launches
        entries = table.setdefault(b.subject, [])
        i = bisect.bisect_right(entries, (b.since, "\U0010ffff"))
        if i > 0 and entries[i - 1][1] == b.scope:
            return False  # the same owner period, restated
        entries.insert(i, (b.since, b.scope))
        if self.bounded:
            del entries[: -(_OWNERS_PER_IP if b.kind == "ip" else _LAUNCHES_PER_NODE)]
        return True

    def note_progress(self, name: str, time: float, idle: bool) -> bool:
        """An input read up to event time ``time`` (``idle``: to its end); False if known."""
        if self.progress.get(name) == (time, idle):
            return False
        self.progress[name] = (time, idle)
        return True

    def frontier(self, inputs: Iterable[str]) -> float:
        """The event time every one of ``inputs`` not read to its end has been read past,
        by whichever router reads it (``-inf`` while one has told nothing yet)."""
        times = [self.progress.get(name, (-math.inf, False)) for name in inputs]
        return min((t for t, idle in times if not idle), default=math.inf)

    def container_owner(self, container: str, at: float) -> str | None:
        """The namespace of the pod that claimed ``container`` by ``at`` + the binding lag."""
        known = self.containers.get(container[:12])
        return known[1] if known is not None and known[0] - at <= IP_BINDING_LAG_S else None

    def owner_of_ip(self, ip: str, at: float) -> str | None:
        """The scope that held ``ip`` at ``at`` (the entity table's rule, by scope)."""
        entries = self.ips.get(ip)
        if not entries:
            return None
        i = bisect.bisect_right(entries, (at, "\U0010ffff"))
        if i == 0:
            return entries[0][1] if entries[0][0] - at <= IP_BINDING_LAG_S else None
        return entries[i - 1][1]

    def launcher(self, node: str, at: float) -> str | None:
        """The namespace of the node's latest runtime start from a pod shortly before ``at``."""
        starts = [s for s in self.launches.get(node, []) if s[0] <= at <= s[0] + LAUNCH_WINDOW_S]
        return starts[-1][1] if starts else None


def bindings_of(events: list[Event]) -> list[Binding]:
    """The bindings a record's events teach (the facts the entity table binds on routing)."""
    out = []
    for ev in events:
        if ev.kind in (EventKind.INSTANCE_RUN, EventKind.INSTANCE_IP) and ev.pod_ip:
            out.append(Binding("ip", ev.pod_ip, ev.time, INSTANCES))
        elif ev.namespace and ev.pod:
            if ev.pod_ip:
                out.append(Binding("ip", ev.pod_ip, ev.time, ev.namespace))
            if ev.container_id:
                out.append(Binding("container", ev.container_id[:12], ev.time, ev.namespace))
            if ev.node and starts_container(ev):
                out.append(Binding("launch", ev.node, ev.time, ev.namespace))
    return out


def contacts_of(events: list[Event], scope: str, network: NetworkClassifier) -> dict[str, float]:
    """External destination -> earliest time a record's flows reached it, when the record's
    scope is a namespace (campaigns are per namespace; the pseudo-scopes keep none)."""
    out: dict[str, float] = {}
    if scope.startswith("~"):
        return out
    for ev in events:
        dest = network.destination_of(ev)
        if dest is not None and math.isfinite(ev.time) and ev.time < out.get(dest, math.inf):
            out[dest] = ev.time
    return out


def other_shards(scope: str, shards: int) -> list[int]:
    """The shards a scope's contact facts go to: every one but its own."""
    own = shard_of(scope, shards)
    return [k for k in range(shards) if k != own]


def shard_of(scope: str, shards: int) -> int:
    """The repartition partition (0 .. shards - 1) that owns a scope.

    Kafka's default partitioner on the scope's UTF-8 bytes (murmur2, as every Kafka client
    computes it), so the partition a scope's records go to does not depend on the client.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return (murmur2(scope.encode("utf-8")) & 0x7FFFFFFF) % shards


@dataclass(frozen=True)
class Scope:
    """A record's scope, or why it has none yet.

    ``final`` is False when the answer may still change as bindings arrive: an address
    (nobody may have claimed it yet, or a later owner of a reused one may not have been
    read yet) or a container nobody has claimed yet. The router waits for every input to
    pass the event's time by the binding lag, then for the table, up to its caps.
    """

    key: str | None
    final: bool


def scope_of(events: list[Event], table: BindingTable) -> Scope:
    """The scope of a record: that of its first event whose scope is final, else (not
    final: the router waits, then routes by it) that of its first event that has one.

    A record whose events belong to different scopes (a pod's RunInstances call: the
    instances and the pod's namespace) goes with one of them; see docs/limitations.md.
    """
    if not events:
        return Scope(UNATTRIBUTED, True)
    tentative = None
    for ev in events:
        scope = _event_scope(ev, table)
        if scope.key is not None and scope.final:
            return scope
        tentative = tentative or scope.key
    return Scope(tentative, False)


def _event_scope(ev: Event, table: BindingTable) -> Scope:
    key = _SUBJECT.subject_key(ev)
    if key is not None:
        return Scope(key.namespace or INSTANCES, True)
    if ev.container_id:
        if owner := table.container_owner(ev.container_id, ev.time):
            return Scope(owner, True)
        if ev.node and not ev.pod:  # outside the orchestrator unless a pod claims it in time
            return Scope(table.launcher(ev.node, ev.time) or f"~node/{ev.node}", False)
    if ev.pod_ip:
        # never final: a later owner of a reused address may not have been read yet
        return Scope(table.owner_of_ip(ev.pod_ip, ev.time), False)
    if ev.namespace:
        return Scope(ev.namespace, True)
    return Scope(UNATTRIBUTED, True)
