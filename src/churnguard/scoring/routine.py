"""An operator's routine is not an incident: what a model alert must show to page.

SREs run debug pods in whichever namespace is on fire, admins exec into a stuck replica and
delete it, a person drains a node: each is rare *in that namespace*, so the model finds it
unusual, but what it did is only a person's lifecycle action. A model alert on a pod that
no guard rule backs, whose evidence backs no technique beyond the deletion itself
(T1578.003 / T1070: no reads, archive, egress, beacon, foreign credentials), made or
deleted only by identities the cluster already knows quietly, or by people new to it whose
team already operates it (``Profile.strangers`` is empty: an SRE's first debug pod here is
a new colleague's), and not by another workload's identity, does not page. A person of no
team the cluster knows, or a stolen service-account token, deleting a pod still does, and
so does any alert with evidence of what was done inside, unless it is what the pod's own
workload does (:func:`replica_routine`), or a guard rule behind it (the pod that started a
container on its node: ``container-started-from-a-pod``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from churnguard.alerts.alert import TECHNIQUE_FEATURES, Alert
from churnguard.profiling.features import ARCHIVE_SHIPPED_MIN_BYTES, WHOLE_LIFE_S
from churnguard.profiling.profile import Profile
from churnguard.scoring.campaigns import SHORT_LIVED_S
from churnguard.scoring.learning import spawned_here

LIFECYCLE_TECHNIQUES = frozenset({"T1578.003", "T1070"})


def routine(profile: Profile, alert: Alert) -> bool:
    """True when a model alert is only a known person's lifecycle action on a pod."""
    v = profile.values
    return (
        profile.entity.kind == "pod"
        and not alert.rules
        and set(alert.techniques) <= LIFECYCLE_TECHNIQUES
        and not profile.strangers
        and v.get("deleted_by_other_identity", 0.0) == 0
    )


# what a workload's own replicas do, and may do again on the next replica: read, archive, upload
REPLICA_TECHNIQUES = frozenset({"T1213", "T1560.002", "T1041"})


def replica_routine(
    profile: Profile, alert: Alert, learned_max: Mapping[str, float] | None
) -> bool:
    """True when a model alert on a controller's replica (or a pod its namespace's own
    service account spawned) shows nothing its workload has not done before: every fact
    behind its techniques is within ``learned_max``, to no destination new to the
    namespace, by no identity new to the cluster. The scorer chooses ``learned_max``
    (None: no yardstick, it pages):

    * for an entity's last row (its story is over), the largest values its workload's own
      mature baseline learned. A rolling deploy's or a scale-down's pod reads the secret
      every replica reads at start and is removed by its controller minutes later; its
      whole life is a combination the model has seen rarely, but no part of it is new for
      the workload;
    * for a live window of a spawned pod, the largest values the workload's *other* pods
      reached in one quiet window (:attr:`lives.Peers.peak`): a JupyterHub user's server
      reading forty datasets in five minutes, or uploading an archive of results to the
      bucket every server uploads to, does what the hub's other servers did. Its own
      earlier windows never vouch for it: a hijacked server collecting a little more each
      window has no other server's peak to hide under;
    * for a controller's pod's first window of life, the largest reads its workload's
      *other* pods made in their quiet first windows (:meth:`lives.WorkloadLives.start_up`,
      reads only): a one-replica Deployment's rollout pod reading the secret its
      predecessor read as it started (det13).

    A replica that reads, archives or uploads more than its yardstick, or calls a new host,
    or a stranger acts on (``Profile.strangers``), still pages; so does a new Deployment (no
    mature baseline of its own yet) and a person's own bare pod (no workload).
    """
    e, v = profile.entity, profile.values
    work = set(alert.techniques) - LIFECYCLE_TECHNIQUES
    if (
        learned_max is None
        or e.kind != "pod"
        or not (e.workload or spawned_here(profile))
        or alert.rules
        or not work <= REPLICA_TECHNIQUES
        or v.get("new_destinations", 0.0) > 0
        or profile.strangers
        or v.get("deleted_by_other_identity", 0.0) > 0
    ):
        return False
    facts = {f for t in work for f in TECHNIQUE_FEATURES[t]}
    return all(v.get(f, 0.0) <= learned_max.get(f, 0.0) for f in facts)


# long-running controllers: their replicas stay up and call the services their code uses
SERVING_CONTROLLERS = ("Deployment/", "StatefulSet/", "DaemonSet/")
# bytes a new workload may send out of the cluster (to any host) and still be calling an
# API: the learning-period guard's least archive shipped (features.ARCHIVE_SHIPPED_MIN_BYTES)
NEW_DEPENDENCY_MAX_BYTES = ARCHIVE_SHIPPED_MIN_BYTES
# facts of doing more than calling out: secrets, archives, foreign keys, an escape
_BEYOND_CALLING = (
    "archive_writes",
    "secret_reads",
    "credentials_out_of_place",
    "container_starts",
)
# reads a new workload's pod may make, as many as the namespace's quiet pods make (det11)
_START_UP_READS = ("repo_reads", "distinct_objects_read")


def new_workload_routine(
    profile: Profile,
    alert: Alert,
    workload_learning: bool,
    namespace_max: Mapping[str, float] | None = None,
) -> bool:
    """True when a model alert on a replica of a long-running controller whose own baseline
    has not learned yet (``workload_learning``: another baseline judged it) is backed only
    by contact with hosts new to the namespace (T1071 through ``new_destinations``), with
    less than ``NEW_DEPENDENCY_MAX_BYTES`` sent out of the cluster in the window (to any
    host: tuning seed 3's learning-period replica called a new address and sent 239 MB to
    a host an earlier replica had made known), no regular beat, no secret read, nothing
    archived or escaped, and no stranger acting on it: a Deployment just rolled out calling
    the external API its code uses (a feature-flag SDK, a geo-IP database). Until one of
    its windows is quiet every replica pages on the same host (tuning seeds 11-13: 11 false
    alerts on 4 new Deployments). A beat to the host (``beacon_regularity``, from 4
    connections), an upload of 1 MB or more (the learning-period guard ships archives from
    there), a Job's or a person's pod still page; so does any replica of a workload whose
    own baseline has matured. Not judged: what came *in* from the host (a tool downloaded
    by a new Deployment pages only for what it then does).

    Object and repository reads are allowed up to ``namespace_max``, the largest values
    the baseline that judged the pod learned from its quiet windows (None or empty: no
    read allowed): a new Deployment's pod reading its ConfigMap as it starts reads what
    the namespace's pods read in their quiet windows (tuning seed 30: a new `pdf-render`
    replica's one object read kept this rule from applying). Reading more than any quiet pod of the
    namespace did in a window (a collecting Deployment) still pages; secrets never pass.
    """
    e, v = profile.entity, profile.values
    work = set(alert.techniques) - LIFECYCLE_TECHNIQUES
    most = namespace_max or {}
    return (
        e.kind == "pod"
        and workload_learning
        and (e.workload or "").startswith(SERVING_CONTROLLERS)
        and not alert.rules
        and work == {"T1071"}
        and v.get("beacon_regularity", 0.0) == 0
        and v.get("new_destinations", 0.0) > 0
        and v.get("egress_external_bytes", 0.0) < NEW_DEPENDENCY_MAX_BYTES
        and all(v.get(f, 0.0) == 0 for f in _BEYOND_CALLING)
        and all(v.get(f, 0.0) <= most.get(f, 0.0) for f in _START_UP_READS)
        and not profile.strangers
        and v.get("deleted_by_other_identity", 0.0) == 0
    )


# what talking to, or uploading an archive to, a service of the cluster backs
SHARED_SERVICE_TECHNIQUES = frozenset({"T1071", "T1560.002", "T1041"})


def shared_service_routine(profile: Profile, alert: Alert, shared: Callable[[str], bool]) -> bool:
    """True when a model alert on a controller's (or a namespace's own spawner's) pod is
    backed only by contact with, or an archive sent to, services the rest of the cluster has
    used from the start (``shared(destination)``, :meth:`Campaigns.shared`): the package
    index a notebook pip-installs from and the object store it exports results to are new
    to a namespace whose first notebook it is, not command and control or an exfiltration
    channel. Only a young pod's rows (``SHORT_LIVED_S``): what a new server fetches and
    exports in its first minutes; a hijacked long-lived pod calling out mid-life still pages,
    whatever the host (attackers reuse their hosts, so one can look shared). A regular beat
    to a rare host, any host the cluster's namespaces did not share, reads, a guard rule or a
    person's bare pod still page. A whole life's row is left alone: its destinations are
    only its last window's.
    """
    e, v = profile.entity, profile.values
    whole_life = profile.final and v.get("lifetime_s", WHOLE_LIFE_S + 1) <= WHOLE_LIFE_S
    young = profile.window_end - profile.first_seen <= SHORT_LIVED_S
    work = set(alert.techniques) - LIFECYCLE_TECHNIQUES
    return (
        e.kind == "pod"
        and bool(e.workload or spawned_here(profile))
        and not alert.rules
        and not whole_life
        and young
        and bool(work)
        and work <= SHARED_SERVICE_TECHNIQUES
        and v.get("beacon_regularity", 0.0) == 0
        and bool(profile.destinations)
        and all(shared(d) for d in profile.destinations)
    )


def own_instance_routine(profile: Profile, alert: Alert) -> bool:
    """True when a model alert on an instance is only a person terminating their own
    instance: one whose launch is not in the telemetry held (it ran before it, or its story
    was forgotten after an idle hour), or that the same person ran. No guard, no technique
    beyond the termination, no credentials out of place.

    A developer's test box (run, a few calls, terminated by the same SSO person 30-90 min
    later: tuning seed 14 paged 4 of 4) and an admin ending a bastion host they started
    hours ago tell nothing beyond their own lifecycle. The stories that are evasion keep
    paging: stolen keys that run, read and terminate within 30 min are the instance guards'
    (``instance-story-by-new-identity``, ``instance-run-terminate-by-one-human``); reads,
    archives or egress under the instance's role add their technique; keys used from
    elsewhere are ``credentials-out-of-place``; an instance terminated by anyone but the
    person who ran it is judged as before.
    """
    who = profile.created_by
    return (
        profile.entity.kind == "instance"
        and profile.final
        and profile.deleter_kind == "person"
        and (who is None or (profile.creator_kind == "person" and who == profile.deleted_by))
        and not alert.rules
        and set(alert.techniques) <= LIFECYCLE_TECHNIQUES
        and profile.values.get("credentials_out_of_place", 0.0) == 0
    )
