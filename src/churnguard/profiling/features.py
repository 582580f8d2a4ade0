"""Turn an entity's window of events into a feature row, by the names of the feature spec.

Every value computed here is named in ``features/v1.toml``, which documents it; the builder
fills absent features with the spec's ``missing`` value. Events are sorted by event time
before folding, so the row does not depend on arrival order.

Over 400 lines on purpose: the feature families (lifecycle, activity, network, novelty) and
the evidence they cite are computed from one sorted window and one first-seen memory.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import posixpath
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from churnguard.ingest.common import is_external_address
from churnguard.ingest.events import (  # the members, read without the enum hook
    API_CALL_EVENT,
    AUTOSCALER_ACTOR,
    CLOUD_CALL_EVENT,
    CONTAINER_ENTITY,
    FILE_WRITE_EVENT,
    INSTANCE_ACTOR,
    INSTANCE_ENTITY,
    INSTANCE_RUN_EVENT,
    INSTANCE_TERMINATE_EVENT,
    NET_FLOW_EVENT,
    PERSON_ACTOR,
    POD_CREATE_EVENT,
    POD_DELETE_EVENT,
    POD_ENTITY,
    POD_EXEC_EVENT,
    PROCESS_EXEC_EVENT,
    RUNTIME_ALERT_EVENT,
    SERVICE_ACCOUNT_ACTOR,
    UNKNOWN_ACTOR,
    ApiCategory,
    EntityKind,
    Event,
    EventKind,
)
from churnguard.profiling.entities import (
    EntityState,
    credentials_out_of_place,
    remember_destination,
    starts_container,
)
from churnguard.profiling.profile import (
    ArchiveShipped,
    EntityRef,
    Evidence,
    Profile,
    image_repository,
)
from churnguard.profiling.spec import FeatureSpec

SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"})
ARCHIVE_TOOLS = frozenset({"tar", "gzip", "pigz", "bzip2", "xz", "zip", "7z", "7za", "zstd"})
ARCHIVE_EXTENSIONS = (
    ".tar", ".tgz", ".tar.gz", ".gz", ".bz2", ".tbz2", ".zip", ".7z", ".xz", ".txz", ".zst",
)  # fmt: skip
_PY_ARCHIVE = re.compile(r"\b(gzip|bz2|zipfile|tarfile|lzma|make_archive|zlib)\b")
_TAR_CREATE = re.compile(r"^-?[a-zA-Z]*c[a-zA-Z]*$")
_ARCHIVE_IN_TEXT = re.compile(
    r"[\w./~+-]+\.(?:tar\.gz|tar\.bz2|tar\.xz|tgz|tbz2|txz|tar|gz|bz2|zip|7z|xz|zst)\b"
)
_MIN_BEACON_CONNECTIONS = 4
RARE_CONTACTS = 3  # a destination fewer entities of a namespace contacted is rare
# ...unless at least two of them have polled it for this long: a long-lived workload's
# endpoint (GitOps, dashboards), not a beacon (issue 13)
POLLED_FOR_S = 12 * 3600.0
# a destination its namespace first used this long after an entity started is news to that
# entity: a pod that has run for a while and now calls a host on a schedule was changed,
# while a poller calls its endpoint within its first period (hourly at the slowest: the
# margin is half a period)
LATE_AFTER_S = 1.5 * 3600.0
BEACON_MIN_REGULARITY = 0.5  # 1 - CV of the gaps: 10-30 min of jitter on 40-60 min is 0.57+
# an implant calls home at once; a host first called later than this after the unfamiliar
# program started is not tied to it (features._unfamiliar_callers)
CALL_HOME_S = 600.0
# a host one replica calls like clockwork (1 - CV of its gaps at least this: 30 min +-10 %
# is 0.94; pollers' schedules are tighter still) while this many other pods of its
# workload never called it: code the replicas do not share (features._lone_beacons, det9)
LONE_BEACON_MIN_REGULARITY = 0.8
LONE_SIBLINGS = 2
_REPLICAS_KEPT = 64  # a workload's latest pods remembered (when each was last seen)
_LONE_CALLERS = 4  # a host's latest callers remembered per workload
# world-writable directories: a program run from one was written at run time, never
# learned as a workload's usual program (features._started)
DROP_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/")
_MAX_EVIDENCE = 8
_MAX_LIFE_EVIDENCE = 12  # a whole life's evidence: its first and its last key records
# an entity that ends within this of its start is scored on its whole life (create → use
# → delete) when it ends; a longer one's final window stays a window (its totals would be
# compared with windows of minutes)
WHOLE_LIFE_S = 3600.0
# an archive counts as shipped once at least this share of its size went to one host (an
# upload of a compressed archive is about its size; a build's small status calls are not)
ARCHIVE_SHIPPED_SHARE = 0.5
# a person new to the cluster is vouched for by a group of theirs (identity provider) in
# which at least this many other people already act on pods quietly: a new member of the
# team that operates the cluster, not a stranger (issue 13, det6a)
PEERS_MIN = 2
_MAX_STRANGERS = 8
ARCHIVE_SHIPPED_MIN_BYTES = 1_000_000
_ARCHIVE_SENT_MAX = 16  # destinations followed after an entity's archive
# the read counts a profile carries summed over its life (Profile.life_reads): collection
# spread thin over hours stays inside every window's baseline, not inside its life's
LIFE_READS = ("repo_reads", "distinct_objects_read", "secret_reads")
_LIFE_MAX = frozenset({"distinct_binaries", "external_destinations"})  # distinct: max, not sum
_CATEGORY_FEATURE = {
    ApiCategory.READ: "api_read",
    ApiCategory.LIST: "api_list",
    ApiCategory.WRITE: "api_write",
    ApiCategory.DELETE: "api_delete",
    ApiCategory.EXEC: "api_exec",
    ApiCategory.SECRET_READ: "secret_reads",
    ApiCategory.CLOUD_DESTRUCTIVE: "cloud_destructive",
    ApiCategory.REPO_READ: "repo_reads",
}
_OBJECT_READS = (ApiCategory.READ, ApiCategory.REPO_READ, ApiCategory.SECRET_READ)
_EVIDENCE_CATEGORIES = (  # the calls an evidence record points at
    ApiCategory.SECRET_READ,
    ApiCategory.CLOUD_DESTRUCTIVE,
    ApiCategory.EXEC,
    ApiCategory.REPO_READ,
)


class NetworkClassifier:
    """Whether an event's destination is outside the cluster: the adapter's verdict when it
    gave one, else the one address rule (:func:`churnguard.ingest.common.is_external_address`);
    a name without an address (an FQDN) is external."""

    def __init__(self, cluster_cidrs: Iterable[str]) -> None:
        self._cidrs = tuple(cluster_cidrs)

    def destination_of(self, ev: Event) -> str | None:
        """The external destination a flow counts for (what ``Profile.destinations`` lists),
        or None for anything else: the one rule the route stage's contact facts use too."""
        if ev.kind is NET_FLOW_EVENT and self.is_external(ev):
            return _destination(ev)
        return None

    def is_external(self, ev: Event) -> bool:
        if ev.dst_external is not None:
            return ev.dst_external
        if not ev.dst_ip:
            return bool(ev.dst_fqdn)
        return bool(is_external_address(ev.dst_ip, self._cidrs))


class FirstSeenMemory:
    """What each namespace/workload has been seen doing: images, owners, destinations.

    The pipeline teaches it (:meth:`FeatureBuilder.remember`) after each batch is scored,
    in the deterministic emission order, with every profile that did not alert: a window
    that paged does not make its exfil host, image or owner "known" for the next intrusion
    (attackers reuse infrastructure), and 'new' always means new relative to earlier
    batches.
    """

    def __init__(self, max_per_scope: int = 4096) -> None:
        self.images: dict[str, set[str]] = {}
        self.workloads: dict[str, set[str]] = {}
        self.destinations: dict[str, set[str]] = {}
        # scope -> destination -> the first few entities seen contacting it (rarity)
        self.contacts: dict[str, dict[str, set[str]]] = {}
        # scope -> destination -> event time of the first window that contacted it and did
        # not page: how long the namespace's own workloads have used it
        self.first_contact: dict[str, dict[str, float]] = {}
        # workload ("namespace/Kind/name") -> the earliest time any of its pods was seen:
        # how long the workload has run (a beacon's host is late news to it)
        self.workload_born: dict[str, float] = {}
        # workload -> destination -> event time of the first quiet window of one of its pods
        # that contacted it: the hosts the workload's own code calls
        self.workload_contact: dict[str, dict[str, float]] = {}
        # workload -> programs its pods ran in quiet windows: the workload's usual processes
        self.binaries: dict[str, set[str]] = {}
        # scope -> identities seen creating, exec'ing into or deleting its entities
        self.identities: dict[str, set[str]] = {}
        # identity-provider group -> people seen acting on pods in the cluster in quiet
        # windows: the teams that operate it
        self.peers: dict[str, set[str]] = {}
        # scope -> destination -> the entity that paged calling it on a schedule, the only
        # one that had contacted it (note_intruder): an implant's C2 host, which a new
        # workload's archive upload finds as good as new (FeatureBuilder._archive_shipped)
        self.intruded: dict[str, dict[str, str]] = {}
        # workload -> its latest pods seen -> when, and workload -> host -> its latest pods
        # that called the host -> when (any window, quiet or not: facts): a host only one
        # live replica calls (is_lone_call)
        self.replicas: dict[str, dict[str, float]] = {}
        self.replica_calls: dict[str, dict[str, dict[str, float]]] = {}
        self._max = max_per_scope

    # A scope's entry is taken by ``get`` and made only when missing, here and in the
    # ``_note_*`` helpers: ``setdefault(scope, set())`` built and dropped a container on
    # every call, for every profile of every batch.
    def _add(self, table: dict[str, set[str]], scope: str, items: Iterable[str]) -> None:
        seen = table.get(scope)
        if seen is None:
            seen = table[scope] = set()
        for item in items:
            if len(seen) >= self._max:
                return
            seen.add(item)

    def snapshot(self) -> dict:
        return {
            "images": {k: sorted(v) for k, v in self.images.items()},
            "workloads": {k: sorted(v) for k, v in self.workloads.items()},
            "destinations": {k: sorted(v) for k, v in self.destinations.items()},
            "contacts": {k: {d: sorted(e) for d, e in v.items()} for k, v in self.contacts.items()},
            "first_contact": {k: dict(v) for k, v in self.first_contact.items()},
            "identities": {k: sorted(v) for k, v in self.identities.items()},
            "peers": {k: sorted(v) for k, v in self.peers.items()},
            "workload_born": dict(self.workload_born),
            "workload_contact": {k: dict(v) for k, v in self.workload_contact.items()},
            "binaries": {k: sorted(v) for k, v in self.binaries.items()},
            "intruded": {k: dict(v) for k, v in self.intruded.items()},
            "replicas": {k: dict(v) for k, v in self.replicas.items()},
            "replica_calls": {
                k: {d: dict(e) for d, e in v.items()} for k, v in self.replica_calls.items()
            },
        }

    def restore(self, data: dict) -> None:
        self.images = {k: set(v) for k, v in data.get("images", {}).items()}
        self.workloads = {k: set(v) for k, v in data.get("workloads", {}).items()}
        self.destinations = {k: set(v) for k, v in data.get("destinations", {}).items()}
        self.contacts = {
            k: {d: set(e) for d, e in v.items()} for k, v in data.get("contacts", {}).items()
        }
        self.first_contact = {k: dict(v) for k, v in data.get("first_contact", {}).items()}
        self.identities = {k: set(v) for k, v in data.get("identities", {}).items()}
        self.peers = {k: set(v) for k, v in data.get("peers", {}).items()}
        self.workload_born = dict(data.get("workload_born", {}))
        self.workload_contact = {k: dict(v) for k, v in data.get("workload_contact", {}).items()}
        self.binaries = {k: set(v) for k, v in data.get("binaries", {}).items()}
        self.intruded = {k: dict(v) for k, v in data.get("intruded", {}).items()}
        self.replicas = {k: dict(v) for k, v in data.get("replicas", {}).items()}
        self.replica_calls = {
            k: {d: dict(e) for d, e in v.items()} for k, v in data.get("replica_calls", {}).items()
        }

    def note_peers(self, groups: Mapping[str, Iterable[str]]) -> None:
        """Learn people (identity -> their groups) as members of the teams acting on pods."""
        for identity, of in groups.items():
            for group in of:
                if group in self.peers or len(self.peers) < self._max:
                    self._add(self.peers, group, [identity])

    def vouched(self, identity: str, groups: Iterable[str]) -> bool:
        """A group of ``identity``'s has ``PEERS_MIN`` other people the cluster knows."""
        return any(len(self.peers.get(g, set()) - {identity}) >= PEERS_MIN for g in groups)

    def note_contacts(self, scope: str, entity: str, dests: Iterable[str]) -> None:
        _note_callers(self.contacts, scope, entity, dests, self._max, RARE_CONTACTS)

    def note_intruder(self, scope: str, entity: str, dests: Iterable[str]) -> None:
        """``entity`` paged calling ``dests`` on a schedule: those only it ever contacted in
        ``scope`` are an implant's hosts. They stay known (the features and every other
        rule see them as before: a poller that paged once must not page on every later
        window), but a new workload shipping an archive there counts them as new."""
        contacts = self.contacts.get(scope, {})
        table = self.intruded.setdefault(scope, {})
        for dest in dests:
            if contacts.get(dest, set()) <= {entity} and len(table) < self._max:
                table.setdefault(dest, entity)

    def note_replica(self, workload: str, entity: str, dests: Iterable[str], when: float) -> None:
        """``entity``, a pod of ``workload``, was seen up to ``when`` (a window's end, any
        window) calling ``dests``: the latest few pods and each host's latest callers."""
        _note_latest(self.replicas, workload, [entity], when, _REPLICAS_KEPT, self._max)
        table = self.replica_calls.get(workload)
        if table is None:
            table = self.replica_calls[workload] = {}
        for dest in dests:
            if dest in table or len(table) < self._max:
                _note_latest(table, dest, [entity], when, _LONE_CALLERS, self._max)

    def is_lone_call(self, workload: str, dest: str, entity: str, since: float) -> bool:
        """``LONE_SIBLINGS`` or more other pods of ``workload`` were seen since ``since`` (the
        start of this pod's schedule) and none of them called ``dest`` since then: only this
        replica runs code that calls it now. Replicas run one image and one configuration;
        each pod of a GitOps or monitoring workload polls its endpoint within a period.
        Calls by pods before ``since`` do not count (attackers reuse hosts: an earlier
        intrusion's replica called it hours ago), nor the namespace's memory of the host."""
        siblings = [
            e for e, t in self.replicas.get(workload, {}).items() if e != entity and t >= since
        ]
        callers = self.replica_calls.get(workload, {}).get(dest, {})
        return len(siblings) >= LONE_SIBLINGS and not any(
            e != entity and t >= since for e, t in callers.items()
        )

    def is_intruded(self, scope: str, dest: str) -> bool:
        """Only an entity that paged calling it on a schedule had contacted ``dest``."""
        return dest in self.intruded.get(scope, {})

    def note_first_contact(self, scope: str, dests: Iterable[str], when: float) -> None:
        _note_first(self.first_contact, scope, dests, when, self._max)

    def note_workload(
        self, workload: str, born: float, dests: Iterable[str], when: float | None
    ) -> None:
        """A workload's pod was seen from ``born``; ``when`` (a quiet window's start) it
        called ``dests`` (None: it paged, and teaches nothing but the birth)."""
        if workload in self.workload_born or len(self.workload_born) < self._max:
            self.workload_born[workload] = min(self.workload_born.get(workload, born), born)
        if when is not None:
            _note_first(self.workload_contact, workload, dests, when, self._max)

    def is_rare(
        self, scope: str, dest: str, entity: str, now: float, workload: str | None = None
    ) -> bool:
        """Contacted by fewer than ``RARE_CONTACTS`` entities of the scope, this one included,
        and not polled (:meth:`polled`): a destination the namespace's pods have polled for
        half a day is its baseline, not a C2 host."""
        who = self.contacts.get(scope, {}).get(dest, set()) | {entity}
        return len(who) < RARE_CONTACTS and not self.polled(scope, dest, entity, now, workload)

    def is_late(
        self,
        scope: str,
        dest: str,
        entity: str,
        born: float,
        now: float,
        workload: str | None = None,
    ) -> bool:
        """First used by the scope (any of its entities, in a quiet window) ``LATE_AFTER_S``
        or more after ``entity`` was born, or first used by its ``workload``'s pods that long
        after the workload's first pod was seen, and not polled (:meth:`polled`): a host new
        to a long-running entity or workload, however many intrusions of the namespace used
        it before (attackers reuse infrastructure). The workload's clock catches an implant
        in a young replica of an old workload (a rollout or a scale-up replaced the pod an
        hour ago): its host is news to the workload, whose pollers called their endpoints
        from its first pod."""
        if self.polled(scope, dest, entity, now, workload):
            return False
        if self.first_contact.get(scope, {}).get(dest, now) - born >= LATE_AFTER_S:
            return True
        if workload is None:
            return False
        first = self.workload_contact.get(workload, {}).get(dest, now)
        return first - min(self.workload_born.get(workload, born), born) >= LATE_AFTER_S

    def polled(
        self, scope: str, dest: str, entity: str, now: float, workload: str | None = None
    ) -> bool:
        """Polled for ``POLLED_FOR_S``: by two or more entities of the scope since its first
        quiet contact, or by ``workload``'s pods since a quiet window of its first
        ``LATE_AFTER_S`` (a one-replica GitOps controller or dashboard calls its endpoint
        from its first pod on, for days). A host a workload first called later in its life
        (an implant in one replica) is not its baseline, however long it beats."""
        since = self.first_contact.get(scope, {}).get(dest)
        who = self.contacts.get(scope, {}).get(dest, set()) | {entity}
        if len(who) >= 2 and since is not None and now - since >= POLLED_FOR_S:
            return True
        first = self.workload_contact.get(workload, {}).get(dest) if workload else None
        if first is None:
            return False
        born = self.workload_born.get(workload or "", first)
        return first - born < LATE_AFTER_S and now - first >= POLLED_FOR_S

    def usual_binaries(self, workload: str | None) -> set[str] | None:
        """Programs the workload's pods ran in quiet windows; None when it has none yet."""
        return self.binaries.get(workload) if workload else None


CLUSTER_SCOPE = "*"  # identities seen acting on pods in any namespace (never a namespace name)


def destination_scope(state: EntityState) -> str:
    """First-seen destinations are remembered per namespace (instances: one cloud scope).

    Per namespace, not per workload: a destination another workload of the namespace
    already uses (the backups' object store) is not news, a host nobody there ever
    contacted is.
    """
    if state.key.kind is INSTANCE_ENTITY:
        return "instances"
    return state.namespace or "-"


def workload_scope(namespace: str | None, workload: str | None) -> str | None:
    """A controller's pods share their workload's memory (``namespace/Kind/name``); a bare
    pod or an instance has none."""
    return f"{namespace or '-'}/{workload}" if workload else None


def _note_callers(
    tables: dict[str, dict[str, set[str]]],
    scope: str,
    entity: str,
    dests: Iterable[str],
    cap: int,
    keep: int,
) -> None:
    """The first ``keep`` entities of ``scope`` that called each destination (``cap``
    destinations per scope): whether a host is shared, not how widely."""
    table = tables.get(scope)
    if table is None:
        table = tables[scope] = {}
    for dest in dests:
        who = table.get(dest)
        if who is None:
            if len(table) >= cap:
                continue
            who = table[dest] = set()
        if len(who) < keep:
            who.add(entity)


def _note_latest(
    tables: dict[str, dict[str, float]],
    scope: str,
    items: Iterable[str],
    when: float,
    keep: int,
    cap: int,
) -> None:
    """The latest ``when`` each item was seen for ``scope``; the ``keep`` latest items."""
    table = tables.get(scope)
    if table is None:
        if len(tables) >= cap:
            return
        table = tables[scope] = {}
    for item in items:
        table[item] = max(table.get(item, when), when)
        if len(table) > keep:
            del table[min(table, key=lambda k: (table[k], k))]


def _note_first(
    tables: dict[str, dict[str, float]],
    scope: str,
    dests: Iterable[str],
    when: float,
    cap: int,
) -> None:
    """The earliest ``when`` each destination was seen for ``scope``, ``cap`` per scope."""
    table = tables.get(scope)
    if table is None:
        table = tables[scope] = {}
    for dest in dests:
        if dest not in table and len(table) < cap:
            table[dest] = when
        elif dest in table:
            table[dest] = min(table[dest], when)


def _memory_scope(p: Profile) -> str:
    """:func:`destination_scope` of a profile's entity."""
    return "instances" if p.entity.kind == "instance" else (p.entity.namespace or "-")


def _basename(binary: str | None) -> str:
    return posixpath.basename(binary or "")


def is_archive_path(path: str | None) -> bool:
    return bool(path) and path.lower().endswith(ARCHIVE_EXTENSIONS)


def archive_outputs(ev: Event) -> tuple[bool, list[str]]:
    """Whether a process start creates an archive, and the archive paths its arguments name.

    Cached like :func:`_argv` (activity and evidence both ask, jobs repeat their commands)."""
    args = ev.args or ""
    if len(args) > _ARGV_CACHED_CHARS:
        creates, paths = _archive_outputs(ev.binary, args)
    else:
        creates, paths = _cached_archive_outputs(ev.binary, args)
    return creates, list(paths)


def _archive_outputs(binary: str | None, args: str) -> tuple[bool, tuple[str, ...]]:
    tool = _basename(binary)
    argv = _argv(args)
    paths = tuple(a for a in argv if is_archive_path(a))
    if tool == "tar":
        creates = any(_TAR_CREATE.match(a) for a in argv[:2]) or "--create" in argv
        return creates, paths[:1] if creates else ()
    if tool in ARCHIVE_TOOLS:
        return "-d" not in argv and "--decompress" not in argv, paths
    if tool.startswith("python") and _PY_ARCHIVE.search(args):
        return True, tuple(_ARCHIVE_IN_TEXT.findall(args))
    return False, ()


_ARGV_CACHED_CHARS = 512  # longer command lines are split every time: the cache stays small


def _argv(args: str) -> tuple[str, ...]:
    """A command line's words as a shell splits them. Cached, since jobs repeat their
    commands and ``shlex`` was a tenth of building feature rows; only short lines, so a
    flood of megabyte-long hostile ones cannot fill memory."""
    return _shell_words(args) if len(args) > _ARGV_CACHED_CHARS else _cached_words(args)


def _shell_words(args: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(args))
    except ValueError:
        return tuple(args.split())


_cached_words = functools.lru_cache(maxsize=4096)(_shell_words)
_cached_archive_outputs = functools.lru_cache(maxsize=4096)(_archive_outputs)


class FeatureBuilder:
    """Computes :class:`Profile` rows for entity windows, per the feature spec."""

    def __init__(self, spec: FeatureSpec, network: NetworkClassifier) -> None:
        self.spec = spec
        self.network = network
        self.memory = FirstSeenMemory()
        self._columns_of: dict[str, list[tuple[str, float]]] = {}
        self._life_of: dict[str, list[tuple[str, bool]]] = {}
        # per kind: the names of its life rules, and them split into adding and keeping-the-max
        self._life_names: dict[str, frozenset[str]] = {}
        self._life_split: dict[str, tuple[list[str], list[str]]] = {}
        self._blank_of: dict[str, dict[str, float]] = {}

    def _columns(self, kind: str) -> list[tuple[str, float]]:
        """(name, missing) of the spec's features that apply to an entity kind, in order."""
        columns = self._columns_of.get(kind)
        if columns is None:
            columns = [(f.name, f.missing) for f in self.spec.features if f.applies_to(kind)]
            self._columns_of[kind] = columns
        return columns

    def _blank_row(self, kind: str) -> dict[str, float]:
        """An entity kind's columns, in spec order, each at its ``missing``: the row a window
        starts from (copy it; the features it computes overwrite their own columns)."""
        blank = self._blank_of.get(kind)
        if blank is None:
            blank = {name: float(missing) for name, missing in self._columns(kind)}
            self._blank_of[kind] = blank
        return blank

    def build(
        self,
        state: EntityState,
        events: list[Event],
        start: float,
        end: float,
        *,
        final: bool,
        end_reason: str,
    ) -> Profile:
        events = _in_event_order(events)
        external = self._external_flows(events)
        now = events[-1].time if events else state.last_seen  # sorted by time first
        me = str(state.key) if external else ""  # only rarity and beacons ask, of hosts outside
        traffic = _traffic(external) if external else {}
        regularity = _regularities(state, external, traffic) if external else {}
        kind = _ROW_KIND[state.key.kind]
        blank = self._blank_row(kind)
        row = blank.copy()  # each family writes its floats into it, in spec order
        self._lifecycle(row, state, final)
        self._activity(row, state, events)
        self._network(row, state, events, external, traffic, regularity, now, me)
        self._novelty(row, state)
        identities = window_identities(state, events, final)
        groups = window_groups(events, identities)
        self._identity(row, state, identities)
        self._strangers(state, identities, groups)
        if len(row) != len(blank):  # a family may compute what another kind's rows have
            for name in row.keys() - blank.keys():
                del row[name]
        self._accumulate(state, row, kind)
        if state.key.kind is CONTAINER_ENTITY:
            evidence = _container_chain(state, events)
        else:
            evidence = _evidence(state, events, final)
            state.life_evidence = _life_evidence(state.life_evidence, evidence)
        born = state.created_at if state.created_at is not None else state.first_seen
        if final and end_reason != "end_of_input" and end - born <= WHOLE_LIFE_S:
            self._whole_life(state, row, kind)  # it ended: its whole (short) life
            if state.key.kind is not CONTAINER_ENTITY:
                evidence = list(state.life_evidence)
        late, lone = self._beacons(state, regularity, now, me) if regularity else ({}, {})
        profile = Profile(
            entity=entity_ref(state),
            window_start=start,
            window_end=end,
            final=final,
            end_reason=end_reason,
            spec_version=self.spec.version,
            values=row,
            first_seen=state.first_seen,
            last_seen=events[-1].time if events else end,
            events=len(events),
            created_by=state.created_by,
            creator_kind=state.created_by_kind,
            identities=identities,
            identity_groups=groups,
            strangers=list(state.strangers),
            deleted_by=state.deleted_by if final else None,
            deleter_kind=state.deleter_kind if final else None,
            evidence=evidence,
            destinations=sorted(traffic),
            destination_bytes=traffic,
            late_beacons=late,
            lone_beacons=lone,
            binaries=sorted(_started(events)),
            unfamiliar_callers=self._unfamiliar_callers(state, events),
            archive_shipped=self._archive_shipped(state, events),
            life_reads={n: state.life[n] for n in LIFE_READS if state.life.get(n, 0.0) > 0},
        )
        return profile

    def remember(self, profiles: list[Profile], *, paged: list[Profile] = ()) -> None:
        """Teach the first-seen memory a scored batch: ``profiles`` did not page, ``paged`` did.

        Who contacted a destination (its rarity, for beacons) is counted from both: a host
        many entities use is shared whatever they did. What is *known* (destinations,
        images, owners) is learned only from the profiles that did not page. A host only
        an entity that paged calling it on a schedule ever contacted is noted as an
        implant's (:meth:`FirstSeenMemory.note_intruder`; its quiet first beats taught it).
        """
        for p in [*profiles, *paged]:
            self.memory.note_contacts(_memory_scope(p), p.entity.key(), p.destinations)
        quiet_ids = {id(p) for p in profiles}
        for p in [*profiles, *paged]:
            workload = workload_scope(p.entity.namespace, p.entity.workload)
            if workload is not None and p.entity.kind == "pod":
                quiet = id(p) in quiet_ids
                self.memory.note_workload(
                    workload, p.first_seen, p.destinations, p.window_start if quiet else None
                )
                self.memory.note_replica(workload, p.entity.key(), p.destinations, p.window_end)
                if quiet:
                    self.memory._add(self.memory.binaries, workload, p.binaries)
        for p in profiles:
            e, scope = p.entity, _memory_scope(p)
            self.memory._add(self.memory.destinations, scope, p.destinations)
            self.memory.note_first_contact(scope, p.destinations, p.window_start)
            self.memory._add(self.memory.identities, scope, p.identities)
            if e.kind == "pod":
                self.memory._add(self.memory.identities, CLUSTER_SCOPE, p.identities)
                self.memory.note_peers(p.identity_groups)
                ns = e.namespace or ""
                if e.image:
                    self.memory._add(self.memory.images, ns, [image_repository(e.image)])
                if e.workload:
                    self.memory._add(self.memory.workloads, ns, [e.workload])
        for p in paged:  # an implant's C2: what it paged for calling on a schedule
            if p.values.get("beacon_regularity", 0.0) >= BEACON_MIN_REGULARITY:
                self.memory.note_intruder(_memory_scope(p), p.entity.key(), p.destinations)

    # ---- feature groups ------------------------------------------------------------------
    # Each family below writes its features into ``out``, the window's row; a name the row
    # has no column for is dropped by :meth:`build`.
    def _lifecycle(self, out: dict[str, float], state: EntityState, final: bool) -> None:
        if not (final and state.deleted_at is not None):
            return
        born = state.created_at if state.created_at is not None else state.first_seen
        out["lifetime_s"] = float(max(0.0, state.deleted_at - born))
        execs = [t for t in state.exec_times if t <= state.deleted_at]
        if execs:
            out["exec_to_delete_s"] = float(state.deleted_at - execs[-1])
        kind = state.deleter_kind
        out["deleted_by_person"] = float(kind == PERSON_ACTOR)
        out["deleted_by_other_identity"] = float(
            kind in (SERVICE_ACCOUNT_ACTOR, INSTANCE_ACTOR)
            and not _own_controller(state)  # a hub culling the pods it spawned
        )
        if state.key.kind is INSTANCE_ENTITY:
            out["run_and_terminate_same_identity"] = float(
                state.created_by is not None
                and state.created_by == state.deleted_by
                and state.created_by_kind != AUTOSCALER_ACTOR
            )

    def _activity(self, out: dict[str, float], state: EntityState, events: list[Event]) -> None:
        counts: dict[str, int] = {}
        binaries: set[str] = set()
        archive_paths: set[str] = set()
        archive_tool_runs = 0
        archive_bytes = 0
        objects: set[str] = set()
        shell = False
        misplaced = 0
        for ev in events:
            k = ev.kind
            if k is CLOUD_CALL_EVENT and credentials_out_of_place(state, ev):
                misplaced += 1
            if k is CLOUD_CALL_EVENT or k is API_CALL_EVENT:  # the commonest kinds first
                if ev.api_category:
                    name = _CATEGORY_FEATURE[ev.api_category]
                    counts[name] = counts.get(name, 0) + 1
                    if ev.api_category in _OBJECT_READS and ev.object_name:
                        objects.add(ev.object_name)
            elif k is POD_EXEC_EVENT:
                counts["exec_count"] = counts.get("exec_count", 0) + 1
                shell |= _exec_opens_shell(ev)
            elif k is PROCESS_EXEC_EVENT:
                binaries.add(ev.binary or "")
                counts["container_starts"] = counts.get("container_starts", 0) + starts_container(
                    ev
                )
                shell |= _basename(ev.binary) in SHELLS
                creates, paths = archive_outputs(ev)
                if creates:
                    if paths:
                        archive_paths.update(paths)
                    else:
                        archive_tool_runs += 1
            elif k is FILE_WRITE_EVENT and is_archive_path(ev.file_path):
                archive_paths.add(ev.file_path or "")
                archive_bytes += ev.bytes_written
            elif k is INSTANCE_TERMINATE_EVENT and ev.actor_kind == INSTANCE_ACTOR:
                counts["cloud_destructive"] = counts.get("cloud_destructive", 0) + 1
        for name, count in counts.items():
            out[name] = float(count)
        out["credentials_out_of_place"] = float(misplaced)  # only cloud calls can be
        out["distinct_binaries"] = float(len(binaries))
        out["shell_spawned"] = float(shell)
        out["archive_writes"] = float(len(archive_paths) + archive_tool_runs)
        out["archive_bytes"] = float(archive_bytes)
        out["distinct_objects_read"] = float(len(objects))

    def _external_flows(self, events: list[Event]) -> list[tuple[Event, str]]:
        """The window's flows out of the cluster with their destinations, in event order:
        classified once a window for every feature family that reads them."""
        is_external = self.network.is_external
        return [
            (ev, _destination(ev)) for ev in events if ev.kind is NET_FLOW_EVENT and is_external(ev)
        ]

    def _network(
        self,
        out: dict[str, float],
        state: EntityState,
        events: list[Event],
        flows_out: list[tuple[Event, str]],
        traffic: Mapping[str, list[int]],
        regularity: Mapping[str, float],
        now: float,
        me: str,
    ) -> None:
        """``traffic``: :func:`_traffic` of ``flows_out`` (bytes out per destination)."""
        egress = 0
        for ev in events:
            if ev.kind is NET_FLOW_EVENT:
                egress += ev.bytes_out
        external_bytes = 0
        for ev, _ in flows_out:
            external_bytes += ev.bytes_out
        new_bytes = new = 0
        beacon = 0.0
        if traffic:  # most windows call no host outside: no memory to look up
            scope = destination_scope(state)
            news = traffic.keys() - self.memory.destinations.get(scope, set())
            new, new_bytes = len(news), sum(traffic[d][0] for d in news)
            workload = workload_scope(state.namespace, state.workload)
            rare = [d for d in traffic if self.memory.is_rare(scope, d, me, now, workload)]
            beacon = max(0.0, max((regularity[d] for d in rare), default=0.0))
        out["egress_bytes"] = float(egress)
        out["egress_external_bytes"] = float(external_bytes)
        out["external_destinations"] = float(len(traffic))
        out["new_destinations"] = float(new)
        out["egress_new_destination_bytes"] = float(new_bytes)
        out["beacon_regularity"] = beacon

    def _beacons(
        self, state: EntityState, regularity: Mapping[str, float], now: float, me: str
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The hosts it calls on a schedule, as the beacon guards' two facts: late beacons,
        and lone ones that are not late too."""
        scheduled = {d: r for d, r in regularity.items() if r >= BEACON_MIN_REGULARITY}
        if not scheduled:
            return {}, {}
        late = self._late_beacons(state, scheduled, now, me)
        lone = self._lone_beacons(state, scheduled, me)
        return late, {d: r for d, r in lone.items() if d not in late}

    def _late_beacons(
        self, state: EntityState, scheduled: Mapping[str, float], now: float, me: str
    ) -> dict[str, float]:
        """Destinations new to this entity (:meth:`FirstSeenMemory.is_late`) that it calls on
        a schedule (regularity at least ``BEACON_MIN_REGULARITY``), with their regularity:
        an implant in a hijacked long-running pod, which a workload baseline that never saw
        a beacon may still score low."""
        scope = destination_scope(state)
        born = state.created_at if state.created_at is not None else state.first_seen
        workload = workload_scope(state.namespace, state.workload)
        return {
            dest: round(r, 3)
            for dest, r in scheduled.items()
            if self.memory.is_late(scope, dest, me, born, now, workload)
        }

    def _lone_beacons(
        self, state: EntityState, scheduled: Mapping[str, float], me: str
    ) -> dict[str, float]:
        """Hosts this pod calls like clockwork over its life (regularity at least
        ``LONE_BEACON_MIN_REGULARITY``) that no other pod of its workload, of
        ``LONE_SIBLINGS`` or more seen meanwhile, called since the schedule's first call
        kept (:meth:`FirstSeenMemory.is_lone_call`),
        with their regularity: an implant in one replica of a busy Deployment, one small
        call a window that looks like the workload's own traffic, to a host the namespace
        may know from an earlier intrusion (det9). Not judged: a pod anyone ``kubectl
        exec``'d into (people's loops are judged by who they are), a bare pod, a host
        already in ``late_beacons``."""
        workload = workload_scope(state.namespace, state.workload)
        if state.key.kind is not POD_ENTITY or workload is None or state.exec_times:
            return {}
        return {
            dest: round(r, 3)
            for dest, r in scheduled.items()
            if r >= LONE_BEACON_MIN_REGULARITY
            and self.memory.is_lone_call(workload, dest, me, state.dest_times[dest][0])
        }

    def _unfamiliar_callers(self, state: EntityState, events: list[Event]) -> dict[str, str]:
        """External hosts new to this pod's workload that it first called within
        ``CALL_HOME_S`` of starting a program its workload's pods never ran
        (``FirstSeenMemory.binaries``), with that program: an implant dropped into a
        long-running pod calls home before any schedule shows (a replica replaced minutes
        later beats once or twice). Each host is reported once, in the window of its first
        call (later beats are the beacon guard's): the first unfamiliar program and the
        hosts already judged are kept on the entity across windows, so a pod that paged
        once does not page again for every host it calls for the rest of its life. Not
        judged: a workload whose programs are not learned yet (a new Deployment: the
        learning-period rules), a pod anyone ``kubectl exec``'d into (its identities are
        judged), hosts its pods have polled for half a day."""
        workload = workload_scope(state.namespace, state.workload)
        usual = self.memory.usual_binaries(workload)
        if state.key.kind is not POD_ENTITY or workload is None or not usual:
            return {}
        known = self.memory.workload_contact.get(workload, {})
        out: dict[str, str] = {}
        for ev in events:
            if ev.kind is PROCESS_EXEC_EVENT:
                if state.drift is None and not state.exec_times and ev.binary not in usual:
                    state.drift = (ev.binary or "?", ev.time)
            elif (
                ev.kind is NET_FLOW_EVENT
                and state.drift is not None
                and ev.time >= state.drift[1]
                and self.network.is_external(ev)
            ):
                dest = _destination(ev)
                if (
                    dest in state.drift_sent
                    or dest in known
                    or ev.time - state.drift[1] > CALL_HOME_S
                    or len(state.drift_sent) >= _ARCHIVE_SENT_MAX
                    or self.memory.polled(
                        destination_scope(state), dest, str(state.key), ev.time, workload
                    )
                ):
                    continue
                state.drift_sent += (dest,)
                out[dest] = state.drift[0]
        return out

    def _archive_shipped(self, state: EntityState, events: list[Event]) -> list[ArchiveShipped]:
        """Archives this entity wrote and then sent, across its windows, to a host new to
        its namespace: the archive is remembered on the entity, and a destination counts if
        it was new (first-seen memory, or known only through an implant that paged calling
        it: ``FirstSeenMemory.note_intruder``) when the entity first sent to it after the archive,
        so an upload split over two windows still adds up even after the first window,
        quiet, taught the memory the host (the learning-period guard's fact). Reported in
        the windows that send to it only: a replica's later windows stay its own."""
        if state.key.kind is not POD_ENTITY:
            return []
        seen = self.memory.destinations.get(destination_scope(state), set())
        for ev in events:
            if ev.kind is FILE_WRITE_EVENT and is_archive_path(ev.file_path):
                path = ev.file_path or ""
                size = ev.bytes_written + (
                    state.archive[1] if state.archive and state.archive[0] == path else 0
                )
                if state.archive is None or state.archive[0] == path or size > state.archive[1]:
                    state.archive = (path, size)
            elif (
                ev.kind is NET_FLOW_EVENT
                and state.archive is not None
                and self.network.is_external(ev)
            ):
                dest = _destination(ev)
                if dest in state.archive_sent:
                    state.archive_sent[dest] += ev.bytes_out
                elif (
                    dest not in seen or self.memory.is_intruded(destination_scope(state), dest)
                ) and len(state.archive_sent) < _ARCHIVE_SENT_MAX:
                    state.archive_sent[dest] = ev.bytes_out
        if state.archive is None:
            return []
        path, size = state.archive
        floor = max(ARCHIVE_SHIPPED_MIN_BYTES, ARCHIVE_SHIPPED_SHARE * size)
        now = {_destination(ev) for ev in events if ev.kind is NET_FLOW_EVENT}
        return [  # in the windows that send to it, not every later window of a long life
            ArchiveShipped(dest=dest, sent=sent, archive=path, size=size)
            for dest, sent in sorted(state.archive_sent.items())
            if sent >= floor and dest in now
        ]

    def _novelty(self, out: dict[str, float], state: EntityState) -> None:
        if state.key.kind is not POD_ENTITY or state.windows_emitted > 0:
            return
        ns = state.namespace or ""
        image_repo = image_repository(state.image)
        new_image = bool(image_repo) and image_repo not in self.memory.images.get(ns, set())
        new_workload = state.workload is None or state.workload not in self.memory.workloads.get(
            ns, set()
        )
        out["new_image"] = float(new_image)
        out["new_workload"] = float(new_workload)

    def _accumulate(self, state: EntityState, row: dict[str, float], kind: str) -> None:
        """Add a window to the entity's running totals (``EntityState.life``).

        Counts and bytes add up (distinct counts keep their largest window), flags and
        ratios keep their highest value, durations are the final window's own."""
        life = state.life
        names = self._life_names.get(kind)
        if names is not None and life.keys() >= names:  # after its first window: no new keys
            adding, keeping = self._life_split[kind]
            for name in adding:  # a zero adds nothing: most of a row is zeros
                if value := row[name]:  # life[name]: a float this made, never None nor -0.0
                    life[name] = value + life[name]
            for name in keeping:
                if (value := row[name]) > life[name]:
                    life[name] = value
            return
        before_of = life.get
        for name, adds in self._life_rules(kind):
            value = row[name]
            before = before_of(name)
            if adds:
                life[name] = value + (before or 0.0)
            elif before is None or value > before:  # max(before, value), as it was
                life[name] = value

    def _whole_life(self, state: EntityState, row: dict[str, float], kind: str) -> None:
        """Make the row its life so far: the totals :meth:`_accumulate` keeps, durations the
        final window's own."""
        life = state.life
        for name, _ in self._life_rules(kind):
            row[name] = life[name]

    def _life_rules(self, kind: str) -> list[tuple[str, bool]]:
        """(name, whether it adds up) of the features a life's totals keep, in spec order,
        among the columns of an entity ``kind``'s rows: durations are the final window's
        own, so they are not among them."""
        rules = self._life_of.get(kind)
        if rules is None:
            columns = {name for name, _ in self._columns(kind)}
            rules = [
                (f.name, f.kind in ("count", "bytes") and f.name not in _LIFE_MAX)
                for f in self.spec.features
                if f.kind != "seconds" and f.name in columns
            ]
            self._life_of[kind] = rules
            self._life_names[kind] = frozenset(name for name, _ in rules)
            self._life_split[kind] = (
                [name for name, adds in rules if adds],
                [name for name, adds in rules if not adds],
            )
        return rules

    def _identity(self, out: dict[str, float], state: EntityState, identities: list[str]) -> None:
        out["created_by_person"] = float(state.created_by_kind == PERSON_ACTOR)
        new = new_in_cluster = 0
        if identities:  # most windows name nobody: no memory to look up
            known = self.memory.identities.get(destination_scope(state), set())
            new = len(set(identities) - known)
            anywhere = self.memory.identities.get(CLUSTER_SCOPE, set())
            new_in_cluster = len(set(identities) - known - anywhere)
        out["new_identity"] = float(new)
        if state.key.kind is POD_ENTITY:
            out["new_identity_in_cluster"] = float(new_in_cluster)

    def _strangers(
        self, state: EntityState, identities: list[str], groups: Mapping[str, list[str]]
    ) -> None:
        """Add to the pod's strangers the identities of this window that are new to the
        cluster (as ``new_identity_in_cluster`` counts them) and that no group of theirs
        vouches for (:meth:`FirstSeenMemory.vouched`): a service account, a person of a team
        nobody in the cluster belongs to. An SRE new to this cluster, in the group of the
        people who already operate it, is a new colleague, not a stranger."""
        if state.key.kind is not POD_ENTITY or not identities:
            return
        m = self.memory
        known = m.identities.get(destination_scope(state), set())
        anywhere = m.identities.get(CLUSTER_SCOPE, set())
        new = [i for i in identities if i not in known and i not in anywhere]
        found = {i for i in new if not m.vouched(i, groups.get(i, ()))}
        if found - set(state.strangers):
            state.strangers = sorted(found | set(state.strangers))[:_MAX_STRANGERS]


# who acts on an entity in a way a baseline should know, by kind of actor
_ACTING_KINDS = frozenset({PERSON_ACTOR, SERVICE_ACCOUNT_ACTOR, UNKNOWN_ACTOR})


def identity_name(actor: str | None, kind: str | None) -> str | None:
    """An actor as the baselines key it: CI and other roles without their per-job session
    name (``assumed-role/ci-packer/gitlab-123`` → ``role/ci-packer``), people with theirs;
    None for controllers, nodes, autoscalers and instance roles."""
    if not actor or kind not in _ACTING_KINDS:
        return None
    if ":assumed-role/" in actor:
        role, _, session = actor.split(":assumed-role/", 1)[1].partition("/")
        return f"role/{role}/{session}" if kind == PERSON_ACTOR else f"role/{role}"
    return actor


def window_identities(state: EntityState, events: list[Event], final: bool) -> list[str]:
    """Who created (first window), exec'd into (this window) or deleted (final) the entity."""
    found: list[str | None] = []
    if state.windows_emitted == 0:
        found.append(identity_name(state.created_by, state.created_by_kind))
    for ev in events:
        if ev.kind is POD_EXEC_EVENT:
            found.append(identity_name(ev.actor, ev.actor_kind))
    if final:
        found.append(identity_name(state.deleted_by, state.deleter_kind))
    return sorted({f for f in found if f}) if found else []


def window_groups(events: list[Event], identities: list[str]) -> dict[str, list[str]]:
    """Each of the window's acting ``identities`` -> its identity-provider groups, from the
    create, exec and delete records that named it (people only; the adapters say)."""
    out: dict[str, list[str]] = {}
    if not identities:  # most windows: nobody acted on it
        return out
    for ev in events:
        if ev.actor_groups and ev.kind in _IDENTITY_EVENTS:
            who = identity_name(ev.actor, ev.actor_kind)
            if who in identities and who not in out:
                out[who] = list(ev.actor_groups)
    return out


_IDENTITY_EVENTS = frozenset({POD_CREATE_EVENT, POD_EXEC_EVENT, POD_DELETE_EVENT})


def _own_controller(state: EntityState) -> bool:
    """Deleted by the identity that created it, or (its creation forgotten: a notebook idle
    past the expiry) by a service account of its own namespace: the pods' own spawner."""
    if state.created_by is not None:
        return state.deleted_by == state.created_by
    own = f"system:serviceaccount:{state.namespace}:"
    return state.namespace is not None and (state.deleted_by or "").startswith(own)


# the entity kind whose columns a row has: a container outside the orchestrator is
# profiled with the pods' features
_ROW_KIND = {kind: (POD_ENTITY if kind is CONTAINER_ENTITY else kind).value for kind in EntityKind}


_BY_TIME = operator.attrgetter("time")  # a sort key without a Python frame per item
_KIND_VALUE = {kind: kind.value for kind in EventKind}  # without the ``Enum.value`` property


def _in_event_order(events: list[Event]) -> list[Event]:
    """``events`` sorted by :func:`_event_order`. Most windows have no two events at one
    time, and then time alone gives that order: a sort by an attrgetter, not a Python key
    function per event (events' times are finite: the pipeline drops the rest)."""
    if len(events) < 2:
        return events
    by_time = sorted(events, key=_BY_TIME)
    if len(set(map(_BY_TIME, by_time))) == len(by_time):
        return by_time
    return sorted(events, key=_event_order)


def _event_order(ev: Event) -> tuple:
    # ``ev.kind``, a StrEnum, compares as its value: the same order without the
    # ``Enum.value`` property's cost for every event of every window
    return (ev.time, ev.kind, ev.binary or "", ev.dst_ip or "", ev.object_name or "")


def _destination(ev: Event) -> str:
    return ev.dst_fqdn or ev.dst_ip or "?"


def _exec_opens_shell(ev: Event) -> bool:
    """A pods/exec whose command starts a shell (the adapter puts the command in ``args``)."""
    argv = (ev.args or "").split()
    return bool(argv) and _basename(argv[0]) in SHELLS


def _started(events: list[Event]) -> set[str]:
    """Programs started in the window that a workload's usual processes are learned from:
    not one run from a world-writable directory (``DROP_DIRS``). Images ship their
    programs; a program in ``/tmp`` was written there at run time (a dropper's payload),
    and an intrusion whose first windows stayed quiet must not make it usual for the next
    one (attackers reuse their tools)."""
    return {
        ev.binary
        for ev in events
        if ev.kind is PROCESS_EXEC_EVENT and ev.binary and not ev.binary.startswith(DROP_DIRS)
    }


def _traffic(flows_out: list[tuple[Event, str]]) -> dict[str, list[int]]:
    """Bytes out and in per external destination (sorted by destination)."""
    out: dict[str, list[int]] = {}
    for ev, dest in flows_out:
        pair = out.setdefault(dest, [0, 0])
        pair[0] += ev.bytes_out
        pair[1] += ev.bytes_in
    return dict(sorted(out.items()))


def _regularities(
    state: EntityState, flows_out: list[tuple[Event, str]], traffic: Mapping[str, list[int]]
) -> dict[str, float]:
    """1 - CV of connection gaps per external destination of the window (history included),
    sorted by destination (``traffic``, :func:`_traffic` of ``flows_out``, has them so).

    ``beacon_regularity`` is the highest over *rare* destinations: only destinations few
    entities of the namespace ever contacted count: health checks to a well-known API are
    regular too, but not news; a second implant calling the same C2 host still is.
    """
    for ev, dest in flows_out:
        if ev.opens_connection:
            remember_destination(state, dest, ev.time)
    return {dest: _regularity(state.dest_times.get(dest, [])) for dest in traffic}


def _regularity(times: list[float]) -> float:
    """1 - CV of the gaps (population standard deviation over mean), 0 under
    ``_MIN_BEACON_CONNECTIONS`` times or without a positive mean gap."""
    if len(times) < _MIN_BEACON_CONNECTIONS:
        return 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    n = len(gaps)
    mean = numpy_sum(gaps) / n
    if not mean > 0:
        return 0.0
    deviations = [(g - mean) * (g - mean) for g in gaps]
    return 1.0 - math.sqrt(numpy_sum(deviations) / n) / mean


_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE: longer sums are split in halves


def numpy_sum(values: list[float]) -> float:
    """``np.add.reduce`` of a float64 list, bit for bit, without numpy's per-call cost.

    numpy sums a float array pairwise: fewer than 8 values one after another, up to 128
    in 8 running sums added as a tree, the rest after. A beacon's gaps are at most 15
    values, for which numpy's fixed cost was most of building a feature row; the same
    order of additions gives the same bits (tests/unit/test_numpy_sum.py checks it
    against numpy). Longer lists go to numpy itself.
    """
    n = len(values)
    if n > _PAIRWISE_BLOCK:
        return float(np.add.reduce(np.asarray(values, dtype=np.float64)))
    if n < 8:
        total = 0.0
        for v in values:
            total += v
        return total
    r0, r1, r2, r3, r4, r5, r6, r7 = values[:8]
    stop = n - n % 8
    for i in range(8, stop, 8):
        r0 += values[i]
        r1 += values[i + 1]
        r2 += values[i + 2]
        r3 += values[i + 3]
        r4 += values[i + 4]
        r5 += values[i + 5]
        r6 += values[i + 6]
        r7 += values[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for v in values[stop:]:
        total += v
    return 0.0 + total


def entity_ref(state: EntityState) -> EntityRef:
    if state.key.kind is INSTANCE_ENTITY:
        return EntityRef(kind="instance", instance_id=state.instance_id)
    if state.key.kind is CONTAINER_ENTITY:
        return EntityRef(
            kind="container",
            container_ids=[state.key.name],
            image=state.image,
            node=state.node,
        )
    return EntityRef(
        kind="pod",
        namespace=state.namespace,
        pod=state.pod,
        container=state.container,
        uid=state.uid,
        container_ids=sorted(state.container_ids),
        workload=state.workload,
        image=state.image,
        service_account=state.service_account,
        node=state.node,
    )


def _actor(ev: Event) -> str:
    """Who acted; an impersonation names the real user too (``bob via system:admin``)."""
    who = ev.actor or "?"
    return f"{who} via {ev.actor_via}" if ev.actor_via else who


def _summary(ev: Event) -> str | None:
    """One line for an evidence record, or None when the event is not worth pointing at."""
    k = ev.kind
    if k is CLOUD_CALL_EVENT or k is API_CALL_EVENT:  # the commonest kinds first
        if ev.api_category in _EVIDENCE_CATEGORIES:
            return f"{ev.verb} {ev.object_name or ev.resource or ''} ({ev.api_category})"
        return None
    if k is NET_FLOW_EVENT:
        if ev.bytes_out >= 10_000_000:
            return f"egress {ev.bytes_out} B to {_destination(ev)}:{ev.dst_port}"
        return None
    if k in (POD_CREATE_EVENT, INSTANCE_RUN_EVENT):
        return f"{_KIND_VALUE[k]} by {_actor(ev)}"
    if k in (POD_DELETE_EVENT, INSTANCE_TERMINATE_EVENT):
        return f"{_KIND_VALUE[k]} by {_actor(ev)} ({ev.actor_kind or '?'})"
    if k is POD_EXEC_EVENT:
        return f"{ev.detail or 'exec'} by {_actor(ev)}"
    if k is PROCESS_EXEC_EVENT and (archive_outputs(ev)[0] or _basename(ev.binary) in SHELLS):
        return f"exec {ev.binary} {ev.args or ''}".strip()
    if k is FILE_WRITE_EVENT and is_archive_path(ev.file_path):
        return f"archive write {ev.file_path} ({ev.bytes_written} B)"
    if k is RUNTIME_ALERT_EVENT:
        return f"falco: {ev.detail}"
    return None


def _life_evidence(life: list[Evidence], window: list[Evidence]) -> list[Evidence]:
    """A whole life's key records: the first window's (who created it, what it did
    first) kept, then each later window's, the last ones winning past the cap (who ended
    it), in time order. ``life`` is this function's earlier result (sorted, capped): a
    window without key records (most) leaves it as it is."""
    if not window:
        return life
    merged = sorted([*life, *window], key=_BY_TIME)
    if len(merged) <= _MAX_LIFE_EVIDENCE:
        return merged
    head = _MAX_LIFE_EVIDENCE // 2
    return merged[:head] + merged[head - _MAX_LIFE_EVIDENCE :]


def _evidence(state: EntityState, events: list[Event], final: bool) -> list[Evidence]:
    """Key records, one or two of each kind, the first ``_MAX_EVIDENCE`` of them: in time
    order, as ``events`` come (:meth:`FeatureBuilder.build` sorts them)."""
    picked: list[Evidence] = []
    per_kind: dict[str, int] = {}
    for ev in events:
        out_of_place = ev.kind is CLOUD_CALL_EVENT and credentials_out_of_place(state, ev)
        group = "out_of_place" if out_of_place else ev.kind
        if per_kind.get(group, 0) >= 2:
            continue
        summary = _summary(ev)
        if out_of_place:
            summary = f"{ev.verb} by {_actor(ev)} from {ev.pod_ip}: credentials out of place"
        if summary is None:
            continue
        per_kind[group] = per_kind.get(group, 0) + 1
        picked.append(
            Evidence(time=ev.time, kind=_KIND_VALUE[ev.kind], summary=summary, origin=ev.origin)
        )
    return picked[:_MAX_EVIDENCE]


def _container_chain(state: EntityState, events: list[Event]) -> list[Evidence]:
    """A container outside the orchestrator, as a chain: the pod process that started it
    (``docker``/``ctr run`` after leaving the pod for the host), then what the container
    itself did: processes, its connections out, the files it wrote."""
    chain: list[Evidence] = []
    launch = state.launch
    if launch is not None:
        chain.append(
            Evidence(
                time=launch.time,
                kind=launch.kind.value,
                summary=f"started from pod {launch.namespace}/{launch.pod} on {state.node}:"
                f" {launch.binary} {launch.args or ''}".strip(),
                origin=launch.origin,
            )
        )
    per_kind: Counter[str] = Counter()
    for ev in events:
        if per_kind[ev.kind.value] >= 2:
            continue
        if ev.kind is PROCESS_EXEC_EVENT:
            summary = f"exec {ev.binary} {ev.args or ''}".strip()
        elif ev.kind is NET_FLOW_EVENT and ev.opens_connection and ev.dst_external:
            summary = f"connection to {_destination(ev)}:{ev.dst_port} ({ev.bytes_out} B out)"
        elif ev.kind is FILE_WRITE_EVENT:
            summary = f"file write {ev.file_path} ({ev.bytes_written} B)"
        else:
            continue
        per_kind[ev.kind.value] += 1
        chain.append(Evidence(time=ev.time, kind=ev.kind.value, summary=summary, origin=ev.origin))
    return chain[: _MAX_EVIDENCE + 1]
