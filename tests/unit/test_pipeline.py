"""The core without I/O: entity lifecycle, windows, attribution and event-time invariance."""

from __future__ import annotations

import math
import random
from collections import Counter

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from churnguard.config import Settings
from churnguard.ingest.events import (
    ActorKind,
    ApiCategory,
    EntityKey,
    EntityKind,
    Event,
    EventKind,
)
from churnguard.ingest.watermark import Watermark, source_kind
from churnguard.offline.replay import summary_lines
from churnguard.pipeline import Pipeline
from churnguard.profiling.entities import IP_BINDING_LAG_S, EntityState, OldestPending

T0 = 1_772_409_600.0  # 2026-03-02T00:00:00Z


def ev(t: float, kind: EventKind, **kw) -> Event:
    kw.setdefault("format", "test")
    return Event(time=T0 + t, kind=kind, **kw)


def pod(name: str, ns: str = "web", **kw) -> dict:
    return {"namespace": ns, "pod": name, **kw}


def run(events: list[Event], pipeline: Pipeline | None = None) -> list:
    pipe = pipeline or Pipeline(Settings())
    out = pipe.ingest(events)
    out.extend(pipe.finish())
    return out.profiles


def short_lived_attack() -> list[Event]:
    return [
        ev(
            0,
            EventKind.POD_CREATE,
            **pod("dbg"),
            actor="mallory",
            actor_kind=ActorKind.PERSON,
            image="alpine:3.19",
        ),
        ev(2, EventKind.POD_IP, **pod("dbg"), pod_ip="10.1.2.3"),
        ev(
            30,
            EventKind.POD_EXEC,
            **pod("dbg"),
            actor="mallory",
            actor_kind=ActorKind.PERSON,
            detail="exec",
            args="sh -i",
        ),
        ev(31, EventKind.PROCESS_EXEC, **pod("dbg"), binary="/bin/sh", container_id="c1"),
        ev(
            40,
            EventKind.PROCESS_EXEC,
            **pod("dbg"),
            binary="/usr/bin/python3",
            args="-c import tarfile; tarfile.open('/tmp/x.tgz','w:gz').add('/data')",
        ),
        ev(41, EventKind.FILE_WRITE, **pod("dbg"), file_path="/tmp/x.tgz", bytes_written=5000),
        # flow attributed by pod IP only
        ev(
            50,
            EventKind.NET_FLOW,
            pod_ip="10.1.2.3",
            dst_ip="203.0.113.9",
            dst_port=443,
            bytes_out=80_000_000,
        ),
        ev(90, EventKind.POD_DELETE, **pod("dbg"), actor="mallory", actor_kind=ActorKind.PERSON),
    ]


def test_short_lived_pod_is_profiled_once_whole() -> None:
    profiles = run(short_lived_attack())
    assert len(profiles) == 1
    p = profiles[0]
    v = p.values
    assert p.final and p.end_reason == "deleted"
    assert v["lifetime_s"] == 90
    assert v["exec_to_delete_s"] == 60
    assert v["deleted_by_person"] == 1 and v["deleted_by_other_identity"] == 0
    assert v["exec_count"] == 1 and v["shell_spawned"] == 1
    assert v["archive_writes"] == 1 and v["archive_bytes"] == 5000
    assert v["egress_bytes"] == 80_000_000 == v["egress_external_bytes"]
    assert v["external_destinations"] == 1 and v["new_destinations"] == 1
    assert v["new_image"] == 1 and v["new_workload"] == 1  # bare pod
    assert p.deleted_by == "mallory" and p.deleter_kind == "person"
    kinds = [e.kind for e in p.evidence]
    assert "pod_delete" in kinds and "pod_exec" in kinds
    assert p.identities == ["mallory"] and p.creator_kind == "person"
    assert v["created_by_person"] == 1 and v["new_identity"] == 1


def test_an_identity_known_in_the_namespace_is_not_new() -> None:
    pipe = Pipeline(Settings())
    run(short_lived_attack(), pipe)  # mallory's first pod: nothing paged (no scorer)
    later = [
        msgspec.structs.replace(e, time=e.time + 3600, pod="dbg2" if e.pod else None)
        for e in short_lived_attack()
    ]
    later = [msgspec.structs.replace(e, pod_ip="10.1.2.4") if e.pod_ip else e for e in later]
    (p,) = run(later, pipe)
    assert p.values["new_identity"] == 0 and p.values["created_by_person"] == 1


def test_a_person_known_elsewhere_in_the_cluster_is_new_to_the_namespace_only() -> None:
    """An SRE debugging a namespace for the first time; a stranger is new to both."""
    pipe = Pipeline(Settings())
    run(short_lived_attack(), pipe)  # mallory's pod in "web": nothing paged (no scorer)

    def elsewhere(actor: str, dt: float) -> list[Event]:
        out = []
        for e in short_lived_attack():
            e = msgspec.structs.replace(e, time=e.time + dt)
            if e.pod:
                e = msgspec.structs.replace(e, namespace="shop", pod=f"dbg-{actor}")
            if e.pod_ip:
                e = msgspec.structs.replace(e, pod_ip=f"10.1.3.{int(dt) % 250}")
            if e.actor:
                e = msgspec.structs.replace(e, actor=actor)
            out.append(e)
        return out

    (known,) = run(elsewhere("mallory", 3600), pipe)
    assert known.values["new_identity"] == 1 and known.values["new_identity_in_cluster"] == 0
    (stranger,) = run(elsewhere("eve", 7200), pipe)
    assert stranger.values["new_identity_in_cluster"] == 1


def test_a_new_person_whose_team_operates_the_cluster_is_no_stranger() -> None:
    """An SRE's first debug pod in the cluster: two colleagues of their identity-provider
    group already act on pods quietly. A developer new to the cluster (a phished account),
    a service account or a person with no group is a stranger; a stranger stays one for
    the rest of the pod's life."""
    pipe = Pipeline(Settings())

    def debug(actor: str, dt: float, ns: str, groups: tuple[str, ...], **kw) -> list[Event]:
        out = []
        for e in short_lived_attack():
            e = msgspec.structs.replace(e, time=e.time + dt)
            if e.pod:
                e = msgspec.structs.replace(e, namespace=ns, pod=f"dbg-{actor.split(':')[-1]}")
            if e.pod_ip:
                e = msgspec.structs.replace(e, pod_ip=f"10.1.4.{int(dt / 3600)}")
            if e.actor:
                e = msgspec.structs.replace(e, actor=actor, actor_groups=groups, **kw)
            out.append(e)
        return out

    sre = ("oidc:platform-engineers",)
    (first,) = run(debug("maya", 0, "web", sre), pipe)
    assert first.strangers == ["maya"] and first.identity_groups == {"maya": list(sre)}
    run(debug("tomas", 3600, "web", sre), pipe)  # one colleague known: not yet a team
    (li,) = run(debug("li", 7200, "shop", sre), pipe)
    assert li.values["new_identity_in_cluster"] == 1 and li.strangers == []
    (erin,) = run(debug("erin", 10800, "shop", ("oidc:developers",)), pipe)
    assert erin.values["new_identity_in_cluster"] == 1 and erin.strangers == ["erin"]
    (nobody,) = run(debug("zed", 14400, "shop", ()), pipe)
    assert nobody.strangers == ["zed"]
    token = "system:serviceaccount:ci:gitlab-runner"
    (sa,) = run(debug(token, 18000, "shop", (), actor_kind=ActorKind.SERVICE_ACCOUNT), pipe)
    assert sa.strangers == [token]


def test_a_pod_starting_a_container_on_its_node_and_a_hub_culling_its_own_pod() -> None:
    hub = {"actor": "system:serviceaccount:web:jupyterhub", "actor_kind": ActorKind.SERVICE_ACCOUNT}
    events = [
        ev(0, EventKind.POD_CREATE, **pod("jupyter-frank"), **hub),
        ev(
            20,
            EventKind.PROCESS_EXEC,
            **pod("jupyter-frank"),
            binary="/usr/bin/nsenter",
            args="-t 1 -m -- bash",
        ),
        ev(
            21,
            EventKind.PROCESS_EXEC,
            **pod("jupyter-frank"),
            binary="/usr/bin/ctr",
            args="run -d --net-host alpine:3.19 x sh",
        ),
        ev(90, EventKind.POD_DELETE, **pod("jupyter-frank"), **hub),
    ]
    (p,) = run(events)
    assert p.values["container_starts"] == 1
    assert p.values["deleted_by_other_identity"] == 0  # its creator culled it
    other = {"actor": "system:serviceaccount:ci:runner", "actor_kind": ActorKind.SERVICE_ACCOUNT}
    renamed = [msgspec.structs.replace(e, pod="jupyter-x") for e in events[:-1]]
    (q,) = run([*renamed, ev(90, EventKind.POD_DELETE, **pod("jupyter-x"), **other)])
    assert q.values["deleted_by_other_identity"] == 1


def test_runtime_event_without_namespace_is_attributed_by_container_id() -> None:
    profiles = run(
        [
            ev(
                0,
                EventKind.PROCESS_EXEC,
                **pod("falco-74htl", ns="monitoring"),
                container_id="a98c2aa8e670" + "f" * 52,
                binary="/usr/bin/falco",
            ),
            # Falco without k8s.ns.name: only the pod name and the 12-character container id
            ev(
                20,
                EventKind.PROCESS_EXEC,
                pod="falco-74htl",
                container_id="a98c2aa8e670",
                binary="/bin/bash",
            ),
        ]
    )
    (p,) = profiles
    assert p.entity.namespace == "monitoring"
    assert p.values["shell_spawned"] == 1 and p.values["distinct_binaries"] == 2


def test_long_running_pod_is_profiled_every_window() -> None:
    events = [ev(0, EventKind.POD_CREATE, **pod("api-1"), workload="ReplicaSet/api-5d8f7c9b6")]
    events += [
        ev(60 * m + 5, EventKind.NET_FLOW, **pod("api-1"), dst_ip="10.0.0.9", bytes_out=1000)
        for m in range(17)
    ]
    profiles = run(events)
    windows = [(p.window_start - T0, p.window_end - T0, p.final) for p in profiles]
    assert windows[:3] == [(0, 300, False), (300, 600, False), (600, 900, False)]
    assert windows[-1][2] and profiles[-1].end_reason == "end_of_input"
    assert [p.values["egress_bytes"] for p in profiles] == [5000, 5000, 5000, 2000]
    assert profiles[0].entity.workload == "Deployment/api"
    assert all(p.values["lifetime_s"] == 86400.0 for p in profiles)  # not 'short-lived'


def test_a_short_life_is_scored_whole_when_it_ends() -> None:
    """Issue 13: an instance's or pod's story cut into windows must not hide it; when a
    short-lived entity ends, its final profile carries the whole life's totals."""
    events = [ev(0, EventKind.POD_CREATE, **pod("job-1"), workload="Job/export-1")]
    events += [
        ev(60 * m + 5, EventKind.NET_FLOW, **pod("job-1"), dst_ip="203.0.113.7", bytes_out=1000)
        for m in range(17)
    ]
    events.append(ev(1030, EventKind.POD_DELETE, **pod("job-1"), actor="x", actor_kind="person"))
    profiles = run(events)
    assert [p.final for p in profiles] == [False, False, False, True]
    assert [p.values["egress_external_bytes"] for p in profiles] == [5000, 5000, 5000, 17000]
    assert profiles[-1].values["lifetime_s"] == 1030
    assert profiles[-1].values["external_destinations"] == 1  # a distinct count: not summed


def test_instance_run_and_terminate_by_one_person() -> None:
    events = [
        ev(
            0,
            EventKind.INSTANCE_RUN,
            instance_id="i-0abc",
            actor="arn:user/bob",
            actor_kind=ActorKind.PERSON,
        ),
        ev(
            100,
            EventKind.CLOUD_CALL,
            instance_id="i-0abc",
            verb="GetObject",
            api_category=ApiCategory.REPO_READ,
            object_name="b/k1",
        ),
        ev(
            250,
            EventKind.INSTANCE_TERMINATE,
            instance_id="i-0abc",
            actor="arn:user/bob",
            actor_kind=ActorKind.PERSON,
        ),
    ]
    (p,) = run(events)
    assert p.end_reason == "terminated"
    assert p.entity.kind == "instance" and p.entity.instance_id == "i-0abc"
    assert p.values["run_and_terminate_same_identity"] == 1
    assert p.values["lifetime_s"] == 250 and p.values["repo_reads"] == 1
    assert "exec_count" not in p.values  # pod-only feature


def test_autoscaler_churn_is_not_same_identity() -> None:
    auto = {"actor": "autoscaling", "actor_kind": ActorKind.AUTOSCALER}
    (p,) = run(
        [
            ev(0, EventKind.INSTANCE_RUN, instance_id="i-1", **auto),
            ev(300, EventKind.INSTANCE_TERMINATE, instance_id="i-1", **auto),
        ]
    )
    assert p.values["run_and_terminate_same_identity"] == 0


def test_a_late_event_is_applied_to_its_entity_while_it_is_held() -> None:
    pipe = Pipeline(Settings())
    pipe.ingest(
        [ev(0, EventKind.POD_CREATE, **pod("a")), ev(1000, EventKind.POD_CREATE, **pod("b"))]
    )
    out = pipe.ingest([ev(10, EventKind.POD_EXEC, **pod("a"))])  # 990 s behind the newest
    assert (pipe.stats["late.applied.test"], pipe.stats["late_events"]) == (1, 0)
    assert out.late == [("test", "applied")] and out.rejected == []
    out.extend(pipe.finish())
    execs = [p.values["exec_count"] for p in out.profiles if p.entity.pod == "a"]
    assert sum(execs) == 1  # the late exec is in a's next profile, not lost
    # its window [0, 300) was already emitted; no profile of that window is made twice
    windows = [(p.window_start, p.window_end) for p in out.profiles if p.entity.pod == "a"]
    assert len(windows) == len(set(windows))


def test_a_late_event_whose_entity_is_gone_is_a_dead_letter_with_reason_late() -> None:
    pipe = Pipeline(Settings())
    pipe.ingest(
        [
            ev(0, EventKind.POD_CREATE, **pod("a")),
            ev(100, EventKind.POD_DELETE, **pod("a"), actor="x", actor_kind=ActorKind.PERSON),
            ev(1000, EventKind.POD_CREATE, **pod("b")),
        ]
    )
    out = pipe.ingest(
        [ev(50, EventKind.POD_EXEC, **pod("a")), ev(20, EventKind.POD_EXEC, **pod("never"))]
    )
    assert [r.reason for r in out.rejected] == ["late", "late"]
    assert "behind the watermark" in out.rejected[0].detail
    assert out.late == [("test", "dead_letter")] * 2
    assert pipe.stats["late_events"] == pipe.stats["late.dead_letter.test"] == 2
    # the run summary says so in plain words, per source
    lines = summary_lines(pipe.stats, 0, 0)
    assert "2 test events arrived later than the allowed lateness and were dead-lettered" in (
        "\n".join(lines)
    )


def test_recreated_statefulset_pod_is_a_new_incarnation() -> None:
    sts = pod("db-0", workload="StatefulSet/db")
    profiles = run(
        [
            ev(0, EventKind.POD_CREATE, **sts),
            ev(100, EventKind.POD_DELETE, **sts, actor="sts", actor_kind=ActorKind.CONTROLLER),
            ev(140, EventKind.POD_CREATE, **sts),
            ev(200, EventKind.POD_EXEC, **sts),
        ]
    )
    assert [p.end_reason for p in profiles] == ["deleted", "end_of_input"]
    assert profiles[0].values["lifetime_s"] == 100
    assert profiles[1].values["exec_count"] == 1


def _poller_that_sleeps() -> list[Event]:
    """A Deployment's pod that calls out once every 70 min: each call comes after the idle
    expiry, and only its creation (long before) names its owner."""
    web = pod("poller-7d9f8c6b5-x2x9q", pod_uid="u1")
    calls = [
        ev(
            10 + 4200 * i,
            EventKind.PROCESS_EXEC,
            **pod("poller-7d9f8c6b5-x2x9q"),
            binary="/app/poll",
        )
        for i in range(3)
    ]
    return [
        ev(
            0,
            EventKind.POD_CREATE,
            **web,
            workload="ReplicaSet/poller-7d9f8c6b5",
            actor="rs",
            actor_kind=ActorKind.CONTROLLER,
            image="poller:1",
        ),
        *calls,
        ev(8500, EventKind.POD_DELETE, **web, actor="rs", actor_kind=ActorKind.CONTROLLER),
    ]


def test_a_pod_expired_while_idle_is_the_same_pod_when_it_wakes_up() -> None:
    pipe = Pipeline(Settings())
    profiles = run(_poller_that_sleeps(), pipe)
    assert [p.end_reason for p in profiles] == ["window", "window", "deleted"]
    assert profiles[1].window_start == T0 + 4210  # a fresh state, woken by its next call
    for p in profiles:  # its owner, image and creator carry over each expiry
        assert (p.entity.workload, p.entity.image, p.created_by) == (
            "Deployment/poller",
            "poller:1",
            "rs",
        )
        assert p.entity.uid == "u1"
    last = profiles[-1]
    assert last.values["lifetime_s"] == 8500  # since its creation, not since it woke up
    assert last.values["new_workload"] == 0  # not a bare pod nor a new workload


def test_a_pod_created_under_a_sleeping_pods_name_is_a_new_pod() -> None:
    sts = pod("db-0", workload="StatefulSet/db")
    profiles = run(
        [
            ev(
                0,
                EventKind.POD_CREATE,
                **sts,
                pod_uid="old",
                actor="sts",
                actor_kind=ActorKind.CONTROLLER,
            ),
            ev(5000, EventKind.POD_CREATE, **pod("db-0"), pod_uid="new"),
            ev(5100, EventKind.POD_EXEC, **pod("db-0")),
        ]
    )
    assert [p.entity.uid for p in profiles] == ["old", "new"]
    assert profiles[1].created_by is None and profiles[1].entity.workload is None


def test_snapshot_restore_keeps_a_sleeping_pods_identity() -> None:
    events = _poller_that_sleeps()
    first = Pipeline(Settings())
    out = first.ingest(events[:3])
    second = Pipeline(Settings())
    second.restore(first.snapshot())
    out.extend(second.ingest(events[3:]))
    out.extend(second.finish())
    assert _encode(out.profiles) == _encode(run(events))


def _random_cluster(seed: int) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(25):
        name = f"p{i}"
        start = rng.uniform(0, 3000)
        life = rng.choice([30, 200, 900, 2500])
        ip = f"10.2.0.{i}"
        events.append(
            ev(
                start,
                EventKind.POD_CREATE,
                **pod(name, ns=f"ns{i % 3}"),
                workload=f"ReplicaSet/w{i % 4}-abcdef12",
                image=f"img{i % 5}:1",
            )
        )
        events.append(ev(start + 1, EventKind.POD_IP, **pod(name, ns=f"ns{i % 3}"), pod_ip=ip))
        for _ in range(rng.randint(1, 30)):
            t = start + rng.uniform(2, life)
            kind = rng.choice(
                [
                    EventKind.NET_FLOW,
                    EventKind.PROCESS_EXEC,
                    EventKind.POD_EXEC,
                    EventKind.CLOUD_CALL,
                ]
            )
            if kind is EventKind.NET_FLOW:
                events.append(
                    ev(
                        t,
                        kind,
                        pod_ip=ip,
                        dst_ip=f"198.51.100.{rng.randint(1, 4)}",
                        bytes_out=rng.randint(1, 10**6),
                    )
                )
            elif kind is EventKind.CLOUD_CALL:
                events.append(
                    ev(
                        t,
                        kind,
                        pod_ip=ip,
                        verb="GetObject",
                        api_category=ApiCategory.REPO_READ,
                        object_name=f"b/{rng.randint(1, 50)}",
                    )
                )
            else:
                events.append(
                    ev(
                        t,
                        kind,
                        **pod(name, ns=f"ns{i % 3}"),
                        binary=f"/bin/{rng.choice(['sh', 'tar', 'app'])}",
                        args="czf /tmp/o.tgz /d",
                    )
                )
        if life < 2000:
            events.append(
                ev(
                    start + life,
                    EventKind.POD_DELETE,
                    **pod(name, ns=f"ns{i % 3}"),
                    actor="rs",
                    actor_kind=ActorKind.CONTROLLER,
                )
            )
    return sorted(events, key=lambda e: e.time)


def _encode(profiles: list) -> list[bytes]:
    return [msgspec.json.encode(p) for p in profiles]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffling_within_lateness_gives_identical_features(seed: int) -> None:
    events = _random_cluster(seed)
    lateness = Settings().pipeline.allowed_lateness_seconds or 60.0
    rng = random.Random(seed + 100)
    shuffled = sorted(events, key=lambda e: e.time + rng.uniform(0, 0.9 * lateness))
    assert shuffled != events
    base = run(events)
    assert len(base) > 25
    # feed one event at a time too, so the watermark moves in many small steps
    pipe = Pipeline(Settings())
    out = pipe.ingest([])
    for e in shuffled:
        out.extend(pipe.ingest([e]))
    out.extend(pipe.finish())
    assert pipe.stats["late_events"] == 0
    assert _encode(out.profiles) == _encode(base)


def test_snapshot_restore_mid_stream_gives_identical_output() -> None:
    events = _random_cluster(7)
    base = run(events)
    half = len(events) // 2
    first = Pipeline(Settings())
    out = first.ingest(events[:half])
    second = Pipeline(Settings())
    second.restore(first.snapshot())
    out.extend(second.ingest(events[half:]))
    out.extend(second.finish())
    assert _encode(out.profiles) == _encode(base)


def test_inputs_read_at_different_speeds_do_not_make_each_other_late() -> None:
    """A Kafka shard reads several topics; one may run hours ahead of another."""
    from churnguard.ingest.events import Origin

    audit, runtime = Origin(source="audit", partition=0), Origin(source="runtime", partition=0)
    pipe = Pipeline(Settings())
    pipe.expect_sources(["audit[0]", "runtime[0]"])
    ahead = [ev(t, EventKind.POD_CREATE, **pod(f"p{t}"), origin=audit) for t in range(0, 7200, 60)]
    out = pipe.ingest(ahead)  # the audit topic is consumed two hours ahead
    assert out.profiles == []  # nothing is due while the runtime input has said nothing
    behind = [ev(30, EventKind.PROCESS_EXEC, **pod("p0"), binary="/bin/sh", origin=runtime)]
    out.extend(pipe.ingest(behind))
    assert pipe.stats["late_events"] == 0
    out.extend(pipe.set_idle(["runtime[0]"]))  # runtime caught up: audit alone drives time
    first = next(p for p in out.profiles if p.entity.pod == "p0")
    assert first.values["shell_spawned"] == 1


def test_a_cloudtrail_file_after_its_topic_was_caught_up_is_not_late() -> None:
    """Live, a CloudTrail topic is read to its end between two files (every ~5 minutes, their
    events 5-15 minutes old) while the audit topic keeps flowing. Caught up must not let the
    audit topic alone move the watermark: the next file's run-and-terminate would be late,
    and a new instance is nobody the table holds, so it would be a dead letter."""
    from churnguard.ingest.events import Origin

    audit, trail = Origin(source="audit", partition=0), Origin(source="cloudtrail", partition=0)
    person = {"actor": "arn:user/bob", "actor_kind": ActorKind.PERSON, "format": "cloudtrail"}
    pipe = Pipeline(Settings())
    pipe.expect_sources(["audit[0]", "cloudtrail[0]"])
    out = pipe.ingest([ev(0, EventKind.CLOUD_CALL, instance_id="i-old", origin=trail, **person)])
    out.extend(pipe.set_idle(["cloudtrail[0]"]))  # the first file read: caught up
    out.extend(
        pipe.ingest(
            [ev(t, EventKind.POD_CREATE, **pod(f"p{t}"), origin=audit) for t in range(0, 1500, 60)]
        )
    )
    assert pipe.watermark <= T0 + 1440 - 900  # held back by CloudTrail's lateness
    run_and_delete = [  # the next file: ten minutes behind the audit topic's newest event
        ev(840, EventKind.INSTANCE_RUN, instance_id="i-0abc", origin=trail, **person),
        ev(900, EventKind.INSTANCE_TERMINATE, instance_id="i-0abc", origin=trail, **person),
    ]
    out.extend(pipe.ingest(run_and_delete))
    out.extend(pipe.finish())
    assert pipe.stats["late_events"] == 0 and not out.rejected
    (instance,) = [p for p in out.profiles if p.entity.instance_id == "i-0abc"]
    assert instance.end_reason == "terminated"
    assert instance.values["run_and_terminate_same_identity"] == 1


def test_a_caught_up_input_holds_the_watermark_by_its_lateness_not_its_newest_event() -> None:
    from churnguard.ingest.events import Origin

    clock = Watermark(60.0, {"cloudtrail": 900.0})
    clock.expect(["audit[0]", "cloudtrail[0]", "runtime[0]"])
    trail, audit = Origin(source="cloudtrail", partition=0), Origin(source="audit", partition=0)
    runtime = Origin(source="runtime", partition=0)
    clock.observe(Event(time=0.0, kind=EventKind.CLOUD_CALL, format="cloudtrail", origin=trail))
    clock.observe(Event(time=100.0, kind=EventKind.PROCESS_EXEC, format="tetragon", origin=runtime))
    clock.observe(Event(time=2000.0, kind=EventKind.POD_CREATE, format="k8s_audit", origin=audit))
    assert clock.value == 0.0 - 900.0  # CloudTrail, read, holds it 900 s behind its newest
    clock.set_idle(["cloudtrail[0]", "runtime[0]"])  # both caught up: each held back by its
    # lateness behind the newest record anywhere (was: audit alone, 2000 - 60)
    assert clock.value == 2000.0 - 900.0
    clock.observe(Event(time=3000.0, kind=EventKind.POD_CREATE, format="k8s_audit", origin=audit))
    assert clock.value == 3000.0 - 900.0
    clock.set_idle(["cloudtrail[0]", "runtime[0]", "audit[0]"])  # all caught up: as before
    assert clock.value == 3000.0 - 900.0


def test_a_record_dated_in_the_future_is_a_dead_letter_and_does_not_blind_the_shard() -> None:
    """One record dated years ahead (a node's clock, or a line a container printed in a flow
    record's shape into a log shipper's stream) used to carry the watermark there for good:
    every record after it was late, a shard blind for good."""
    import time

    from churnguard.ingest.events import Origin

    flows, audit = Origin(source="flows", partition=0), Origin(source="audit", partition=0)
    now = time.time()
    pipe = Pipeline(Settings())
    pipe.expect_sources(["flows[0]", "audit[0]"])
    out = pipe.ingest(
        [
            ev(now - T0 - 600 + i, EventKind.POD_CREATE, **pod(f"p{i}"), origin=audit)
            for i in range(5)
        ]
    )
    forged = ev(
        now - T0 + 5 * 365 * 86400,
        EventKind.NET_FLOW,
        **pod("p0"),
        dst_ip="203.0.113.9",
        origin=flows,
    )
    skewed = ev(now - T0 + 120, EventKind.NET_FLOW, **pod("p1"), dst_ip="203.0.113.9", origin=flows)
    out.extend(pipe.ingest([forged, skewed]))
    out.extend(pipe.set_idle(["audit[0]"]))
    assert [r.reason for r in out.rejected] == ["future"]  # the skewed clock's 120 s: taken
    assert "ahead of the wall clock" in out.rejected[0].detail
    assert pipe.stats["rejected.future"] == 1
    assert pipe.watermark <= time.time()  # event time counts up to the wall clock only
    later = [
        ev(now - T0 - 300 + i, EventKind.POD_DELETE, **pod(f"p{i}"), origin=audit) for i in range(5)
    ]
    out.extend(pipe.ingest(later))
    assert pipe.stats["late_events"] == 0 and pipe.stats["rejected.future"] == 1


def test_event_time_counts_toward_the_watermark_only_up_to_the_wall_clock() -> None:
    from churnguard.ingest.events import Origin

    wall = [1000.0]
    clock = Watermark(60.0, {}, wall=lambda: wall[0])
    runtime = Origin(source="runtime", partition=0)
    assert clock.ahead_of_wall(900.0) == 0.0 and clock.ahead_of_wall(1030.0) == 30.0
    clock.observe(
        Event(time=5000.0, kind=EventKind.PROCESS_EXEC, format="tetragon", origin=runtime)
    )
    assert clock.value == 1000.0 - 60.0
    wall[0] = 2000.0  # the clock moves on: so may event time
    clock.observe(
        Event(time=1900.0, kind=EventKind.PROCESS_EXEC, format="tetragon", origin=runtime)
    )
    assert clock.value == 1900.0 - 60.0
    clock.progress("routed[0]", 9000.0)  # a router's marker: the same bound
    assert clock.max_time == 2000.0


def test_entity_cap_profiles_the_idlest_early() -> None:
    settings = Settings()
    settings.pipeline.max_entities = 50
    pipe = Pipeline(settings)
    creates = [ev(i, EventKind.POD_CREATE, **pod(f"p{i}")) for i in range(120)]
    # events are folded into entity states once the watermark has passed them, so one
    # record five minutes on is needed to route all 120
    out = pipe.ingest([*creates, ev(300, EventKind.POD_CREATE, **pod("later"))])
    assert len(pipe.table.states) <= 50
    evicted = [p for p in out.profiles if p.end_reason == "evicted"]
    assert evicted and pipe.stats["evicted"] >= 70
    assert {p.entity.pod for p in evicted} >= {"p0", "p1"}  # the idlest went first


class _PagesOn:
    """A scorer that pages on the pods it is told to (and learns nothing itself)."""

    def __init__(self, pods: set[str]) -> None:
        self.pods = pods

    def score(self, profiles: list) -> list:
        from churnguard.scoring.scorer import Scored

        return [
            Scored(p, 1.0, 0.5, "test", "-", alert=object() if p.entity.pod in self.pods else None)  # type: ignore[arg-type]
            for p in profiles
        ]


def _contact(pod_name: str, t: float, host: str = "203.0.113.9") -> list[Event]:
    return [
        ev(t, EventKind.POD_CREATE, **pod(pod_name), actor="rs", actor_kind=ActorKind.CONTROLLER),
        ev(t + 1, EventKind.NET_FLOW, **pod(pod_name), dst_ip=host, dst_port=443, bytes_out=500),
    ]


def _new_destinations(pages_on: set[str]) -> dict[str, float]:
    pipe = Pipeline(Settings(), scorer=_PagesOn(pages_on))  # type: ignore[arg-type]
    out = pipe.ingest([*_contact("first", 0.0), *_contact("second", 900.0)])
    out.extend(pipe.finish())
    rows = [s.profile for s in out.scored if s.profile.values["external_destinations"]]
    return {p.entity.pod: p.values["new_destinations"] for p in rows}


def test_a_window_that_paged_does_not_make_its_destination_known() -> None:
    # a quiet first contact teaches the namespace the host; the second pod's use is not new
    assert _new_destinations(set()) == {"first": 1.0, "second": 0.0}
    # the first contact paged (an exfil host): the next intrusion reusing it is still new
    assert _new_destinations({"first"}) == {"first": 1.0, "second": 1.0}


class _KeepsHosts(_PagesOn):
    """Pages on nothing; the learning gate keeps the hosts it is told to from the memory."""

    def __init__(self, hosts: list[str]) -> None:
        super().__init__(set())
        self.hosts = hosts

    def score(self, profiles: list) -> list:
        return [msgspec.structs.replace(s, kept_hosts=self.hosts) for s in super().score(profiles)]


def test_a_host_the_learning_gate_keeps_from_the_memory_stays_new() -> None:
    """A learning-period exfil host (LearningGate.kept_from_memory) is not taught by the
    window that shipped to it, though nothing paged; its other hosts are."""
    pipe = Pipeline(Settings(), scorer=_KeepsHosts(["203.0.113.9"]))  # type: ignore[arg-type]
    first = _contact("first", 0.0)
    first.append(
        ev(2, EventKind.NET_FLOW, **pod("first"), dst_ip="198.51.100.5", dst_port=443, bytes_out=9)
    )
    out = pipe.ingest([*first, *_contact("second", 900.0)])
    out.extend(pipe.finish())
    news = {s.profile.entity.pod: s.profile.values["new_destinations"] for s in out.scored}
    assert news["first"] == 2.0 and news["second"] == 1.0  # 203.0.113.9 is still new
    third = Pipeline(Settings(), scorer=_KeepsHosts(["203.0.113.9"]))  # type: ignore[arg-type]
    out = third.ingest([*first, *_contact("second", 900.0, host="198.51.100.5")])
    out.extend(third.finish())
    news = {s.profile.entity.pod: s.profile.values["new_destinations"] for s in out.scored}
    assert news["second"] == 0.0  # the other host was taught


@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), max_size=50),
            st.integers(min_value=0, max_value=60),
        ),
        max_size=6,
    )
)
def test_the_oldest_pending_time_kept_up_equals_the_minimum(steps: list) -> None:
    """Appends are measured from where the last look stopped; a replaced list afresh;
    short lists and long ones (kept up) alike."""
    state = EntityState(key=EntityKey(EntityKind.POD, "web", "a"), anchor=T0)
    # a busy entity's backlog, later than every generated event: the long lists' path
    state.pending = [ev(2e4, EventKind.NET_FLOW, **pod("a")) for _ in range(40)]
    oldest = OldestPending()
    for times, cut in steps:
        for t in times:
            state.pending.append(ev(t, EventKind.NET_FLOW, **pod("a")))
            assert oldest.of(state) == min(e.time for e in state.pending)
        if cut < len(state.pending):  # a window emitted: the rest is a new list
            state.pending = state.pending[cut + 1 :]
        if state.pending:
            assert oldest.of(state) == min(e.time for e in state.pending)


def _idle_server() -> list[Event]:
    """A hub's server: created, a read, idle over an hour (state forgotten), a read again."""
    hub = {
        "actor": "system:serviceaccount:data:jupyterhub",
        "actor_kind": ActorKind.SERVICE_ACCOUNT,
    }
    me = pod("jupyter-frank", ns="data", image="quay.io/jupyter/scipy-notebook:1", pod_uid="u-1")
    return [
        ev(0, EventKind.POD_CREATE, **me, **hub),
        ev(60, EventKind.PROCESS_EXEC, **me, binary="/opt/conda/bin/pip", args="install x"),
        ev(3 * 3600, EventKind.PROCESS_EXEC, **me, binary="/opt/conda/bin/python3", args="-c 1"),
    ]


def test_a_pod_forgotten_after_an_idle_hour_keeps_who_it_is() -> None:
    pipe = Pipeline(Settings())
    profiles = run(_idle_server(), pipe)
    assert [p.end_reason for p in profiles] == ["window", "end_of_input"]
    assert pipe.table._tombstones  # forgotten in between: the second is a new state
    first, woken = profiles
    assert woken.created_by == first.created_by == "system:serviceaccount:data:jupyterhub"
    assert woken.creator_kind == "service_account"
    assert woken.entity.image == first.entity.image and woken.entity.uid == "u-1"
    assert woken.values["lifetime_s"] > 3 * 3600 - 60  # born at its creation, not its waking
    # a new pod of that name (its own create, or another uid) is not the forgotten one
    events = _idle_server()
    other = msgspec.structs.replace(events[-1], pod_uid="u-2")
    assert run([*events[:-1], other])[-1].created_by is None
    recreated = msgspec.structs.replace(events[0], time=events[-1].time, actor="bob@corp.example")
    assert run([*events[:-1], recreated, events[-1]])[-1].created_by == "bob@corp.example"


def test_a_forgotten_pods_identity_survives_a_snapshot() -> None:
    events = _idle_server()
    first = Pipeline(Settings())
    out = first.ingest(events[:-1])
    out.extend(first.ingest([ev(2 * 3600, EventKind.NET_FLOW, namespace="other", pod="x")]))
    assert first.table._dormant  # the server is forgotten, its identity kept
    second = Pipeline(Settings())
    second.restore(first.snapshot())
    out.extend(second.ingest(events[-1:]))
    out.extend(second.finish())
    woken = [p for p in out.profiles if p.entity.pod == "jupyter-frank"][-1]
    assert woken.created_by == "system:serviceaccount:data:jupyterhub"


def _next_due_with_builtins(pipe: Pipeline, state: EntityState) -> float:
    """``Pipeline._next_due`` as it was written with ``min``/``max``: the yardstick."""
    due = state.last_seen + pipe.idle_s
    if state.deleted_at is not None:
        due = min(due, state.deleted_at)
    if state.pending:
        start = state.window_start()
        first = min(e.time for e in state.pending)
        first = first if state.emitted_until is None else max(first, state.emitted_until)
        k = max(0, math.floor((first - start) / pipe.window_s))
        due = min(due, start + (k + 1) * pipe.window_s)
    return due + IP_BINDING_LAG_S


_offsets = st.floats(-2e4, 2e4, allow_nan=False) | st.sampled_from([0.0, -0.0, 300.0, -300.0])


@given(
    last_seen=_offsets,
    deleted=st.none() | _offsets,
    emitted=st.none() | _offsets,
    pending=st.lists(_offsets, max_size=40),
)
def test_next_due_by_compares_is_the_builtins_due(last_seen, deleted, emitted, pending) -> None:
    pipe = Pipeline(Settings())
    state = EntityState(key=EntityKey(EntityKind.POD, "web", "a"), anchor=T0)
    state.last_seen = T0 + last_seen
    state.deleted_at = None if deleted is None else T0 + deleted
    state.emitted_until = None if emitted is None else T0 + emitted
    state.pending = [ev(t, EventKind.NET_FLOW, **pod("a")) for t in pending]
    assert pipe._next_due(state) == _next_due_with_builtins(pipe, state)


@given(st.lists(st.tuples(st.floats(0, 1e5), st.sampled_from(["falco", "cloudtrail"]))))
def test_watermark_running_maxima_are_the_builtins(events) -> None:
    clock = Watermark(30.0, {"cloudtrail": 600.0})
    max_time, seen, floor = -math.inf, 0.0, -math.inf
    for t, fmt in events:
        clock.observe(Event(time=T0 + t, kind=EventKind.NET_FLOW, format=fmt))
        max_time = max(max_time, T0 + t)
        seen = max(seen, clock.lateness_of(source_kind(fmt)))
        floor = max(floor, max_time - seen)
        assert (clock.max_time, clock.value) == (max_time, floor)


@given(
    st.lists(st.tuples(st.sampled_from(["records", "profiles", "late_events"]), st.integers(0, 3)))
)
def test_stats_count_as_a_counter_does(counts: list[tuple[str, int]]) -> None:
    """The stats are counted in a plain dict; what they read (and a checkpoint keeps) is what
    a Counter's ``+=`` gave: a name added 0 is present, a name never counted reads 0."""
    pipe, reference = Pipeline(Settings()), Counter()
    for name, n in counts:
        pipe._count(name, n)
        reference[name] += n
    assert list(pipe.stats.items()) == list(reference.items())
    assert pipe.stats["never.counted"] == 0
    second = Pipeline(Settings())
    second.restore(pipe.snapshot())
    assert list(second.stats.items()) == list(reference.items())
