"""Campaigns: many short-lived entities sending to one destination new to their namespace.

An attacker who shards an exfiltration over many short pods keeps each one below its own
threshold; what gives them away is that together they are many short lives sending to
one host the namespace never used before. The tracker watches, per namespace, external
destinations that first appeared well after the namespace itself was first seen (so a
cold start, when every destination is "new", never looks like a campaign), and the
short-lived entities (at most ``SHORT_LIVED_S`` old) that *uploaded* to them (at least
``UPLOAD_BYTES`` out, more out than in: exfiltration sends, a build pulling packages from
a mirror it has not used before receives). Once
``CAMPAIGN_MIN`` distinct such entities that contacted one of them ended within
``CAMPAIGN_WINDOW_S``, one campaign alert lists every member; each later member within the window
raises an update listing all members so far (the same campaign key, one analyst story).

CI runners pulling from GitHub, CronJob runs writing to S3, a new Deployment's replicas
polling a new SaaS endpoint: the first two use destinations the namespace has used since
it was first seen, the last is long-lived. A destination other namespaces have used since
the cluster was first seen (a registry every CI namespace pushes to) is a shared service,
not a rare one, even when one namespace reaches it late: that takes ``SHARED_BY`` other
namespaces in the cluster's first hours, since one other namespace contacting it then may
be an earlier intrusion's exfil host (attackers reuse infrastructure). Sharedness is
learned only from pods that did not page: an early contact is withdrawn once the pod that
made it alerts (:meth:`Campaigns.paged`; a hijacked exporter beaconing to the host from
the cluster's first hours pages later), and a namespace stops voting for a host once every
pod whose early contact it recorded has paged. A person's bare pod does not vote at all
(:func:`~churnguard.scoring.learning.quarantined`, the learning gate's rule for what a
person's one-off pod may teach): the cluster's services are what its workloads use, and a
debug pod run with stolen credentials looks like an SRE's. An intrusion's host does not
become a service of the cluster because the intruders used it.

Campaigns by one identity: a phished person or a stolen service-account token running
short pods in several namespaces keeps each one a small story. ``CAMPAIGN_MIN`` distinct
short-lived pods that one identity new to the cluster (``new_identity_in_cluster``)
created or exec'd into (not only deleted: a person draining a node), ended within
``CAMPAIGN_WINDOW_S``, are one campaign across namespaces (key ``*|identity:<who>``). An
SRE's weekly debug pods, CI deployers and notebook spawners are identities the cluster
knows. All state is in the scorer's snapshot.

Sharded (``kafka.repartition`` with S > 1 shards): a shard sees only its own namespaces,
so a registry every CI namespace pushes to looks rare to a shard holding one of them. The
route stage therefore tells every other shard when a namespace first contacted each
external destination (:func:`~churnguard.service.bindings.contacts_of`), and
:meth:`Campaigns.note_remote` keeps those contacts: a namespace of another shard counts
towards ``SHARED_BY`` when it contacted the host in the cluster's first hours, by the
time of the row being judged. Such a contact cannot be withdrawn when its pod pages (the
pod is scored in another shard; see docs/limitations.md). With one shard there are none.
"""

from __future__ import annotations

import math

import msgspec

from churnguard.alerts.alert import IDENTITY
from churnguard.profiling.features import identity_name
from churnguard.profiling.profile import EntityRef, Profile
from churnguard.scoring.learning import quarantined

CAMPAIGN_MIN = 4  # distinct short-lived entities to one new destination
CAMPAIGN_WINDOW_S = 2 * 3600.0  # members count while they ended within this of each other
SHORT_LIVED_S = 1800.0  # an entity this young when it contacted the destination
UPLOAD_BYTES = 1_000_000  # a member sent at least this much to it, more than it received
NEW_AFTER_S = 2 * 3600.0  # a destination first seen this long after its namespace is new
SHARED_BY = 2  # other namespaces using a destination from the cluster's first hours: shared
EARLY_NAMESPACES = 8  # namespaces recorded per early destination (votes can be withdrawn)
EARLY_VOTERS = 4  # pods recorded per (namespace, early destination): whose paging withdraws
_MAX_DESTINATIONS = 50_000  # destinations remembered across namespaces (oldest dropped)
_MAX_YOUNG = 50_000  # young entities whose destinations are being collected
_MAX_REMOTE = 50_000  # destinations with contacts from other shards' namespaces


class Member(msgspec.Struct, array_like=True):
    entity: EntityRef
    time: float


class CampaignState(msgspec.Struct):
    namespaces: dict[str, float]  # namespace -> first time seen
    destinations: dict[str, float]  # "ns|dest" -> first time contacted
    members: dict[str, list[Member]]  # "ns|dest" -> members in the current window
    young: dict[str, dict[str, list[int]]]  # entity -> destination -> [out, in] while young
    cluster_born: float | None = None  # the cluster's first profile time
    # dest -> the first few namespaces that contacted it in the cluster's first hours
    early_namespaces: dict[str, list[str]] = {}
    # entity -> identities of its young windows in which someone was new to the cluster
    strangers: dict[str, list[str]] = {}
    # "ns|dest" of early_namespaces -> the pods whose early contact is that namespace's
    # vote (none recorded: a vote that cannot be withdrawn, as in older snapshots)
    voters: dict[str, list[str]] = {}
    # entity -> the "ns|dest" votes it gave (to withdraw them when it pages)
    votes: dict[str, list[str]] = {}
    # dest -> namespace of another shard -> the first time it contacted dest (note_remote)
    remote: dict[str, dict[str, float]] = {}


class Campaigns:
    """Tracks new destinations of short-lived entities; reports campaigns as they form."""

    def __init__(self) -> None:
        self.namespaces: dict[str, float] = {}
        self.destinations: dict[str, float] = {}
        self.members: dict[str, list[Member]] = {}
        self.young: dict[str, dict[str, list[int]]] = {}
        self.cluster_born: float | None = None
        self.early_namespaces: dict[str, list[str]] = {}
        self.strangers: dict[str, list[str]] = {}
        self.voters: dict[str, list[str]] = {}
        self.votes: dict[str, list[str]] = {}
        self.remote: dict[str, dict[str, float]] = {}

    def observe(
        self, profile: Profile, entity: str | None = None
    ) -> tuple[str, list[Member]] | None:
        """Fold one profile in; the campaign (key, members) it joined once it is one.
        ``entity`` is the profile's entity key when the caller has it already."""
        e = profile.entity
        if e.kind != "pod" or not e.namespace:
            return None
        ns, now, start = e.namespace, profile.window_end, profile.window_start
        born = self.namespaces.setdefault(ns, start)
        if self.cluster_born is None:
            self.cluster_born = start
        destinations = profile.destinations
        if destinations:
            known = self.destinations
            for dest in destinations:
                key = f"{ns}|{dest}"
                if key not in known:
                    if len(known) >= _MAX_DESTINATIONS:
                        del known[next(iter(known))]
                    known[key] = start
        if entity is None:
            entity = e.key()
        if destinations and start - self.cluster_born < NEW_AFTER_S and not quarantined(profile):
            for dest in destinations:
                self._vote(dest, ns, entity)
        young = now - profile.first_seen <= SHORT_LIVED_S
        if young and profile.destination_bytes:
            if entity not in self.young and len(self.young) >= _MAX_YOUNG:
                del self.young[next(iter(self.young))]
            sent = self.young.setdefault(entity, {})
            for dest, (out, received) in profile.destination_bytes.items():
                pair = sent.setdefault(dest, [0, 0])
                pair[0] += out
                pair[1] += received
        if young and profile.identities and profile.values.get("new_identity_in_cluster", 0) > 0:
            # who made or exec'd into it: a person draining a node deletes many young pods
            deleter = identity_name(profile.deleted_by, profile.deleter_kind)
            creator = identity_name(profile.created_by, profile.creator_kind)
            actors = [i for i in profile.identities if i != deleter or i == creator]
            if actors:
                if entity not in self.strangers and len(self.strangers) >= _MAX_YOUNG:
                    del self.strangers[next(iter(self.strangers))]
                who = self.strangers.setdefault(entity, [])
                who.extend(i for i in actors if i not in who)
        if not profile.final:
            return None
        sent = self.young.pop(entity, {})
        strangers = self.strangers.pop(entity, [])
        dests = {d for d, (out, got) in sent.items() if out >= UPLOAD_BYTES and out > got}
        lifetime = profile.values.get("lifetime_s")
        if lifetime is None or lifetime > SHORT_LIVED_S:
            return None
        keys = []
        for dest in sorted(dests):
            if self.destinations.get(f"{ns}|{dest}", born) - born < NEW_AFTER_S:
                continue  # the namespace has used it since it was first seen
            if self.shared(dest, ns, now):
                continue  # other namespaces have used it all along: a shared service, not rare
            keys.append(f"{ns}|{dest}")
        keys.extend(f"*|{IDENTITY}{who}" for who in sorted(strangers))
        joined: tuple[str, list[Member]] | None = None
        for key in keys:
            members = [m for m in self.members.get(key, []) if now - m.time <= CAMPAIGN_WINDOW_S]
            if all(m.entity.key() != entity for m in members):
                members.append(Member(entity=e, time=now))
            self.members[key] = members
            if len(members) >= CAMPAIGN_MIN and joined is None:
                joined = (key, list(members))
        self._expire(now)
        return joined

    def shared(self, dest: str, ns: str, now: float = math.inf) -> bool:
        """A service of the cluster, not a rare host: ``SHARED_BY`` namespaces other than
        ``ns`` contacted ``dest`` in the cluster's first hours (a registry, the package
        index, the object store): this shard's votes, and other shards' namespaces whose
        first contact was in those hours and at or before ``now`` (the judged row's end:
        a sharded service has heard every contact up to it, maybe some later ones)."""
        voters = set(self.early_namespaces.get(dest, ()))
        if self.cluster_born is not None and dest in self.remote:
            until = min(now, self.cluster_born + NEW_AFTER_S)
            voters.update(n for n, t in self.remote[dest].items() if t <= until)
        return len(voters - {ns}) >= SHARED_BY

    def note_remote(self, dest: str, ns: str, time: float) -> None:
        """A namespace another shard scores contacted ``dest`` at ``time`` (its first).

        Keeps the ``EARLY_NAMESPACES`` earliest per destination whatever order they come
        in, so a shard that hears them in another order answers the same."""
        firsts = self.remote.get(dest)
        if firsts is None:
            if len(self.remote) >= _MAX_REMOTE:
                return  # bounded; docs/limitations.md
            firsts = self.remote[dest] = {}
        if time >= firsts.get(ns, math.inf):
            return
        firsts[ns] = time
        if len(firsts) > EARLY_NAMESPACES:
            del firsts[max(firsts, key=lambda n: (firsts[n], n))]

    def _vote(self, dest: str, ns: str, entity: str) -> None:
        """``entity`` of ``ns`` contacted ``dest`` in the cluster's first hours."""
        early = self.early_namespaces.setdefault(dest, [])
        if ns not in early:
            if len(early) >= EARLY_NAMESPACES:
                return
            early.append(ns)
            self.voters[f"{ns}|{dest}"] = []
            if len(self.early_namespaces) > _MAX_DESTINATIONS:
                self._forget(next(iter(self.early_namespaces)))
        voters = self.voters.get(f"{ns}|{dest}")
        if voters is None or entity in voters or len(voters) >= EARLY_VOTERS:
            return  # a permanent vote, already counted, or enough pods to keep it
        voters.append(entity)
        if entity not in self.votes and len(self.votes) >= _MAX_YOUNG:
            del self.votes[next(iter(self.votes))]  # its votes can no longer be withdrawn
        self.votes.setdefault(entity, []).append(f"{ns}|{dest}")

    def paged(self, entity: str) -> None:
        """``entity`` alerted: its early contacts no longer make a host shared, and a
        namespace whose every recorded early pod of a host paged no longer votes for it."""
        for vote in self.votes.pop(entity, ()):
            voters = self.voters.get(vote)
            if voters is None or entity not in voters:
                continue
            voters.remove(entity)
            if voters:
                continue
            del self.voters[vote]
            ns, dest = vote.split("|", 1)
            early = self.early_namespaces.get(dest, [])
            if ns in early:
                early.remove(ns)

    def _forget(self, dest: str) -> None:
        for ns in self.early_namespaces.pop(dest, ()):
            self.voters.pop(f"{ns}|{dest}", None)

    def _expire(self, now: float) -> None:
        for key in [k for k, ms in self.members.items() if now - ms[-1].time > CAMPAIGN_WINDOW_S]:
            del self.members[key]

    # ---- persistence ---------------------------------------------------------------------
    def export(self) -> CampaignState:
        return CampaignState(
            namespaces=dict(self.namespaces),
            destinations=dict(self.destinations),
            members={k: list(v) for k, v in self.members.items()},
            young={k: dict(v) for k, v in self.young.items()},
            cluster_born=self.cluster_born,
            early_namespaces={k: list(v) for k, v in self.early_namespaces.items()},
            strangers={k: list(v) for k, v in self.strangers.items()},
            voters={k: list(v) for k, v in self.voters.items()},
            votes={k: list(v) for k, v in self.votes.items()},
            remote={k: dict(v) for k, v in self.remote.items()},
        )

    def load(self, state: CampaignState) -> None:
        self.namespaces = dict(state.namespaces)
        self.destinations = dict(state.destinations)
        self.members = {k: list(v) for k, v in state.members.items()}
        self.young = {k: dict(v) for k, v in state.young.items()}
        self.cluster_born = state.cluster_born
        self.early_namespaces = {k: list(v) for k, v in state.early_namespaces.items()}
        self.strangers = {k: list(v) for k, v in state.strangers.items()}
        self.voters = {k: list(v) for k, v in state.voters.items()}
        self.votes = {k: list(v) for k, v in state.votes.items()}
        self.remote = {k: dict(v) for k, v in state.remote.items()}
