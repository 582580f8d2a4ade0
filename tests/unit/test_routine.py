"""An operator's routine does not page: a model alert must show more than a known person's
deletion of a pod."""

from __future__ import annotations

import msgspec
from scoring_fixtures import make_profile, terminated_instance

from churnguard.alerts.alert import Alert, BaselineRef, Window
from churnguard.scoring.routine import (
    new_workload_routine,
    own_instance_routine,
    replica_routine,
    routine,
    shared_service_routine,
)


def _alert(techniques: list[str], rules: list[str] | None = None) -> Alert:
    p = make_profile()
    return Alert(
        alert_id="a",
        summary="s",
        entity=p.entity,
        score=0.99,
        threshold=0.93,
        baseline=BaselineRef(level="namespace", key="ns:shop:pod"),
        severity="medium",
        techniques=techniques,
        explanation=[],
        evidence=[],
        first_seen="",
        last_seen="",
        emitted_at="",
        window=Window(start=0.0, end=300.0),
        response=[],
        rules=rules or [],
    )


def _deleted(**values: float):
    base = {"deleted_by_person": 1.0, "new_identity": 1.0, "new_identity_in_cluster": 0.0}
    return make_profile(final=True, end_reason="deleted", values={**base, **values})


def test_a_known_persons_deletion_alone_is_routine() -> None:
    assert routine(_deleted(), _alert(["T1578.003", "T1070"]))
    assert routine(_deleted(), _alert([]))  # context features only, nothing backed


def test_a_new_colleague_of_the_clusters_operators_is_routine() -> None:
    """An SRE's first debug pod in this cluster: new to it, but their team operates it."""
    colleague = _deleted(new_identity_in_cluster=1.0)
    assert colleague.strangers == []
    assert routine(colleague, _alert(["T1578.003", "T1070"]))
    assert not routine(colleague, _alert(["T1578.003", "T1213"]))  # what was done inside


def test_anything_more_pages() -> None:
    lifecycle = _alert(["T1578.003", "T1070"])
    stranger = msgspec.structs.replace(
        _deleted(new_identity_in_cluster=1.0), strangers=["erin@corp.example"]
    )
    assert not routine(stranger, lifecycle)  # new to the cluster, in no team it knows
    assert not routine(_deleted(deleted_by_other_identity=1.0), lifecycle)  # a stolen token
    assert not routine(_deleted(), _alert(["T1578.003", "T1213"]))  # it read something
    assert not routine(_deleted(), _alert(["T1578.003"], rules=["exec-then-delete-by-person"]))
    instance = msgspec.structs.replace(
        _deleted(), entity=make_profile(kind="instance", instance_id="i-1").entity
    )
    assert not routine(instance, lifecycle)


def test_a_pod_that_started_a_container_on_its_node_is_never_routine() -> None:
    from churnguard.scoring.guards import fired

    # a known person's pod, deleted by them: routine, unless its story holds the escape
    escaped = _deleted(container_starts=1.0)
    rules = [g.name for g in fired(escaped)]
    assert rules == ["container-started-from-a-pod"]
    assert not routine(escaped, _alert(["T1578.003", "T1070"], rules=rules))


def _replica(**values: float):
    """A Deployment's replica removed by its controller: its whole life's reads."""
    base = {"secret_reads": 1.0, "distinct_objects_read": 2.0, "lifetime_s": 600.0}
    return make_profile(final=True, end_reason="deleted", values={**base, **values})


LEARNED = {"secret_reads": 1.0, "distinct_objects_read": 3.0, "archive_writes": 0.0}


def test_a_replica_doing_what_its_workload_learned_is_routine() -> None:
    reads = _alert(["T1213", "T1578.003"])
    assert replica_routine(_replica(), reads, LEARNED)


def test_a_replica_doing_more_than_its_workload_pages() -> None:
    reads = _alert(["T1213", "T1578.003"])
    assert not replica_routine(_replica(), reads, None)  # judged by the namespace: a new workload
    assert not replica_routine(_replica(distinct_objects_read=40.0), reads, LEARNED)
    assert not replica_routine(_replica(new_destinations=1.0), reads, LEARNED)  # a new host
    stranger = msgspec.structs.replace(_replica(), strangers=["system:serviceaccount:ci:x"])
    assert not replica_routine(stranger, reads, LEARNED)  # a stolen token deleted it
    assert replica_routine(_replica(new_identity_in_cluster=1.0), reads, LEARNED)  # a colleague
    archive = _replica(archive_writes=1.0, archive_bytes=5e7)
    assert not replica_routine(archive, _alert(["T1560.002", "T1213"]), LEARNED)
    assert not replica_routine(_replica(), _alert(["T1071"]), LEARNED)  # C2 is never a replica's
    assert not replica_routine(_replica(), _alert(["T1213"], rules=["x"]), LEARNED)
    bare = msgspec.structs.replace(
        _replica(), entity=make_profile(workload=None, pod="debug-1").entity
    )
    assert not replica_routine(bare, reads, LEARNED)  # no controller to vouch for it


def _new_dependency(**values: float):
    """A new Deployment's replica calling the SaaS API its code uses (a few kB out)."""
    base = {
        "new_destinations": 1.0,
        "egress_new_destination_bytes": 40_000.0,
        "egress_external_bytes": 40_000.0,
    }
    return make_profile(workload="Deployment/feature-flags", values={**base, **values})


def test_a_new_workload_calling_the_api_its_code_uses_is_routine() -> None:
    assert new_workload_routine(_new_dependency(), _alert(["T1071"]), workload_learning=True)


def test_a_new_workload_reading_what_the_namespace_reads_is_routine() -> None:
    """Its ConfigMap read at start-up is what the namespace's quiet pods read every window;
    reading more than any of them did, or any secret, is not."""
    c2 = _alert(["T1071"])
    namespace = {"distinct_objects_read": 2.0, "repo_reads": 1.0, "secret_reads": 3.0}
    start_up = _new_dependency(distinct_objects_read=1.0)
    assert new_workload_routine(start_up, c2, workload_learning=True, namespace_max=namespace)
    assert not new_workload_routine(start_up, c2, workload_learning=True)  # nothing learned
    assert not new_workload_routine(start_up, c2, True, namespace_max={})
    for more in (
        {"distinct_objects_read": 3.0},  # more than any quiet window of the namespace
        {"repo_reads": 2.0},
        {"secret_reads": 1.0},  # secrets never pass, whatever the namespace reads
    ):
        pod = _new_dependency(**more)
        assert not new_workload_routine(pod, c2, True, namespace_max=namespace), more


def test_a_new_workload_doing_more_than_calling_out_pages() -> None:
    c2 = _alert(["T1071"])
    # its own baseline has matured: judged as a replica, not as a new workload
    assert not new_workload_routine(_new_dependency(), c2, workload_learning=False)
    for more in (
        {"beacon_regularity": 0.8},  # a beat
        {"egress_new_destination_bytes": 5e6, "egress_external_bytes": 5e6},  # an upload
        {"egress_external_bytes": 2.4e8},  # ... to a host an earlier replica made known
        {"archive_writes": 1.0},
        {"secret_reads": 2.0},
        {"distinct_objects_read": 30.0},
        {"credentials_out_of_place": 1.0},
        {"container_starts": 1.0},
        {"new_destinations": 0.0},  # T1071 from something else
    ):
        assert not new_workload_routine(_new_dependency(**more), c2, workload_learning=True), more
    assert not new_workload_routine(_new_dependency(), _alert(["T1071", "T1213"]), True)
    assert not new_workload_routine(_new_dependency(), _alert(["T1071"], rules=["x"]), True)
    for owner in (None, "Job/cache-warmup-1"):  # a person's bare pod, a parallel Job's shards
        other = make_profile(workload=owner, values=_new_dependency().values)
        assert not new_workload_routine(other, c2, workload_learning=True), owner
    stranger = msgspec.structs.replace(_new_dependency(), strangers=["erin@corp.example"])
    assert not new_workload_routine(stranger, c2, workload_learning=True)


SHARED = {"files.pythonhosted.org", "s3.amazonaws.com"}


def _window(destinations: list[str], **values: float):
    """A notebook server's window: spawned by its namespace's hub, talking to the outside."""
    p = make_profile(workload=None, pod="jupyter-ann-1", values={"new_destinations": 1.0, **values})
    p = msgspec.structs.replace(p, created_by="system:serviceaccount:shop:jupyterhub")
    return msgspec.structs.replace(p, creator_kind="service_account", destinations=destinations)


def test_talking_only_to_the_clusters_shared_services_is_routine() -> None:
    assert shared_service_routine(
        _window(["files.pythonhosted.org"]), _alert(["T1071"]), SHARED.__contains__
    )
    archive = _alert(["T1560.002", "T1041"])
    assert shared_service_routine(_window(["s3.amazonaws.com"]), archive, SHARED.__contains__)


def test_a_rare_host_a_beacon_reads_or_a_persons_pod_pages() -> None:
    c2 = _alert(["T1071"])
    shared = SHARED.__contains__
    assert not shared_service_routine(_window(["s3.amazonaws.com", "evil.example"]), c2, shared)
    assert not shared_service_routine(_window([]), c2, shared)  # nothing to vouch for
    assert not shared_service_routine(
        _window(["s3.amazonaws.com"], beacon_regularity=0.9), c2, shared
    )
    assert not shared_service_routine(_window(["s3.amazonaws.com"]), _alert(["T1213"]), shared)
    assert not shared_service_routine(
        _window(["s3.amazonaws.com"]), _alert(["T1071"], ["g"]), shared
    )
    persons = msgspec.structs.replace(_window(["s3.amazonaws.com"]), creator_kind="person")
    assert not shared_service_routine(persons, c2, shared)
    whole = msgspec.structs.replace(
        _window(["s3.amazonaws.com"], lifetime_s=600.0), final=True, end_reason="deleted"
    )
    assert not shared_service_routine(whole, c2, shared)  # its destinations are one window's
    hijacked = msgspec.structs.replace(_window(["s3.amazonaws.com"]), first_seen=-86400.0)
    assert not shared_service_routine(hijacked, c2, shared)  # mid-life, not a start-up fetch


def test_a_person_ending_their_own_instance_is_routine() -> None:
    ended = terminated_instance(
        "arn:aws:sts::1:assumed-role/AWSReservedSSO_PlatformAdmin/dan@corp.example",
        {"deleted_by_person": 1.0, "new_identity": 1.0},
    )
    lifecycle = _alert(["T1578.003", "T1070"])
    assert own_instance_routine(ended, lifecycle)  # its launch is not held
    own = msgspec.structs.replace(ended, created_by=ended.deleted_by, creator_kind="person")
    assert own_instance_routine(own, lifecycle)  # a developer's test box, run and ended by them
    ran = msgspec.structs.replace(
        ended, created_by="arn:aws:iam::1:user/bob", creator_kind="person"
    )
    assert not own_instance_routine(ran, lifecycle)  # someone else's instance
    ci = msgspec.structs.replace(own, creator_kind="service_account")
    assert not own_instance_routine(ci, lifecycle)
    assert not own_instance_routine(own, _alert(["T1578.003", "T1213"]))  # it read something
    assert not own_instance_routine(own, _alert(["T1578.003"], rules=["g"]))  # a guard's story
    foreign = msgspec.structs.replace(own, values={"credentials_out_of_place": 1.0})
    assert not own_instance_routine(foreign, lifecycle)
    robot = msgspec.structs.replace(ended, deleter_kind="service_account")
    assert not own_instance_routine(robot, lifecycle)
    live = msgspec.structs.replace(own, final=False, end_reason="window")
    assert not own_instance_routine(live, lifecycle)
