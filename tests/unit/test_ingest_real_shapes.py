"""Real shapes of audit, Tetragon, identities, containers and attribution (issue 12, 4-7).

Real samples are read in place from ``../shared/data/real`` beside the checkout (CI clones
the repo with ``../shared`` beside it; ``CHURNGUARD_REAL_DATA`` points elsewhere, e.g.
from a git worktree, as in ``tests/conftest.py``). They are never copied into the repository.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sources_parse import accounted, mutated

from churnguard.config import Settings
from churnguard.ingest import AdapterContext, parse_record
from churnguard.ingest.common import MAX_GROUP_CHARS, MAX_IDP_GROUPS, classify_k8s_user
from churnguard.ingest.events import ActorKind, EventKind
from churnguard.pipeline import Pipeline
from shared_samples import REAL_DATA

ROOT = Path(__file__).resolve().parents[2]
REAL = REAL_DATA  # tests/shared_samples.py: ../shared beside the checkout


def real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real samples absent: {path} (clone ../shared beside the checkout)")
    return path


def lines(name: str) -> list[bytes]:
    return [line for line in real(name).read_bytes().splitlines() if line.strip()]


def outcomes(records: list[bytes]) -> Counter[str]:
    """What became of each record: event kinds, ignored reasons, dead-letter reasons."""
    seen: Counter[str] = Counter()
    for raw in records:
        parsed = parse_record(raw)
        seen.update(f"event:{e.kind}" for e in parsed.events)
        seen.update(f"ignored:{i.reason}" for i in parsed.ignored)
        seen.update(f"rejected:{r.reason}" for r in parsed.rejected)
    return seen


def events_of(record: dict) -> list:
    parsed = parse_record(orjson.dumps(record))
    assert not parsed.rejected and not parsed.ignored, parsed
    return parsed.events


def replay(records: list[bytes | str]) -> tuple[list, Pipeline]:
    pipe = Pipeline(Settings())
    out = pipe.ingest([])
    for raw in records:
        out.extend(pipe.process(raw))
    out.extend(pipe.finish())
    return out.profiles, pipe


# -- 4. Kubernetes audit variants -------------------------------------------------------------


def test_v1beta1_audit_with_only_timestamp_is_read_not_rejected() -> None:
    records = lines("audit2rbac/demo_v1beta1_757.log")
    assert len(records) == 757
    seen = outcomes(records)
    # system:admin (and bob, alice, ns1/sa1 impersonated by it) reading and listing:
    # no pod lifecycle in it, but every record is read, none is a dead letter.
    assert seen == {
        "ignored:stage:RequestReceived": 320,
        "ignored:not_pod_related": 313,
        "ignored:failed_request": 101,  # bob's 403s while audit2rbac learns his role
        "ignored:non_resource_url": 23,
    }


def test_v1beta1_timestamp_is_the_event_time() -> None:
    record = json.loads(lines("audit2rbac/demo_v1beta1_757.log")[0])
    record.update(verb="delete", responseStatus={"code": 200})
    record.pop("impersonatedUser")
    record["objectRef"].update(name="web-1")
    (event,) = parse_record(orjson.dumps(record)).events
    assert event.kind is EventKind.POD_DELETE
    assert event.time == 1505159705.0  # 2017-09-11T19:55:05Z, its only timestamp


def test_audit_without_api_version_or_kind_is_recognised_by_its_fields() -> None:
    folder = real("falco_k8s_audit_traces")
    seen: Counter[str] = Counter()
    for path in sorted(folder.glob("*.json")):
        seen += outcomes([line for line in path.read_bytes().splitlines() if line.strip()])
    assert seen == {
        "ignored:not_pod_related": 37,  # roles, bindings, config maps, namespaces...
        "event:pod_create": 10,
        "event:pod_exec": 2,  # exec and attach, audited only at ResponseStarted
        "ignored:control_plane": 2,
        "rejected:unknown_format": 1,  # fal_01_003.json is {"kind": 0}: broken on purpose
    }


def test_exec_at_response_started_and_complete_counts_once_in_any_order() -> None:
    started = json.loads(real("falco_k8s_audit_traces/exec_pod.json").read_text())
    assert started["stage"] == "ResponseStarted" and "apiVersion" not in started
    complete = dict(started, stage="ResponseComplete", stageTimestamp="2018-10-26T13:38:54Z")
    create = dict(
        started,
        auditID="create-1",
        stage="ResponseComplete",
        verb="create",
        objectRef={k: v for k, v in started["objectRef"].items() if k != "subresource"},
        requestURI="/api/v1/namespaces/default/pods",
        stageTimestamp="2018-10-26T13:30:00Z",
    )
    for order in ([create, started, complete], [create, complete, started]):
        profiles, pipe = replay([orjson.dumps(r) for r in order])
        execs = sum(p.values.get("exec_count", 0) for p in profiles)
        assert execs == 1, order
        assert pipe.stats["duplicate_actions"] == 1
    alone, _ = replay([orjson.dumps(create), orjson.dumps(started)])
    assert sum(p.values.get("exec_count", 0) for p in alone) == 1
    (event,) = parse_record(orjson.dumps(started)).events
    assert (event.args, event.detail, event.actor) == ("bash", "exec", "minikube-user")


def test_a_persons_identity_provider_groups_travel_with_their_actions() -> None:
    """Peers (features: a new person in a team the cluster knows) come from ``user.groups``
    without the API server's ``system:`` groups; hostile lists are bounded."""
    started = json.loads(real("falco_k8s_audit_traces/exec_pod.json").read_text())
    (plain,) = parse_record(orjson.dumps(started)).events
    assert plain.actor_kind is ActorKind.PERSON and plain.actor_groups == ()
    user = dict(started["user"], groups=["system:authenticated", "oidc:sre", "oidc:sre", ""])
    (sre,) = parse_record(orjson.dumps(dict(started, user=user))).events
    assert sre.actor_groups == ("oidc:sre",)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.text(max_size=400), st.integers(-(2**31), 2**31), st.none()),
        max_size=200,
    )
)
def test_hostile_group_lists_are_bounded_or_rejected_never_a_traceback(groups: list) -> None:
    started = json.loads(real("falco_k8s_audit_traces/exec_pod.json").read_text())
    user = dict(started["user"], groups=groups)
    parsed = parse_record(orjson.dumps(dict(started, user=user)))
    accounted(parsed)
    for event in parsed.events:
        assert len(event.actor_groups) <= MAX_IDP_GROUPS
        assert all(len(g) <= MAX_GROUP_CHARS + 1 for g in event.actor_groups)


def test_a_node_autoscalers_eviction_is_churn_not_a_workload_identity() -> None:
    """cluster-autoscaler (and Karpenter) drain the nodes they remove through the eviction
    subresource: an autoscaler, like the AWS side's, not another workload's identity."""
    started = json.loads(real("falco_k8s_audit_traces/exec_pod.json").read_text())
    ref = dict(started["objectRef"], subresource="eviction")
    for name in ("kube-system:cluster-autoscaler", "karpenter:karpenter"):
        sa = f"system:serviceaccount:{name}"
        user = {"username": sa, "groups": ["system:serviceaccounts", "system:authenticated"]}
        record = dict(started, stage="ResponseComplete", verb="create", user=user, objectRef=ref)
        (evicted,) = parse_record(orjson.dumps(record)).events
        assert evicted.kind is EventKind.POD_DELETE and evicted.detail == "eviction"
        assert evicted.actor_kind is ActorKind.AUTOSCALER and evicted.actor_groups == ()
    assert classify_k8s_user("system:serviceaccount:default:cluster-autoscaler") is (
        ActorKind.SERVICE_ACCOUNT  # only where its chart installs it
    )


def test_impersonation_acts_as_the_impersonated_user_and_keeps_the_real_one() -> None:
    # a real system:admin --as bob record, turned into a pod delete and an exec
    record = next(
        json.loads(line)
        for line in lines("audit2rbac/demo_v1beta1_757.log")
        if b'"impersonatedUser":{"username":"bob"' in line
    )
    record.update(verb="delete", responseStatus={"code": 200}, stage="ResponseComplete")
    record["objectRef"].update(name="web-1")
    (delete,) = parse_record(orjson.dumps(record)).events
    assert (delete.actor, delete.actor_kind, delete.actor_via) == (
        "bob",
        ActorKind.PERSON,
        "system:admin",
    )
    record["objectRef"]["subresource"] = "exec"
    record["verb"] = "create"
    profiles, _ = replay([orjson.dumps(record)])
    summaries = [e.summary for p in profiles for e in p.evidence]
    assert "exec by bob via system:admin" in summaries


def test_real_identities_are_told_apart_exactly() -> None:
    users: dict[str, frozenset[str]] = {}
    for name in ("k8s_audit_microk8s.jsonl", "audit2rbac/demo_v1beta1_757.log"):
        for line in lines(name):
            user = json.loads(line)["user"]
            users[user["username"]] = frozenset(user.get("groups") or ())
    kinds = {u: classify_k8s_user(u, g) for u, g in users.items()}
    assert kinds == {
        "system:kube-controller-manager": ActorKind.CONTROLLER,
        "system:kube-scheduler": ActorKind.CONTROLLER,
        "system:apiserver": ActorKind.CONTROLLER,  # in system:masters, still the apiserver
        "system:kube-proxy": ActorKind.CONTROLLER,
        "system:node:ubuntu-focal": ActorKind.NODE,
        "system:serviceaccount:kube-system:generic-garbage-collector": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:resourcequota-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:node-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:namespace-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:endpointslice-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:endpoint-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:replicaset-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:deployment-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:expand-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:statefulset-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:daemon-set-controller": ActorKind.CONTROLLER,
        "system:serviceaccount:kube-system:disruption-controller": ActorKind.CONTROLLER,
        "admin": ActorKind.PERSON,
        "system:admin": ActorKind.PERSON,  # the admin kubeconfig: a person
    }
    assert classify_k8s_user("kubernetes-admin") is ActorKind.PERSON
    assert classify_k8s_user("system:breakglass", {"system:masters"}) is ActorKind.PERSON
    assert classify_k8s_user("system:anonymous") is ActorKind.UNKNOWN
    assert classify_k8s_user("system:serviceaccount:kube-system:coredns") is (
        ActorKind.SERVICE_ACCOUNT
    )


# -- 5. Tetragon socket events ----------------------------------------------------------------


def tetragon_doc(name: str) -> dict:
    """One pretty-printed Tetragon documentation event, as ``json.load`` reads it."""
    with real(f"tetragon_docs/{name}.json").open() as f:
        return json.load(f)


def test_every_tetragon_doc_event_is_recognised_and_sockets_become_flows() -> None:
    seen: Counter[str] = Counter()
    for path in sorted(real("tetragon_docs").glob("00_*.json")):
        with path.open() as f:
            seen += outcomes([orjson.dumps(json.load(f))])
    assert seen == {
        "event:process_exec": 4,
        "event:process_exit": 4,
        "event:net_flow": 5,  # 2 connect, 2 close, 1 listen
        "event:file_write": 1,  # fd_install of a file (the existing kprobe mapping)
        "ignored:kprobe:__x64_sys_read": 1,  # a read hook: nothing the features use
    }


def test_tetragon_connect_is_a_new_destination_of_the_pod_and_teaches_its_ip() -> None:
    (event,) = events_of(tetragon_doc("00_four_golden_signals__process_connect"))
    assert event.kind is EventKind.NET_FLOW and event.opens_connection
    assert (event.namespace, event.pod, event.container) == (
        "tenant-jobs",
        "elasticsearch-56f8fc6988-pb8c7",
        "elasticsearch",
    )
    assert (event.dst_ip, event.dst_port, event.dst_external) == ("142.250.180.196", 80, True)
    assert event.pod_ip == "10.88.0.7"
    assert event.container_id and event.container_id.startswith("86eb9e29a77d")


def test_tetragon_close_carries_the_bytes_without_counting_a_second_connection() -> None:
    connect = tetragon_doc("00_four_golden_signals__process_connect")
    close = tetragon_doc("00_four_golden_signals__process_close")
    (closed,) = parse_record(orjson.dumps(close)).events
    assert (closed.bytes_out, closed.bytes_in, closed.opens_connection) == (78, 15221, False)
    (nc_close,) = events_of(tetragon_doc("00_process_lifecycle__nc_process_close"))
    assert (nc_close.bytes_out, nc_close.bytes_in) == (0, 0)  # its stats carry no byte counts
    (profile,) = [p for p in replay([orjson.dumps(connect), orjson.dumps(close)])[0]]
    assert profile.values["egress_external_bytes"] == 78
    assert profile.values["external_destinations"] == 1
    assert profile.destinations == ["142.250.180.196"]


def test_tetragon_listen_is_a_flow_event_of_the_container() -> None:
    (event,) = events_of(tetragon_doc("00_four_golden_signals__process_listen"))
    assert event.kind is EventKind.NET_FLOW and not event.opens_connection
    assert event.detail == "listen 0.0.0.0:9080 TCP"
    assert event.pod and event.dst_ip is None and event.bytes_out == 0


@pytest.mark.parametrize(
    "record",
    [
        {
            "process_throttle": {"type": "THROTTLE_START", "cgroup": "x"},
            "time": "2024-05-01T00:00:00Z",
        },
        {
            "rate_limit_info": {"number_of_dropped_process_events": "12"},
            "time": "2024-05-01T00:00:00Z",
        },
        {
            "process_usdt": {"process": {"binary": "/usr/bin/python3"}},
            "time": "2024-05-01T00:00:00Z",
        },
    ],
)
def test_other_tetragon_event_types_are_recognised_and_counted(record: dict) -> None:
    assert outcomes([orjson.dumps(record)]) == {f"ignored:event:{next(iter(record))}": 1}


# -- 7. Attribution: addresses learned from the records -----------------------------------------

FIXTURES = ROOT / "tests" / "fixtures" / "sources"


def cloudtrail_case(name: str) -> dict:
    return json.loads((FIXTURES / "cloudtrail.json").read_text())[name]


def test_default_cidrs_claim_no_range_and_configured_ones_are_a_hint() -> None:
    assert Settings().pipeline.cluster_cidrs == []
    ctx = AdapterContext()
    assert ctx.is_external("192.168.1.20") is False  # an office address is not the internet
    assert ctx.is_external("8.8.8.8") is True
    assert ctx.is_external("203.0.113.9") is True
    hinted = AdapterContext(cluster_cidrs=["203.0.113.0/24"])  # pods on public space
    assert hinted.is_external("203.0.113.9") is False


def test_an_office_address_is_nobodys_until_a_record_binds_it() -> None:
    # a real stratus call by an IAM user, made from an office/VPN address in 192.168/16,
    # beside a pod whose address the real Tetragon connect event teaches
    connect = tetragon_doc("00_four_golden_signals__process_connect")
    record = json.loads(
        real("stratus_detonation/aws.credential-access.ec2-get-password-data.json").read_text()
    )
    call = next(r for r in record if "errorCode" not in r)
    office = dict(call, sourceIPAddress="192.168.1.20", eventTime="2022-01-19T16:29:30Z")
    from_pod = dict(call, sourceIPAddress="10.88.0.7", eventTime="2022-01-19T16:29:40Z")
    profiles, pipe = replay([orjson.dumps(connect), orjson.dumps(office), orjson.dumps(from_pod)])
    (profile,) = profiles
    assert profile.entity.pod == "elasticsearch-56f8fc6988-pb8c7"
    assert profile.events == 2  # its connection and the call from its address
    assert pipe.stats["unattributed"] == 1  # the office call: counted, not a pod's


def test_run_instances_binds_the_private_ip_so_address_only_flows_and_calls_are_its() -> None:
    run = cloudtrail_case("run_by_person")  # two instances, 10.0.5.10 and 10.0.5.11
    flow = {
        "time": "2024-05-14T10:05:00Z",
        "src": {"ip": "10.0.5.11"},
        "dst": {"ip": "45.137.21.9", "port": 443},
        "protocol": "tcp",
        "bytes_out": 80_000_000,
    }
    call = dict(
        cloudtrail_case("person_list_from_public_ip"),
        sourceIPAddress="10.0.5.11",
        eventTime="2024-05-14T10:06:00Z",
    )
    profiles, pipe = replay([orjson.dumps(run), orjson.dumps(flow), orjson.dumps(call)])
    busy = [p for p in profiles if p.entity.instance_id == "i-0aaa1111bbbb22224"]
    assert sum(p.values.get("egress_external_bytes", 0) for p in busy) == 80_000_000
    assert sum(p.events for p in busy) == 3  # run, the flow and the call
    assert pipe.stats["unattributed"] == 0


def test_describe_instances_response_binds_addresses_when_present() -> None:
    describe = dict(
        cloudtrail_case("person_list_from_public_ip"),
        eventSource="ec2.amazonaws.com",
        eventName="DescribeInstances",
        responseElements={
            "reservationSet": {
                "items": [
                    {
                        "instancesSet": {
                            "items": [{"instanceId": "i-0ccc", "privateIpAddress": "10.0.9.9"}]
                        }
                    }
                ]
            }
        },
    )
    (event,) = events_of(describe)
    assert (event.kind, event.instance_id, event.pod_ip) == (
        EventKind.INSTANCE_IP,
        "i-0ccc",
        "10.0.9.9",
    )


# -- 6. Containers outside the orchestrator -----------------------------------------------------


def without_pod(record: dict, key: str) -> dict:
    """A real Tetragon event as a runtime container no pod accounts for reports it."""
    body = dict(record[key])
    body["process"] = {k: v for k, v in body["process"].items() if k != "pod"}
    body.pop("parent", None)
    return dict(record, **{key: body})


def test_a_container_id_without_a_pod_is_a_container_entity_of_its_node() -> None:
    connect = without_pod(
        tetragon_doc("00_four_golden_signals__process_connect"), "process_connect"
    )
    close = without_pod(tetragon_doc("00_four_golden_signals__process_close"), "process_close")
    (event,) = events_of(connect)
    assert (event.pod, event.namespace, event.node) == (None, None, "minikube")
    assert event.container_id == "86eb9e29a77d432afc7a15b4"  # process.docker
    profiles, _ = replay([orjson.dumps(connect), orjson.dumps(close)])
    (profile,) = profiles
    assert profile.entity.kind == "container"
    assert profile.entity.key() == "container/minikube/86eb9e29a77d"
    assert profile.values["egress_external_bytes"] == 78  # the pods' features, the same way
    assert "exec_count" in profile.values  # pod features apply to containers


def test_a_container_id_some_pod_claims_stays_that_pods() -> None:
    connect = tetragon_doc("00_four_golden_signals__process_connect")
    close = without_pod(tetragon_doc("00_four_golden_signals__process_close"), "process_close")
    profiles, _ = replay([orjson.dumps(connect), orjson.dumps(close)])
    assert [p.entity.kind for p in profiles] == ["pod"]
    assert profiles[0].values["egress_external_bytes"] == 78


def test_a_process_that_left_its_container_stays_the_pods() -> None:
    # the real exec of curl in a pod, as if it had nsenter'd to the host: the process has
    # no pod and no container id any more, its parent (still in the pod) has both
    record = tetragon_doc("00_four_golden_signals__process_exec")
    body = dict(record["process_exec"])
    body["process"] = {k: v for k, v in body["process"].items() if k not in ("pod", "docker")}
    (event,) = events_of(dict(record, process_exec=body))
    assert (event.namespace, event.pod) == ("tenant-jobs", "elasticsearch-56f8fc6988-pb8c7")
    body["parent"] = {k: v for k, v in body["parent"].items() if k != "pod"}
    (event,) = events_of(dict(record, process_exec=body))  # a container no pod accounts for
    assert (event.pod, event.container_id) == (None, "86eb9e29a77d432afc7a15b4")
    body.pop("parent")
    assert outcomes([orjson.dumps(dict(record, process_exec=body))]) == {"ignored:host_process": 1}


def test_falco_container_without_pod_is_a_container_of_its_host() -> None:
    record = json.loads(lines("falco_output.jsonl")[0])
    fields = {k: v for k, v in record["output_fields"].items() if not k.startswith("k8s.")}
    record.update(output_fields=fields, hostname="node-7", time="2021-06-13T19:35:58Z")
    profiles, _ = replay([orjson.dumps(record)])
    (profile,) = profiles
    assert profile.entity.key() == "container/node-7/788861c3cf83"


def test_simulated_container_escape_alerts_with_the_chain_in_the_evidence(tmp_path: Path) -> None:
    from churnguard.offline.replay import replay_files
    from churnguard.simulate import SimParams, generate, write
    from churnguard.wiring import make_pipeline

    sim = generate(SimParams(seed=5, hours=6, scenarios=("attack-container-escape",)))
    # the container (T1610) and the pod that escaped to start it (T1611)
    assert sim.labels and {lab["kind"] for lab in sim.labels} == {"container", "pod"}
    paths = write(sim, tmp_path)
    inputs = [str(p) for k, p in paths.items() if k not in ("labels", "summary")]
    settings = Settings()
    result = replay_files(inputs, settings, pipeline=make_pipeline(settings))
    for label in (lab for lab in sim.labels if lab["kind"] == "container"):
        key = f"container/{label['node']}/{label['container_id']}"
        alert = next(a for a in result.alerts if a.entity.key() == key)
        assert {"T1610", "T1611"} <= set(alert.techniques)
        assert alert.evidence[0].kind == "who"  # who, then the chain's records
        summaries = [e.summary for e in alert.evidence[1:]]
        assert summaries[0].startswith("started from pod ")
        assert "/usr/bin/ctr run" in summaries[0]
        assert any(s.startswith("connection to ") for s in summaries)


def test_container_guards_hold_for_containers_only() -> None:
    from churnguard.profiling.profile import EntityRef, Profile
    from churnguard.scoring.guards import fired

    def profile(entity: EntityRef, created_by: str | None) -> Profile:
        return Profile(
            entity=entity,
            window_start=0.0,
            window_end=300.0,
            final=False,
            end_reason="window",
            spec_version="1",
            values={},
            first_seen=0.0,
            last_seen=300.0,
            created_by=created_by,
        )

    container = EntityRef(kind="container", node="n1", container_ids=["abc"])
    assert [g.technique for g in fired(profile(container, None))] == ["T1610"]
    assert [g.technique for g in fired(profile(container, "ns/pod"))] == ["T1610", "T1611"]
    assert fired(profile(EntityRef(kind="pod", namespace="ns", pod="p"), "alice")) == []


# -- hostile variants of the new shapes -------------------------------------------------------


def _new_shapes() -> list[dict]:
    """The real records behind each new shape (skipped when the samples are absent)."""
    audit_dir = real("falco_k8s_audit_traces")
    records = [
        json.loads((audit_dir / "exec_pod.json").read_text()),  # no apiVersion, ResponseStarted
        next(
            json.loads(line)
            for line in lines("audit2rbac/demo_v1beta1_757.log")
            if b"impersonatedUser" in line and b'"ResponseComplete"' in line
        ),
        cloudtrail_case("run_by_person"),
    ]
    for path in sorted(real("tetragon_docs").glob("00_*.json")):
        with path.open() as f:
            record = json.load(f)
        records.append(record)
        key = next(k for k in record if k.startswith("process_"))
        records.append(without_pod(record, key))
    return records


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_new_shapes_are_events_ignored_or_dead_letters_never_errors(
    data: st.DataObject,
) -> None:
    record = mutated(data, data.draw(st.sampled_from(_new_shapes())))
    accounted(parse_record(orjson.dumps(record)))
