"""A profile: one entity window's feature values plus the context needed to explain them.

Produced by ``features.FeatureBuilder`` (from entity state), consumed by the scorer,
thresholds, guard rules and alert builder, and written as a row by ``churnguard features``
and the feature capture. It is data only.
"""

from __future__ import annotations

import msgspec

from churnguard.ingest.events import Origin


def image_repository(image: str | None) -> str:
    """``registry:5000/app:1.2@sha256:..`` → ``registry:5000/app``: the image without its tag
    or digest (a registry port is kept); "" when there is no image. New-image memory and the
    image-named baseline of a bare pod both key on it."""
    if not image:
        return ""
    repo = image.split("@", 1)[0]
    head, sep, tail = repo.rpartition(":")
    return head if sep and "/" not in tail else repo


# The row types below are untracked by the cyclic garbage collector (``gc=False``), like
# ``ingest.events.Event``: they hold strings, numbers and containers of them, never a
# reference back to a row, and a shard keeps thousands of them.


class EntityRef(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The entity as an alert names it (alert schema ``entity`` of ``../shared/DESIGN.md``)."""

    kind: str  # "pod" | "container" | "instance" | "namespace" (telemetry-flood alerts)
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None  # primary container name, when known
    uid: str | None = None  # pod uid
    container_ids: list[str] = msgspec.field(default_factory=list)
    instance_id: str | None = None
    workload: str | None = None  # "Deployment/web", "CronJob/backup", ... None = bare pod
    image: str | None = None
    service_account: str | None = None
    node: str | None = None

    def key(self) -> str:
        """Stable text key: ``namespace/pod``, ``container/<node>/<id>`` or ``instance/<id>``."""
        if self.kind == "instance":
            return f"instance/{self.instance_id}"
        if self.kind == "container":
            return f"container/{self.node}/{self.container_ids[0] if self.container_ids else ''}"
        if self.kind == "namespace":  # a telemetry-flood alert
            return f"namespace/{self.namespace}"
        return f"{self.namespace}/{self.pod}"


class Evidence(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A pointer to a key record behind a profile: what it was and where to find it."""

    time: float
    kind: str  # EventKind value
    summary: str  # one line, e.g. "pods/exec by alice" or "tar czf /tmp/x.tgz"
    origin: Origin | None = None


class ArchiveShipped(msgspec.Struct, array_like=True, gc=False):
    """An archive this entity wrote, then sent outside the cluster: to ``dest``, new to the
    namespace when the entity first sent to it after writing the archive, ``sent`` bytes out
    since then against the archive's ``size`` (features.FeatureBuilder._archive_shipped)."""

    dest: str
    sent: int
    archive: str
    size: int


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One profiled entity window (a feature row)."""

    entity: EntityRef
    window_start: float  # event time
    window_end: float
    final: bool  # True when the entity ended (deleted, terminated, expired, end of input)
    end_reason: str  # deleted | terminated | window | expired | evicted | end_of_input
    spec_version: str
    values: dict[str, float]
    first_seen: float
    last_seen: float
    events: int = 0  # events folded into this window
    # identities and facts the guard rules and the explanation quote
    # who created it (a person, CI role, controller, service account), or for a container
    # outside the orchestrator the pod that launched it
    created_by: str | None = None
    creator_kind: str | None = None  # ActorKind value of created_by
    deleted_by: str | None = None
    deleter_kind: str | None = None  # ActorKind value
    evidence: list[Evidence] = msgspec.field(default_factory=list)
    # external destinations (fqdn, else IP) contacted in the window, sorted: what the
    # first-seen memory learns once the window has been scored and did not alert
    destinations: list[str] = msgspec.field(default_factory=list)
    # per external destination: [bytes out, bytes in] in the window (campaigns: uploads)
    destination_bytes: dict[str, list[int]] = msgspec.field(default_factory=dict)
    # who created, exec'd into or deleted it in this window (normalised, controllers left
    # out): what the first-seen memory learns as the namespace's known identities
    identities: list[str] = msgspec.field(default_factory=list)
    # each person's groups from the identity provider (for ``identities``): who their
    # peers are, what the first-seen memory learns as the cluster's teams
    identity_groups: dict[str, list[str]] = msgspec.field(default_factory=dict)
    # identities that acted on it so far in its life while new to the cluster, with no peer
    # (no group of theirs with PEERS_MIN members the cluster knows): the operators' routine
    # rule does not vouch for them
    strangers: list[str] = msgspec.field(default_factory=list)
    # external destinations new to this entity that it calls on a schedule, with their
    # regularity (features.FeatureBuilder._late_beacons): the beacon guard's fact
    late_beacons: dict[str, float] = msgspec.field(default_factory=dict)
    # external hosts it calls like clockwork that no other pod of its workload ever called,
    # with their regularity (features.FeatureBuilder._lone_beacons): the lone-replica
    # beacon guard's fact
    lone_beacons: dict[str, float] = msgspec.field(default_factory=dict)
    # programs started in the window: what the first-seen memory learns as its workload's
    # usual processes once the window has been scored and did not alert
    binaries: list[str] = msgspec.field(default_factory=list)
    # external hosts new to its workload called after it started a program its workload
    # never ran, with that program (features.FeatureBuilder._unfamiliar_callers): the
    # unfamiliar-program guard's fact
    unfamiliar_callers: dict[str, str] = msgspec.field(default_factory=dict)
    # archives this entity wrote and then shipped (at least half their size, so far in its
    # life) to a host new to its namespace: the learning-period guard's fact
    archive_shipped: list[ArchiveShipped] = msgspec.field(default_factory=list)
    # reads summed over every window of its life so far (repositories, distinct objects,
    # secrets; features.LIFE_READS): what the whole-life read guard compares with the
    # lives of its workload's other pods (scoring/lives.py)
    life_reads: dict[str, float] = msgspec.field(default_factory=dict)

    @property
    def profile_id(self) -> str:
        """Deterministic id of this window: same input, same id."""
        return f"{self.entity.key()}@{self.window_start:.3f}-{self.window_end:.3f}"
