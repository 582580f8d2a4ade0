"""Guard rules: each holds on its pattern only; they raise severity, never replace the model."""

from __future__ import annotations

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scoring_fixtures import make_profile, quick_settings

from churnguard.profiling.profile import ArchiveShipped, EntityRef, Profile
from churnguard.profiling.spec import load_spec
from churnguard.scoring.guards import GUARDS, Context, fired, may_fire
from churnguard.scoring.lives import Peers
from churnguard.scoring.scorer import LEARNING, Scorer


def _names(p) -> list[str]:
    return [g.name for g in fired(p)]


def _instance(lifetime: float, *, same: float = 1.0, person: float = 1.0, **values: float):
    return make_profile(
        kind="instance",
        instance_id="i-1",
        final=True,
        end_reason="terminated",
        values={
            "lifetime_s": lifetime,
            "run_and_terminate_same_identity": same,
            "deleted_by_person": person,
            **values,
        },
    )


def test_every_guard_is_documented_and_mapped() -> None:
    for g in GUARDS:
        assert g.name and g.doc and g.technique.startswith("T")


def test_instance_run_and_terminated_by_one_human_within_30_min() -> None:
    assert _names(_instance(1200)) == ["instance-run-terminate-by-one-human"]
    assert _names(_instance(4000)) == []  # lived too long
    assert _names(_instance(1200, same=0.0)) == []  # two identities
    assert _names(_instance(1200, person=0.0)) == []  # the autoscaler


def test_an_instance_story_told_by_a_never_seen_identity_pages_in_any_mode() -> None:
    story = _instance(900, person=0.0, new_identity=1, repo_reads=12)
    assert _names(story) == ["instance-story-by-new-identity"]
    assert _names(_instance(900, person=0.0, new_identity=0, repo_reads=12)) == []  # Packer
    assert _names(_instance(900, person=0.0, new_identity=1)) == []  # read nothing
    assert _names(_instance(3000, person=0.0, new_identity=1, repo_reads=3)) == []  # a dev box
    # a mature instance baseline that knows these very values (open windows, no guard):
    # the model does not page the story, the guard does
    scorer = Scorer(quick_settings(), load_spec())
    for k in range(0, 80, 20):
        scorer.score(
            [
                make_profile(
                    kind="instance", instance_id=f"i-{k + j}", t=k + j, values=story.values
                )
                for j in range(20)
            ]
        )
    (scored,) = scorer.score([story])
    assert scored.level != LEARNING and scored.score < scored.threshold
    assert scored.alert is not None and scored.alert.rules == ["instance-story-by-new-identity"]


def test_pod_deleted_by_person_within_2_min_of_exec() -> None:
    def pod(exec_to_delete: float, person: float = 1.0):
        return make_profile(
            final=True,
            end_reason="deleted",
            values={"exec_to_delete_s": exec_to_delete, "deleted_by_person": person},
        )

    assert _names(pod(60)) == ["exec-then-delete-by-person"]
    assert _names(pod(600)) == []
    assert _names(pod(60, person=0.0)) == []  # the ReplicaSet controller
    assert _names(make_profile(values={"exec_to_delete_s": 60, "deleted_by_person": 1})) == []


def test_archive_then_large_egress_to_new_destination() -> None:
    def pod(archives: float, egress: float, new: float):
        return make_profile(
            values={
                "archive_writes": archives,
                "egress_external_bytes": egress,
                "new_destinations": new,
            }
        )

    assert _names(pod(1, 6e7, 1)) == ["archive-then-egress-to-new-destination"]
    assert _names(pod(1, 6e7, 0)) == []  # the backup bucket it always uses
    assert _names(pod(1, 4e7, 1)) == []
    assert _names(pod(0, 6e7, 1)) == []


def test_in_learning_mode_only_standalone_guards_alert() -> None:
    settings = quick_settings(learning_profiles=1000)
    scorer = Scorer(settings, load_spec())
    exec_delete = make_profile(
        final=True,
        end_reason="deleted",
        values={"exec_to_delete_s": 30, "deleted_by_person": 1, "lifetime_s": 100},
    )
    out = scorer.score([_instance(600), exec_delete])
    assert [s.level for s in out] == [LEARNING, LEARNING]
    forced = out[0].alert
    assert forced is not None and forced.baseline.level == LEARNING
    assert forced.techniques[0] == "T1578.003"
    assert forced.rules == ["instance-run-terminate-by-one-human"]
    assert out[1].alert is None  # admins do exec and delete: the model has to judge it


def test_an_escape_counts_on_the_pod_that_launched_the_container_too() -> None:
    escaped = make_profile(final=True, end_reason="deleted", values={"container_starts": 1.0})
    assert _names(escaped) == ["container-started-from-a-pod"]
    assert _names(make_profile(values={"container_starts": 0.0})) == []
    container = make_profile(kind="instance", instance_id="c")
    container.entity.kind, container.entity.instance_id = "container", None
    assert _names(container) == ["container-outside-orchestrator"]  # no launcher known
    container.created_by = "shop/node-shell-1"
    assert _names(container) == ["container-outside-orchestrator", "container-started-from-a-pod"]


def _bare(creator: str, creator_kind: str, **values: float):
    p = make_profile(pod="node-shell-x1", workload=None, values=values)
    return msgspec.structs.replace(p, created_by=creator, creator_kind=creator_kind)


def test_a_bare_pod_no_controller_made_that_starts_a_container_pages_in_a_wide_namespace() -> None:
    """attack-container-escape in a namespace whose baseline is wide: the node-shell pod
    scored under its namespace's bar and only raised no alert, because the escape guard
    could only add to a model alert. A pod no controller vouches for pages by itself."""
    escaped = _bare("erin@corp.example", "person", container_starts=1.0, shell_spawned=1.0)
    assert _names(escaped) == ["unvouched-pod-started-a-container"]
    assert [g.pages for g in fired(escaped)] == [True]
    assert _names(_bare("erin@corp.example", "person", container_starts=0.0)) == []
    # a hub's notebook server (its namespace's own service account made it) is vouched for
    hub = "system:serviceaccount:shop:hub"
    assert _names(_bare(hub, "service_account", container_starts=1.0)) == [
        "container-started-from-a-pod"
    ]
    # a foreign namespace's token is not its controller
    foreign = "system:serviceaccount:ci:deployer"
    assert _names(_bare(foreign, "service_account", container_starts=1.0)) == [
        "unvouched-pod-started-a-container"
    ]
    # a wide, mature namespace baseline whose pods open shells all day: the model does not
    # page the escape, the guard does
    scorer = Scorer(quick_settings(), load_spec())
    shells = {"shell_spawned": 1.0}
    for k in range(0, 80, 20):
        scorer.score([make_profile(pod=f"web-{k + j}", t=k + j, values=shells) for j in range(20)])
    (scored,) = scorer.score([escaped])
    assert scored.level != LEARNING and scored.score < scored.threshold
    assert scored.alert is not None
    assert scored.alert.rules == ["unvouched-pod-started-a-container"]
    assert "T1611" in scored.alert.techniques


def test_a_new_workloads_pod_sweeping_secrets_pages_only_while_its_workload_learns() -> None:
    """attack-deployment-collection: a new Deployment lists the namespace's secrets and gets
    several; the namespace's baseline had learned an older collector's reads (tuning seed 4:
    0.40 against 0.93). An application fetching its own secret at start does not page."""
    from churnguard.scoring.guards import SECRET_SWEEP, Context

    def pod(reads: float, workload: str = "Deployment/config-reloader"):
        return make_profile(workload=workload, values={"secret_reads": reads, "api_list": 1})

    learning = Context(workload_learning=True)
    sweep = [g for g in fired(pod(SECRET_SWEEP), learning) if g.pages]
    assert [g.name for g in sweep] == ["secrets-swept-by-an-unjudged-pod"]
    assert sweep[0].technique == "T1213"
    assert "secrets-swept-by-an-unjudged-pod" not in _names(pod(SECRET_SWEEP))  # mature: judged
    assert not fired(pod(1), learning)  # its own credentials at start
    new_namespace = Context(workload_learning=True, namespace_learning=True)
    assert not fired(pod(SECRET_SWEEP), new_namespace)  # a new namespace's operators
    # a bare pod sweeping secrets with its token (tuning seed 11: a debug pod by a stolen
    # runner token and an SRE look-alike in a sparse namespace, 0.73-0.78 against 0.93)
    for ctx in (Context(), learning, new_namespace):
        assert [g.name for g in fired(pod(SECRET_SWEEP, workload=""), ctx) if g.pages] == [
            "secrets-swept-by-an-unjudged-pod"
        ]
    assert not fired(pod(1, workload=""), learning)


def test_a_node_debug_session_that_only_inspects_starts_no_container() -> None:
    """What ``unvouched-pod-started-a-container`` pages on: a runtime client *starting* a
    container. An SRE's node-debug pod entering the host and inspecting its containers
    (the look-alike) counts none; ``ctr run`` after ``nsenter`` (the escape) does."""
    from churnguard.ingest.events import Event, EventKind
    from churnguard.profiling.entities import starts_container

    def run(binary: str, args: str) -> bool:
        return starts_container(
            Event(time=0.0, kind=EventKind.PROCESS_EXEC, binary=binary, args=args, format="t")
        )

    inspect = [
        ("/usr/bin/nsenter", "-t 1 -m -u -i -n -p -- bash"),
        ("/usr/bin/crictl", "ps -a"),
        ("/usr/bin/crictl", "logs 3f2a9c"),
        ("/usr/bin/crictl", "inspect 3f2a9c"),
        ("/usr/bin/ctr", "-n k8s.io containers ls"),
        ("/usr/bin/docker", "ps"),
        ("/usr/bin/journalctl", "-u kubelet --since -1h"),
    ]
    assert not any(run(b, a) for b, a in inspect)
    escape = [
        ("/usr/bin/ctr", "run -d --net-host docker.io/library/alpine:3.19 x1 sh"),
        ("/usr/bin/docker", "run -d --privileged -v /:/host alpine sh"),
        ("/usr/local/bin/nerdctl", "run -d busybox sh"),
        ("/usr/bin/crictl", "runp pod.json"),
    ]
    assert all(run(b, a) for b, a in escape)


_GUARD_VALUES = (
    "archive_writes",
    "container_starts",
    "credentials_out_of_place",
    "deleted_by_person",
    "distinct_objects_read",
    "egress_external_bytes",
    "exec_to_delete_s",
    "lifetime_s",
    "new_destinations",
    "new_identity",
    "repo_reads",
    "run_and_terminate_same_identity",
    "secret_reads",
)
# each guard's edges: none, negative, under and at its bars, large, NaN
_AMOUNTS = st.sampled_from([0.0, -1.0, 1.0, 3.0, 4.0, 39.0, 40.0, 600.0, 6e7, 1e9, float("nan")])
_SOME = st.one_of(st.just(0.0), st.just(0.0), _AMOUNTS)  # most facts of a window are zero
_CREATORS = st.sampled_from(
    [
        (None, None),
        ("erin@corp.example", "person"),
        ("system:serviceaccount:shop:hub", "service_account"),
        ("system:serviceaccount:ci:deployer", "service_account"),
    ]
)


@st.composite
def _guarded_rows(draw: st.DrawFn) -> tuple[Profile, Context]:
    kind = draw(st.sampled_from(["pod", "pod", "instance", "container"]))
    p = make_profile(
        kind="instance" if kind == "instance" else "pod",
        instance_id="i-1",
        workload=draw(st.sampled_from([None, "", "Deployment/web"])),
        final=draw(st.booleans()),
        values=draw(st.fixed_dictionaries({}, optional=dict.fromkeys(_GUARD_VALUES, _SOME))),
    )
    if kind == "container":
        p.entity = EntityRef(kind="container", node="n1", container_ids=["c1"])
    created_by, creator_kind = draw(_CREATORS)
    host = draw(st.sampled_from(["203.0.113.7", "198.51.100.9"]))
    # at most one of the stories a guard reads beside the values, so that each is tried alone
    story = draw(st.sampled_from([None, None, "archive_shipped", "late", "lone", "callers"]))
    p = msgspec.structs.replace(
        p,
        created_by=created_by,
        creator_kind=creator_kind,
        archive_shipped=[ArchiveShipped(host, 10, "/tmp/a.tgz", 20)]
        if story == "archive_shipped"
        else [],
        late_beacons={host: 0.9} if story == "late" else {},
        lone_beacons={host: 0.9} if story == "lone" else {},
        unfamiliar_callers={host: "/tmp/x"} if story == "callers" else {},
        life_reads=draw(st.dictionaries(st.sampled_from(["repo_reads", "secret_reads"]), _AMOUNTS)),
    )
    peers = Peers(3, {"repo_reads": 1.0, "secret_reads": 1.0}, {"repo_reads": 0.1})
    shared = draw(st.booleans())  # the cluster shares one of the two hosts, or none
    ctx = Context(
        workload_learning=draw(st.booleans()),
        namespace_learning=draw(st.booleans()),
        shared=lambda dest: shared and dest == "198.51.100.9",
        peers_of=draw(st.sampled_from([None, lambda: None, lambda: peers])),
    )
    return p, ctx


_SHIPPED = {"archive_writes": 1.0, "new_destinations": 1.0, "egress_external_bytes": 6e7}


@settings(max_examples=1000)
@given(_guarded_rows())
@example((make_profile(values=_SHIPPED), Context()))  # three facts at once: rare in a draw
def test_no_guard_holds_where_may_fire_says_none_can(row: tuple[Profile, Context]) -> None:
    """The scorer skips the checks (and the row's context) where ``may_fire`` is False."""
    p, ctx = row
    if not may_fire(p):
        assert fired(p, ctx) == []
