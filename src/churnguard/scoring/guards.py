"""A few high-confidence guard rules beside the model. Tiny on purpose.

A guard never replaces the model: when the model alerts, each guard that also holds raises
the alert's severity one step and adds its technique. Outside learning mode a guard alone
stays silent: admins do exec into a pod and delete it, CI runners do write and upload
tarballs, and the learned baseline is what tells those apart. Some stories page by
themselves in any mode (``pages``): an instance run, used to read and terminated within
minutes by an identity never seen running instances, credentials used out of place,
a long-running pod calling a host new to it on a schedule, a new workload's pod shipping
an archive to a host new to its namespace or sweeping the namespace's secrets while
nothing judges the workload yet, a bare pod sweeping them at any time, a replica of
a mature workload that read far more over its life than any other replica did, and a bare
pod no controller made starting a container on its node; no benign
identity of the account tells the first two, pollers call their endpoints from their
first minutes, archivers ship to the hosts their namespace or cluster uses, and an
application reads its own secret, not a list of them, replicas of one workload read
alike, and people debugging a node inspect its containers, they do not start new ones.
While a namespace is still in
learning mode (no baseline can judge yet) only the guards marked ``alone`` — patterns no
benign scenario we know of produces — raise an alert by themselves, so a brand-new
namespace is not a complete blind spot. A container outside the orchestrator is such a
pattern: no baseline has one to learn, so its guards alert by themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from churnguard.profiling.profile import ArchiveShipped, Profile
from churnguard.scoring.learning import spawned_here
from churnguard.scoring.lives import Peers, lived, rate

RUN_TO_TERMINATE_S = 1800.0
EXEC_TO_DELETE_S = 120.0
EGRESS_BYTES = 50e6
# secret reads through the API in one window (a list and three gets) that are a sweep, not
# an application fetching its own credentials at start (one get, mounted secrets none)
SECRET_SWEEP = 4
# reads over a pod's life beyond every other pod of its mature workload: at least this many
# (a few batches of a thin collector, not one application's fetch) and this many times the
# most, and the fastest per hour of life, any of those pods read over theirs
LIFE_READS_MIN = 40.0
LIFE_READS_FACTOR = 4.0
_READ_NAMES = {
    "repo_reads": "repository reads",
    "distinct_objects_read": "distinct objects read",
    "secret_reads": "secret reads",
}


def _nothing_shared(dest: str) -> bool:
    return False


@dataclass(frozen=True)
class Context:
    """What the scorer knows about a row beyond its profile."""

    # a controller's pod whose own workload baseline is not mature yet (scored against its
    # namespace or cluster, or not at all)
    workload_learning: bool = False
    # its namespace is in learning mode: every destination is still new to it
    namespace_learning: bool = False
    # an external destination the cluster's namespaces share (Campaigns.shared)
    shared: Callable[[str], bool] = _nothing_shared
    # what the other pods of its workload read over their lives (scoring/lives.py); None
    # when the workload has too few known lives to be a yardstick. Asked only when a
    # guard needs it: working it out walks the workload's recent lives
    peers_of: Callable[[], Peers | None] | None = None


@dataclass(frozen=True)
class Guard:
    """One rule: ``check(profile)`` holds on its pattern; ``technique`` joins the alert."""

    name: str
    technique: str
    doc: str
    check: Callable[[Profile, Context], bool]
    alone: bool = False  # may alert by itself during learning mode
    pages: bool = False  # alerts by itself in any mode: a story no benign identity tells
    # its paged rows count in the namespace's threshold tail (thresholds.py); not for a
    # story told by a burst of one new workload's replicas, which would lift the bar over
    # every other entity of the namespace
    in_tail: bool = True
    # the facts behind its technique that the profile alone does not hold (one line each),
    # quoted in the alert's technique evidence
    facts: Callable[[Profile, Context], list[str]] | None = None


def _instance_run_terminate_by_one_human(p: Profile, _: Context) -> bool:
    return _run_terminate_quickly_by_one_identity(p) and p.values.get("deleted_by_person", 0) > 0


def _instance_story_by_new_identity(p: Profile, _: Context) -> bool:
    # Packer's CI role and developers' SSO sessions are known identities of the account
    # once a window of one of their instances scored quietly: their first story in the
    # telemetry pages, as stolen keys' would (docs/scoring.md, det10); autoscaling and
    # spot are excluded by run_and_terminate_same_identity
    v = p.values
    return (
        _run_terminate_quickly_by_one_identity(p)
        and v.get("new_identity", 0) > 0
        and _read_something(v)
    )


def _run_terminate_quickly_by_one_identity(p: Profile) -> bool:
    v = p.values
    return (
        p.entity.kind == "instance"
        and p.final
        and v.get("run_and_terminate_same_identity", 0) > 0
        and v.get("lifetime_s", 1e9) <= RUN_TO_TERMINATE_S
    )


def _read_something(v: dict[str, float]) -> bool:
    return any(v.get(f, 0) > 0 for f in ("repo_reads", "secret_reads", "distinct_objects_read"))


def _credentials_out_of_place(p: Profile, _: Context) -> bool:
    return p.values.get("credentials_out_of_place", 0) > 0


def _exec_then_delete_by_person(p: Profile, _: Context) -> bool:
    v = p.values
    return (
        p.entity.kind == "pod"
        and p.final
        and v.get("deleted_by_person", 0) > 0
        and v.get("exec_to_delete_s", 1e9) <= EXEC_TO_DELETE_S
    )


def _archive_then_egress_to_new_destination(p: Profile, _: Context) -> bool:
    v = p.values
    return (
        v.get("archive_writes", 0) > 0
        and v.get("new_destinations", 0) > 0
        and v.get("egress_external_bytes", 0) > EGRESS_BYTES
    )


def _archive_shipped_while_learning(p: Profile, ctx: Context) -> bool:
    return bool(shipped_archives(p, ctx))


def shipped_archives(p: Profile, ctx: Context) -> list[ArchiveShipped]:
    """The archives a new workload's pod shipped to hosts new to its namespace that the
    cluster does not share (the learning-period guard's facts, quoted by its evidence)."""
    if p.entity.kind != "pod" or not p.entity.workload or not ctx.workload_learning:
        return []
    if ctx.namespace_learning:
        return []  # every host is new to a new namespace; nothing knows its bucket yet
    return [a for a in p.archive_shipped if not ctx.shared(a.dest)]


def _secrets_swept_by_an_unjudged_pod(p: Profile, ctx: Context) -> bool:
    if p.entity.kind != "pod" or p.values.get("secret_reads", 0) < SECRET_SWEEP:
        return False
    if not p.entity.workload:
        return True  # a bare pod: no controller vouches for it and no baseline ever learns it
    # a new namespace's operators list and watch their secrets
    return ctx.workload_learning and not ctx.namespace_learning


def _reads_beyond_its_workload(p: Profile, ctx: Context) -> bool:
    return bool(reads_beyond_workload(p, ctx))


def reads_beyond_workload(p: Profile, ctx: Context) -> list[str]:
    """What a pod of a mature workload read over its life beyond every other pod of that
    workload over theirs, one line per kind of read (the whole-life read guard's facts,
    quoted by its T1213 evidence)."""
    if ctx.peers_of is None or p.entity.kind != "pod" or ctx.workload_learning:
        return []  # no yardstick, or not judged by its own workload's baseline
    if ctx.namespace_learning or all(total < LIFE_READS_MIN for total in p.life_reads.values()):
        return []
    peers = ctx.peers_of()
    if peers is None:
        return []
    seconds = lived(p)
    out = []
    for name, total in p.life_reads.items():
        most, fastest = peers.total.get(name, 0.0), peers.rate.get(name, 0.0)
        if (
            total >= LIFE_READS_MIN
            and total > LIFE_READS_FACTOR * most
            and rate(total, seconds) > LIFE_READS_FACTOR * fastest
        ):
            out.append(
                f"{total:g} {_READ_NAMES.get(name, name)} over its {seconds / 3600:.1f} h life;"
                f" the {peers.pods} other pods of its workload read at most {most:g}"
                f" ({fastest:.1f} an hour) over theirs"
            )
    return out


def _beacon_to_a_new_destination(p: Profile, _: Context) -> bool:
    return bool(p.late_beacons)


def _beacon_from_one_replica(p: Profile, _: Context) -> bool:
    return bool(p.lone_beacons)


def _unfamiliar_program_calls_a_new_host(p: Profile, _: Context) -> bool:
    return bool(p.unfamiliar_callers)


def _container_outside_orchestrator(p: Profile, _: Context) -> bool:
    # the runtime sensors (Falco, Tetragon) run on the cluster's nodes: every container
    # entity is a container on a Kubernetes node that no pod accounts for
    return p.entity.kind == "container"


def _container_started_from_a_pod(p: Profile, _: Context) -> bool:
    # one escape, seen from both ends of the launch link: the container a pod's process
    # started through the node's runtime, and the pod whose story holds that start (its
    # process ran ``ctr``/``docker run`` after leaving its container's namespaces); a pod
    # no controller vouches for is the paging guard below
    if p.entity.kind == "container":
        return p.created_by is not None
    return started_containers(p) and not unvouched(p)


def _unvouched_pod_started_a_container(p: Profile, _: Context) -> bool:
    return started_containers(p) and unvouched(p)


def started_containers(p: Profile) -> bool:
    """A pod whose processes started a container with a runtime client (``container_starts``)."""
    return p.entity.kind == "pod" and p.values.get("container_starts", 0) > 0


def unvouched(p: Profile) -> bool:
    """A bare pod that no controller and no service account of its own namespace made (a
    person's ``kubectl run``/``kubectl debug``/node-shell pod, or one a foreign token made):
    no baseline of its own ever learns what it does."""
    return p.entity.kind == "pod" and not p.entity.workload and not spawned_here(p)


GUARDS: tuple[Guard, ...] = (
    Guard(
        "instance-run-terminate-by-one-human",
        "T1578.003",
        "An EC2 instance launched and terminated by the same human identity within 30 min.",
        _instance_run_terminate_by_one_human,
        alone=True,
    ),
    Guard(
        "instance-story-by-new-identity",
        "T1578.003",
        "An EC2 instance launched and terminated within 30 min by one identity never seen"
        " running instances in the account (``new_identity``), that read objects or secrets"
        " in between: stolen keys, not a developer's test box or a Packer build.",
        _instance_story_by_new_identity,
        alone=True,
        pages=True,
    ),
    Guard(
        "credentials-out-of-place",
        "T1078.004",
        "Cloud calls made with credentials that do not belong where they were used"
        " (``credentials_out_of_place``): a CI or workload role's keys used from an"
        " instance or pod, or an instance's role used from another address.",
        _credentials_out_of_place,
        alone=True,
        pages=True,
    ),
    Guard(
        "exec-then-delete-by-person",
        "T1578.003",
        "A pod deleted by a person within 2 min of an exec/attach/port-forward into it.",
        _exec_then_delete_by_person,
    ),
    Guard(
        "archive-then-egress-to-new-destination",
        "T1560.002",
        "An archive written and over 50 MB sent outside the cluster, to a destination never"
        " seen before (``new_destinations``: first-seen per namespace, see the spec), in"
        " one window.",
        _archive_then_egress_to_new_destination,
    ),
    Guard(
        "archive-shipped-while-learning",
        "T1041",
        "A controller's pod whose own workload baseline is still learning, in a namespace"
        " past its learning mode, wrote an archive"
        " and then sent at least half its size to a host new to the namespace"
        " (``Profile.archive_shipped``: new when the pod first sent to it after the"
        " archive) that the cluster does not share (``Campaigns.shared``): a new"
        " Deployment shipping data while nothing can judge it. Log archivers and CI"
        " runners ship to the organisation's bucket and registries, which their namespace"
        " or the cluster already uses.",
        _archive_shipped_while_learning,
        pages=True,
        in_tail=False,
    ),
    Guard(
        "secrets-swept-by-an-unjudged-pod",
        "T1213",
        "A bare pod, or a controller's pod whose own workload baseline is still learning"
        " in a namespace past its learning mode, read secrets through the API at least 4"
        " times in one window (``secret_reads``: a list and gets of several secrets): a"
        " debug pod or a new Deployment collecting credentials with its service account's"
        " token while nothing can judge it (a sparse namespace's baseline has often"
        " learned an older intrusion). Applications get their own secret once at start or"
        " mount it; people read secrets with their own credentials, not a pod's.",
        _secrets_swept_by_an_unjudged_pod,
        pages=True,
    ),
    Guard(
        "reads-beyond-its-workload",
        "T1213",
        "A controller's pod judged by its own mature workload baseline read, summed over its"
        " life (``Profile.life_reads``: repository reads, distinct objects or secrets), at"
        " least 40 and over 4 times both the most and the fastest (per hour of life) that"
        " any of 3 or more other pods of its workload read over theirs (scoring/lives.py):"
        " collection spread thin over hours, each window inside the workload's baseline."
        " Replicas of one workload read alike; a CronJob's runs that each read thousands"
        " of objects set their own yardstick.",
        _reads_beyond_its_workload,
        pages=True,
        facts=reads_beyond_workload,
    ),
    Guard(
        "beacon-to-a-new-destination",
        "T1071",
        "Connections on a schedule (regularity >= 0.5 over four or more) to an external"
        " host its namespace first used 90 min or more after this entity started, or its"
        " workload's pods first called 90 min or more after the workload's first pod, and"
        " that its pods have not polled for half a day (``Profile.late_beacons``): an"
        " implant in a long-running pod or in a young replica of an old workload. Pollers"
        " call their endpoints from their first minutes; a new workload's hosts are new"
        " from its birth.",
        _beacon_to_a_new_destination,
        alone=True,
        pages=True,
    ),
    Guard(
        "beacon-from-one-replica",
        "T1071",
        "Connections like clockwork (regularity >= 0.8 over four or more, over the pod's"
        " life) to an external host that none of 2 or more other pods of its workload seen"
        " meanwhile called since the schedule began, in a pod nobody exec'd into"
        " (``Profile.lone_beacons``): an implant in one"
        " replica of a busy Deployment, whose one small call a window looks like the"
        " workload's traffic, calling a host the namespace may know from an earlier"
        " intrusion. Replicas share their image and configuration: each replica of a GitOps"
        " or monitoring workload polls its endpoint.",
        _beacon_from_one_replica,
        alone=True,
        pages=True,
    ),
    Guard(
        "unfamiliar-program-calls-a-new-host",
        "T1071",
        "A controller's pod started a program its workload's pods never ran in a quiet"
        " window, with nobody exec'ing into it, and then called an external host its"
        " workload never called (``Profile.unfamiliar_callers``): an implant dropped into"
        " a long-running pod (an exploited service) calling home, before any schedule"
        " shows. Workloads run the programs of their image, and a new one's programs are"
        " not judged until learned; people and CI exec'ing into a pod are judged by who"
        " they are.",
        _unfamiliar_program_calls_a_new_host,
        alone=True,
        pages=True,
    ),
    Guard(
        "container-outside-orchestrator",
        "T1610",
        "A runtime container on a cluster node that no pod accounts for (``docker``/``ctr``/"
        "``nerdctl run`` on the node): the orchestrator, and every control built on it,"
        " never saw it.",
        _container_outside_orchestrator,
        alone=True,
    ),
    Guard(
        "container-started-from-a-pod",
        "T1611",
        "A container started by a runtime client run from a pod's process (after"
        " ``nsenter`` or a host mount), and that pod (``container_starts``): an escape from"
        " the pod to its host, on both entities of the story.",
        _container_started_from_a_pod,
        alone=True,
    ),
    Guard(
        "unvouched-pod-started-a-container",
        "T1611",
        "A bare pod that no controller and no service account of its namespace made (a"
        " person's ``kubectl run``, ``kubectl debug`` or node-shell pod, or one a foreign"
        " token made) whose process started a container with a runtime client"
        " (``container_starts``: ``ctr``/``docker``/``nerdctl run``, ``crictl runp``, after"
        " ``nsenter`` into the node): an escape to the host, started where no admission"
        " control sees it. Pages in any mode, whatever the namespace's baseline has seen:"
        " debugging a node inspects its containers (``crictl ps``/``logs``/``inspect``),"
        " it does not start new ones. A controller's pod that does (a CI runner on the"
        " host's runtime socket) is judged by its workload's baseline"
        " (``container-started-from-a-pod``).",
        _unvouched_pod_started_a_container,
        alone=True,
        pages=True,
    ),
)


def may_fire(p: Profile) -> bool:
    """False only where no guard can hold for the row, whatever its context: a live pod's
    window with none of the facts the guards look at. Most windows are such, so the scorer
    builds a row's context and runs the checks only where this holds. A new guard must keep
    it true wherever the guard can hold (``tests/unit/test_guards.py`` checks every guard)."""
    if p.entity.kind != "pod" or p.final:
        return True
    if p.archive_shipped or p.late_beacons or p.lone_beacons or p.unfamiliar_callers:
        return True
    v = p.values.get
    if (
        v("credentials_out_of_place", 0) > 0
        or v("archive_writes", 0) > 0
        or v("container_starts", 0) > 0
        or not v("secret_reads", 0) < SECRET_SWEEP
    ):
        return True
    for total in p.life_reads.values():  # noqa: SIM110 (no generator: every row asks)
        if total >= LIFE_READS_MIN:
            return True
    return False


def fired(profile: Profile, ctx: Context = Context()) -> list[Guard]:
    """The guards that hold for a profile, in declaration order."""
    return [g for g in GUARDS if g.check(profile, ctx)]


def facts_of(guards: list[Guard], profile: Profile, ctx: Context) -> dict[str, list[str]]:
    """Technique -> the facts the fired ``guards`` found beyond the profile's own values."""
    out: dict[str, list[str]] = {}
    for g in guards:
        if g.facts is not None:
            out.setdefault(g.technique, []).extend(g.facts(profile, ctx))
    return out
