"""Each format's mapping, on real exporter samples and on hand-written schema fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from churnguard.ingest import AdapterContext, Parsed, parse_record
from churnguard.ingest.events import ActorKind, ApiCategory, EventKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def case(fmt: str, name: str, ctx: AdapterContext | None = None) -> Parsed:
    record = json.loads((FIXTURES / "sources" / f"{fmt}.json").read_text())[name]
    return parse_record(orjson.dumps(record), ctx=ctx)


def only_event(parsed: Parsed):
    assert not parsed.rejected and not parsed.ignored, parsed
    assert len(parsed.events) == 1, parsed.events
    return parsed.events[0]


def ignored_reason(parsed: Parsed) -> str:
    assert not parsed.events and not parsed.rejected, parsed
    assert len(parsed.ignored) == 1
    return parsed.ignored[0].reason


# -- real samples -------------------------------------------------------------------------


def test_real_microk8s_audit_is_all_accounted_for_without_inventing_pods(real_data: Path) -> None:
    reasons: Counter[str] = Counter()
    events = []
    lines = (real_data / "k8s_audit_microk8s.jsonl").read_bytes().splitlines()
    for n, line in enumerate(lines, start=1):
        parsed = parse_record(line)
        assert not parsed.rejected, (n, parsed.rejected)
        assert parsed.events or parsed.ignored, n
        reasons.update(i.reason for i in parsed.ignored)
        events.extend(parsed.events)
    assert len(lines) == 2971
    # The log has no pod create/delete/exec and no workload pod API calls: only the
    # control plane (controllers, kubelet, scheduler, apiserver) and an admin's kubectl.
    assert events == []
    assert reasons == {
        "stage:RequestReceived": 1484,
        "stage:ResponseStarted": 111,
        "control_plane": 917,  # incl. 30 node-controller pods/status updates without podIP
        "non_resource_url": 442,  # /api, /apis, /healthz, /livez, /openapi ...
        "failed_request": 9,  # 500s on discovery, 409 conflicts
        "not_pod_related": 5,  # admin's kubectl get/list
        "verb:watch": 3,
    }


def test_real_falco_lines_map_to_process_exec_in_their_container(real_data: Path) -> None:
    first, second = (
        only_event(parse_record(line))
        for line in (real_data / "falco_output.jsonl").read_bytes().splitlines()
    )
    assert first.kind is EventKind.PROCESS_EXEC
    assert (first.container_id, first.namespace, first.pod) == (
        "788861c3cf83",
        "default",
        "alpine-deployment-77789455d6-m7flp",
    )
    assert (first.binary, first.args, first.image) == ("sh", "sh -c uptime", "alpine")
    assert first.time == pytest.approx(1623612958.532086161)
    # No k8s.ns.name printed: the namespace stays unknown (None), never guessed; the
    # entity table resolves the pod through its container id.
    assert second.namespace is None
    assert (second.container_id, second.pod, second.binary) == (
        "a98c2aa8e670",
        "falco-74htl",
        "bash",
    )
    assert second.detail == "Terminal shell in container"


def test_real_tetragon_execs_carry_pod_and_stripped_container_id(real_data: Path) -> None:
    events = [
        only_event(parse_record(line))
        for line in (real_data / "tetragon_events.jsonl").read_bytes().splitlines()
    ]
    assert [e.kind for e in events] == [EventKind.PROCESS_EXEC] * 3
    first = events[0]
    assert (first.namespace, first.pod, first.container) == ("default", "tiefighter", "spaceship")
    assert first.container_id == "19a02291e106ce6227b684197be232ea57c4e1a5ab2604a12608c325d701c7f4"
    # The first record has no top-level time: process.start_time stands in.
    assert first.time == pytest.approx(1666062978.273546829)
    assert events[1].time == pytest.approx(1666062981.373327754)
    assert (events[1].binary, events[1].args) == ("/starwars-docker", "--port 80 --host 0.0.0.0")
    assert events[1].labels["pod-template-hash"] == "6f87496b94"


def test_real_hubble_host_flows_are_ignored_not_rejected(real_data: Path) -> None:
    reasons = [
        ignored_reason(parse_record(line))
        for line in (real_data / "hubble_flows.jsonl").read_bytes().splitlines()
    ]
    assert reasons == ["no_pod_on_source"] * 3


# -- Kubernetes audit ---------------------------------------------------------------------


def test_audit_pod_create_at_request_response_level_takes_the_pod_object() -> None:
    e = only_event(case("k8s_audit", "pod_create_request_response"))
    assert e.kind is EventKind.POD_CREATE
    assert (e.namespace, e.pod, e.pod_uid) == (
        "shop",
        "web-5d8f7c9b6-x2x9q",
        "3f1c2a8e-5b7d-4c1e-9a0f-1d2e3f4a5b6c",
    )
    assert e.workload == "ReplicaSet/web-5d8f7c9b6"
    assert (e.service_account, e.node, e.container) == ("web", "node-1", "web")
    assert e.image == "registry.example.com/shop/web:1.4.2"
    assert e.labels == {"app": "web", "pod-template-hash": "5d8f7c9b6"}
    assert e.actor_kind is ActorKind.CONTROLLER
    assert e.time == pytest.approx(1715680801.12)


def test_audit_generate_name_create_gets_the_name_from_the_response() -> None:
    e = only_event(case("k8s_audit", "pod_create_generate_name"))
    assert (e.namespace, e.pod, e.workload) == (
        "ops",
        "backup-28590000-7kq2p",
        "Job/backup-28590000",
    )
    assert e.actor == "system:serviceaccount:kube-system:job-controller"
    assert e.actor_kind is ActorKind.CONTROLLER


def test_audit_pod_create_without_any_name_is_ignored() -> None:
    assert ignored_reason(case("k8s_audit", "pod_create_metadata_without_name")) == (
        "pod_create_without_name"
    )


def test_audit_exec_is_about_the_target_pod_with_the_decoded_command() -> None:
    e = only_event(case("k8s_audit", "pods_exec_by_person"))
    assert e.kind is EventKind.POD_EXEC
    assert (e.namespace, e.pod, e.detail) == ("shop", "web-5d8f7c9b6-x2x9q", "exec")
    assert e.args == "sh -c cat /etc/passwd"
    assert (e.actor, e.actor_kind) == ("alice@example.com", ActorKind.PERSON)


def test_audit_eviction_and_delete_are_pod_deletes_by_the_caller() -> None:
    eviction = only_event(case("k8s_audit", "pods_eviction_by_person"))
    delete = only_event(case("k8s_audit", "pod_delete_by_person"))
    assert eviction.kind is delete.kind is EventKind.POD_DELETE
    assert eviction.detail == "eviction" and delete.detail is None
    assert delete.pod_uid == "3f1c2a8e-5b7d-4c1e-9a0f-1d2e3f4a5b6c"
    assert delete.actor_kind is ActorKind.PERSON


def test_audit_status_patch_with_pod_ip_binds_ip_to_pod() -> None:
    e = only_event(case("k8s_audit", "pod_status_patch_with_ip"))
    assert e.kind is EventKind.POD_IP
    assert (e.namespace, e.pod, e.pod_ip) == ("shop", "web-5d8f7c9b6-x2x9q", "10.1.2.3")
    assert e.pod_uid == "3f1c2a8e-5b7d-4c1e-9a0f-1d2e3f4a5b6c"


def test_audit_pod_api_call_via_bound_token_names_the_pod() -> None:
    e = only_event(case("k8s_audit", "pod_reads_secret_via_bound_token"))
    assert e.kind is EventKind.API_CALL
    assert (e.namespace, e.pod, e.service_account) == ("shop", "web-5d8f7c9b6-x2x9q", "web")
    assert e.pod_uid == "3f1c2a8e-5b7d-4c1e-9a0f-1d2e3f4a5b6c"
    assert (e.verb, e.resource, e.object_name) == ("get", "secrets", "shop/db-credentials")
    assert e.api_category is ApiCategory.SECRET_READ


def test_audit_service_account_call_without_pod_name_is_attributed_to_its_namespace() -> None:
    e = only_event(case("k8s_audit", "pod_lists_configmaps_by_service_account"))
    assert (e.namespace, e.pod, e.service_account) == ("shop", None, "web")
    assert e.api_category is ApiCategory.LIST


@pytest.mark.parametrize(
    ("name", "reason"),
    [("pod_watch_is_ignored", "verb:watch"), ("failed_delete_is_ignored", "failed_request")],
)
def test_audit_watches_and_failures_are_ignored(name: str, reason: str) -> None:
    assert ignored_reason(case("k8s_audit", name)) == reason


def test_audit_event_list_adapts_each_item_and_keeps_bad_ones_apart() -> None:
    cases = json.loads((FIXTURES / "sources" / "k8s_audit.json").read_text())
    good = {
        k: v for k, v in cases["pod_delete_by_person"].items() if k not in ("kind", "apiVersion")
    }
    doc = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [good, {"stage": 3}, 7]}
    parsed = parse_record(orjson.dumps(doc))
    assert [e.kind for e in parsed.events] == [EventKind.POD_DELETE]
    assert sorted(r.reason for r in parsed.rejected) == ["bad_value", "not_an_object"]


# -- CloudTrail ---------------------------------------------------------------------------


def test_cloudtrail_run_and_terminate_by_a_person() -> None:
    run = case("cloudtrail", "run_by_person")
    assert [(e.kind, e.instance_id) for e in run.events] == [
        (EventKind.INSTANCE_RUN, "i-0aaa1111bbbb22223"),
        (EventKind.INSTANCE_RUN, "i-0aaa1111bbbb22224"),
    ]
    assert {(e.actor, e.actor_kind) for e in run.events} == {
        ("arn:aws:iam::111122223333:user/alice", ActorKind.PERSON)
    }
    term = only_event(case("cloudtrail", "terminate_by_person"))
    assert (term.kind, term.instance_id) == (EventKind.INSTANCE_TERMINATE, "i-0aaa1111bbbb22223")
    assert term.time == 1715681370.0


@pytest.mark.parametrize("name", ["run_by_autoscaler", "terminate_by_autoscaler"])
def test_cloudtrail_autoscaler_lifecycle(name: str) -> None:
    e = only_event(case("cloudtrail", name))
    assert e.instance_id == "i-0ccc3333dddd44445"
    assert e.actor_kind is ActorKind.AUTOSCALER


def test_cloudtrail_s3_read_from_a_pod_ip_is_a_repo_read_mapped_by_role() -> None:
    ctx = AdapterContext(role_map={"shop-web-irsa": "shop/web"})
    e = only_event(case("cloudtrail", "s3_getobject_from_pod_ip", ctx))
    assert e.kind is EventKind.CLOUD_CALL
    assert (e.pod_ip, e.namespace, e.service_account) == ("10.1.2.3", "shop", "web")
    assert (e.verb, e.resource, e.object_name) == (
        "GetObject",
        "s3",
        "shop-invoices/2024/05/invoice-0042.pdf",
    )
    assert e.api_category is ApiCategory.REPO_READ
    assert e.actor_kind is ActorKind.SERVICE_ACCOUNT
    unmapped = only_event(case("cloudtrail", "s3_getobject_from_pod_ip"))
    assert (unmapped.pod_ip, unmapped.namespace) == ("10.1.2.3", None)


def test_cloudtrail_instance_role_call_is_attributed_to_the_instance() -> None:
    e = only_event(case("cloudtrail", "instance_role_secret_read"))
    assert (e.kind, e.instance_id, e.actor_kind) == (
        EventKind.CLOUD_CALL,
        "i-0a1b2c3d4e5f60718",
        ActorKind.INSTANCE,
    )
    assert (e.api_category, e.object_name) == (ApiCategory.SECRET_READ, "prod/db/password")


def test_cloudtrail_terminate_by_an_instance_is_also_its_destructive_call() -> None:
    parsed = case("cloudtrail", "terminate_by_instance_role")
    kinds = {e.kind: e for e in parsed.events}
    assert set(kinds) == {EventKind.INSTANCE_TERMINATE, EventKind.CLOUD_CALL}
    assert kinds[EventKind.INSTANCE_TERMINATE].instance_id == "i-0eee5555ffff66667"
    call = kinds[EventKind.CLOUD_CALL]
    assert (call.instance_id, call.api_category) == (
        "i-0a1b2c3d4e5f60718",
        ApiCategory.CLOUD_DESTRUCTIVE,
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [("access_denied", "error:AccessDenied"), ("person_list_from_public_ip", "unattributed_call")],
)
def test_cloudtrail_errors_and_unattributable_calls_are_ignored(name: str, reason: str) -> None:
    assert ignored_reason(case("cloudtrail", name)) == reason


def test_cloudtrail_records_file_is_split_into_items() -> None:
    cases = json.loads((FIXTURES / "sources" / "cloudtrail.json").read_text())
    doc = {"Records": [cases["run_by_person"], cases["access_denied"], {"eventName": "X"}]}
    parsed = parse_record(orjson.dumps(doc))
    assert len(parsed.events) == 2 and len(parsed.ignored) == 1
    assert [r.reason for r in parsed.rejected] == ["missing_field"]


# -- Tetragon -----------------------------------------------------------------------------


def test_tetragon_kprobe_file_write_needs_the_write_mask() -> None:
    e = only_event(case("tetragon", "kprobe_file_write_permission"))
    assert (e.kind, e.file_path, e.binary) == (
        EventKind.FILE_WRITE,
        "/tmp/loot.tar.gz",
        "/usr/bin/python3",
    )
    assert e.container_id.startswith("8f2b7c0d1e4a") and "://" not in e.container_id
    assert e.workload == "Deployment/web"
    assert ignored_reason(case("tetragon", "kprobe_file_read_permission")) == (
        "kprobe:security_file_permission:read"
    )
    sized = only_event(case("tetragon", "kprobe_sys_write_with_size"))
    assert sized.bytes_written == 65536


def test_tetragon_tcp_hooks_become_flows_with_external_destination() -> None:
    connect = only_event(case("tetragon", "kprobe_tcp_connect"))
    assert connect.kind is EventKind.NET_FLOW
    assert (connect.dst_ip, connect.dst_port, connect.dst_external) == ("203.0.113.7", 443, True)
    assert (connect.pod_ip, connect.bytes_out) == ("10.1.2.3", 0)
    send = only_event(case("tetragon", "kprobe_tcp_sendmsg"))
    assert send.bytes_out == 1048576


@pytest.mark.parametrize(
    ("name", "reason"),
    [("kprobe_other_hook", "kprobe:cap_capable"), ("host_process_exec", "host_process")],
)
def test_tetragon_unused_hooks_and_host_processes_are_ignored(name: str, reason: str) -> None:
    assert ignored_reason(case("tetragon", name)) == reason


def test_tetragon_process_exit() -> None:
    e = only_event(case("tetragon", "process_exit"))
    assert (e.kind, e.binary, e.time) == (EventKind.PROCESS_EXIT, "/usr/bin/tar", 1715682059.5)


# -- flows --------------------------------------------------------------------------------


def test_hubble_pod_flow_to_world() -> None:
    e = only_event(case("flows", "hubble_pod_to_world"))
    assert (e.namespace, e.pod, e.pod_ip, e.workload) == (
        "shop",
        "web-5d8f7c9b6-x2x9q",
        "10.1.2.3",
        "Deployment/web",
    )
    assert (e.dst_ip, e.dst_port, e.dst_fqdn, e.dst_external) == (
        "93.184.216.34",
        443,
        "example.com",
        True,
    )


def test_hubble_dropped_flow_still_counts_and_replies_do_not() -> None:
    dropped = only_event(case("flows", "hubble_dropped_pod_to_pod"))
    assert (dropped.detail, dropped.dst_external) == ("DROPPED", False)
    assert ignored_reason(case("flows", "hubble_reply_from_pod")) == "reply"


def test_generic_flow_carries_bytes_and_externality() -> None:
    egress = only_event(case("flows", "generic_egress_with_bytes"))
    assert (egress.bytes_out, egress.bytes_in, egress.dst_external) == (52428800, 2048, True)
    assert (egress.container_id, egress.pod_ip) == ("8f2b7c0d1e4a", "10.1.2.3")
    internal = only_event(case("flows", "generic_in_cluster"))
    assert internal.dst_external is False and internal.time == 1715682660.5
    bad = case("flows", "generic_negative_bytes")
    assert [r.reason for r in bad.rejected] == ["bad_value"] and "bytes_out" in bad.rejected[
        0
    ].detail


# -- Falco --------------------------------------------------------------------------------


def test_falco_write_rule_is_a_file_write_and_a_read_rule_stays_an_alert() -> None:
    write = only_event(case("falco", "write_below_etc"))
    assert (write.kind, write.file_path) == (EventKind.FILE_WRITE, "/etc/cron.d/x")
    read = only_event(case("falco", "read_sensitive_file"))
    assert (read.kind, read.detail) == (EventKind.RUNTIME_ALERT, "Read sensitive file untrusted")
    assert ignored_reason(case("falco", "host_event")) == "host_event"


@pytest.mark.parametrize(
    ("address", "cidrs", "internal"),
    [
        ("10.1.2.3", [], True),
        ("[fd00::5]", [], True),
        ("127.0.0.1", [], False),  # loopback is nobody's pod
        ("::1", [], False),
        ("8.8.8.8", [], False),
        ("8.8.8.8", ["8.8.8.0/24"], True),  # a cluster on public address space
        ("not-an-ip", [], False),
        ("", [], False),
        (None, [], False),
    ],
)
def test_internal_address_rule_is_cached_per_address_and_ranges(
    address: str | None, cidrs: list[str], internal: bool
) -> None:
    """The cached rule answers the same for the same address under other ranges."""
    ctx = AdapterContext(cluster_cidrs=cidrs)
    assert ctx.is_internal_address(address) is internal
    assert ctx.is_internal_address(address) is internal
    assert AdapterContext().is_internal_address(address) is (internal and not cidrs)
