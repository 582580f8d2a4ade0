"""The simulator: deterministic per seed, real-shaped records, labels that point at telemetry."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from churnguard.cli import main
from churnguard.errors import ConfigError
from churnguard.ingest import parse_record
from churnguard.ingest.common import parse_time
from churnguard.simulate import FILES, SCENARIOS, SimParams, SimResult, generate, write
from churnguard.simulate.attacks import ATTACKER_USER
from churnguard.simulate.cluster import PEOPLE
from churnguard.simulate.lookalikes import SRES
from churnguard.simulate.records import DEVELOPERS_GROUP, PLATFORM_GROUP

PARAMS = SimParams(seed=3, hours=1.5, namespaces=12, attack_rate=60.0)
ARCHIVE_EXTS = (".tgz", ".tar.gz", ".gz", ".bz2", ".zip")


@pytest.fixture(scope="module")
def result() -> SimResult:
    return generate(PARAMS)


def _dir_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, result: SimResult) -> None:
    write(result, tmp_path / "a")
    write(generate(PARAMS), tmp_path / "b")
    other = SimParams(seed=4, hours=PARAMS.hours, namespaces=12, attack_rate=60.0)
    write(generate(other), tmp_path / "c")
    a, b, c = (_dir_bytes(tmp_path / d) for d in "abc")
    assert set(a) == {*FILES.values(), "labels.jsonl", "benign.jsonl", "summary.json"}
    assert a == b
    for name in FILES.values():
        assert a[name] != c[name], name


# Required fields per format, from the public shapes (dotted = nested).
_REQUIRED = {
    "k8s_audit": (
        "kind",
        "apiVersion",
        "level",
        "auditID",
        "stage",
        "requestURI",
        "verb",
        "user.username",
        "user.groups",
        "sourceIPs",
        "userAgent",
        "requestReceivedTimestamp",
        "stageTimestamp",
        "annotations",
    ),
    "cloudtrail": (
        "eventVersion",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "userIdentity.type",
        "userIdentity.arn",
        "userIdentity.accountId",
        "eventID",
        "eventType",
        "readOnly",
        "recipientAccountId",
        "managementEvent",
    ),
    "falco": (
        "output",
        "priority",
        "rule",
        "time",
        "source",
        "hostname",
        "output_fields.container.id",
        "output_fields.container.image.repository",
        "output_fields.k8s.ns.name",
        "output_fields.k8s.pod.name",
        "output_fields.proc.name",
        "output_fields.proc.cmdline",
        "output_fields.proc.pname",
        "output_fields.user.name",
        "output_fields.evt.type",
    ),
}
_TETRAGON_PROCESS = (
    "exec_id",
    "pid",
    "uid",
    "cwd",
    "binary",
    "arguments",
    "flags",
    "start_time",
    "parent_exec_id",
)
_TETRAGON_POD = (
    "pod.namespace",
    "pod.name",
    "pod.container.id",
    "pod.container.name",
    "pod.container.image.id",
    "pod.container.image.name",
    "pod.container.start_time",
    "pod.pod_labels",
    "docker",
)


def _get(obj: dict, dotted: str) -> object:
    """Nested lookup where Falco's dotted field names are keys themselves."""
    if dotted in obj:
        return obj[dotted]
    head, _, rest = dotted.partition(".")
    if not rest or not isinstance(obj.get(head), dict):
        raise KeyError(dotted)
    return _get(obj[head], rest)


def _has_all(record: dict, fields: tuple[str, ...]) -> list[str]:
    missing = []
    for f in fields:
        try:
            _get(record, f)
        except KeyError:
            missing.append(f)
    return missing


def test_required_fields_on_every_record(result: SimResult) -> None:
    for fmt, fields in _REQUIRED.items():
        assert result.records[fmt], fmt
        for r in result.records[fmt]:
            assert not _has_all(r, fields), (fmt, _has_all(r, fields), r)
    for r in result.records["k8s_audit"]:
        if r["stage"] == "ResponseComplete":
            assert "code" in r["responseStatus"]
        ref = r.get("objectRef", {})
        if (r["stage"], ref.get("resource"), r["verb"]) == (
            "ResponseComplete",
            "pods",
            "create",
        ) and "subresource" not in ref:
            pod = r["responseObject"]
            assert pod["metadata"]["uid"] and pod["spec"]["containers"][0]["image"]
            if "ownerReferences" in pod["metadata"]:
                assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    for r in result.records["cloudtrail"]:
        if r["eventName"] == "GetObject":
            assert {"bucketName", "key"} <= set(r["requestParameters"])
            assert r["eventCategory"] == "Data"
        if r["eventName"] == "RunInstances":
            assert r["responseElements"]["instancesSet"]["items"][0]["instanceId"]
    for r in result.records["tetragon"]:
        kind = next(k for k in r if k.startswith("process_"))
        assert {"node_name", "time"} <= set(r)
        process = r[kind]["process"]
        assert not _has_all(process, _TETRAGON_PROCESS), r
        if "pod" not in process:  # a host process, or a container no pod accounts for
            assert result.summary["scenarios"].get("attack-container-escape"), r
            continue
        assert not _has_all(process, _TETRAGON_POD), r
        assert process["pod"]["container"]["id"].startswith("containerd://")
        if kind == "process_kprobe":
            assert {"function_name", "args", "action", "policy_name"} <= set(r[kind])
        if kind == "process_exit":
            assert "status" in r[kind]
    for r in result.records["flow"]:
        if "flow" in r:  # Hubble
            assert not _has_all(
                r["flow"],
                ("time", "IP.source", "IP.destination", "source.namespace", "source.pod_name"),
            )
        else:
            assert not _has_all(
                r,
                (
                    "time",
                    "src.ip",
                    "src.namespace",
                    "src.pod",
                    "dst.ip",
                    "dst.port",
                    "protocol",
                    "bytes_out",
                    "bytes_in",
                ),
            )
            assert ("namespace" in r["dst"]) != ("fqdn" in r["dst"] or _public(r["dst"]["ip"]))


def _public(ip: str) -> bool:
    return not ip.startswith("10.")


_TIME_FIELD = {
    "k8s_audit": "stageTimestamp",
    "cloudtrail": "eventTime",
    "falco": "time",
    "tetragon": "time",
    "flow": "time",
}


def test_each_file_sorted_by_event_time(result: SimResult) -> None:
    for fmt, key in _TIME_FIELD.items():
        times = [parse_time(r[key], key) for r in result.records[fmt]]
        assert times == sorted(times), fmt
        assert min(times) >= parse_time(PARAMS.start, "start")


def test_every_record_parses_with_zero_rejected(result: SimResult) -> None:
    kinds: dict[str, set[str]] = {}
    for fmt, rows in result.records.items():
        for r in rows:
            parsed = parse_record(orjson.dumps(r))
            assert not parsed.rejected, (fmt, parsed.rejected)
            kinds.setdefault(fmt, set()).update(e.kind for e in parsed.events)
            assert all(e.format == fmt for e in parsed.events)
    assert {"pod_create", "pod_delete", "pod_exec", "pod_ip", "api_call"} <= kinds["k8s_audit"]
    assert {"instance_run", "instance_terminate", "cloud_call"} <= kinds["cloudtrail"]
    assert {"process_exec", "process_exit", "file_write", "net_flow"} <= kinds["tetragon"]
    assert {"process_exec", "file_write"} <= kinds["falco"]


def _audit_pods(result: SimResult) -> dict[tuple[str, str], list[dict]]:
    """Audit records about each pod (create/delete/exec), keyed by (namespace, name)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in result.records["k8s_audit"]:
        ref = r.get("objectRef") or {}
        if r["stage"] == "ResponseComplete" and ref.get("resource") == "pods" and "name" in ref:
            out.setdefault((ref["namespace"], ref["name"]), []).append(r)
    return out


def test_labels_reference_entities_in_the_telemetry(result: SimResult) -> None:
    pods = _audit_pods(result)
    created = {
        k
        for k, rs in pods.items()
        if any(r["verb"] == "create" and "subresource" not in r["objectRef"] for r in rs)
    }
    launched = {
        item["instanceId"]
        for r in result.records["cloudtrail"]
        if r["eventName"] == "RunInstances"
        for item in r["responseElements"]["instancesSet"]["items"]
    }
    containers = {
        (r["node_name"], r[k]["process"]["docker"][:12])
        for r in result.records["tetragon"]
        for k in r
        if k.startswith("process_") and "pod" not in r[k]["process"] and "docker" in r[k]["process"]
    }
    assert result.labels
    for lab in result.labels:
        assert lab["start"] <= lab["end"]
        if lab["kind"] == "pod":
            assert (lab["namespace"], lab["pod"]) in created, lab
            assert lab["instance_id"] is None
        elif lab["kind"] == "container":  # a runtime container no pod accounts for
            assert (lab["node"], lab["container_id"]) in containers, lab
            assert lab["pod"] is None and lab["instance_id"] is None
        else:
            assert lab["instance_id"] in launched and lab["pod"] is None
    # incarnations, not names: a StatefulSet pod deleted in a drain comes back by its name
    incarnations = sum(
        r["verb"] == "create" and "subresource" not in r["objectRef"]
        for rs in pods.values()
        for r in rs
    )
    assert result.summary["entities"] == {"pod": incarnations, "instance": len(launched)}
    assert result.summary["benign_entities"] == incarnations + len(launched) - len(
        {
            (lab["namespace"], lab["pod"], lab["instance_id"])
            for lab in result.labels
            if lab["kind"] != "container"  # not a pod or an instance of the summary's count
        }
    )


def test_attacks_leave_their_technique_behind(result: SimResult) -> None:
    pods = _audit_pods(result)
    writes: dict[str, set[str]] = {}
    for r in result.records["tetragon"]:
        body = r.get("process_kprobe")
        if body and body["function_name"] == "__x64_sys_write":
            pod = body["process"]["pod"]
            writes.setdefault(pod["name"], set()).add(body["args"][0]["file_arg"]["path"])
    external: dict[str, int] = {}
    for r in result.records["flow"]:
        if "src" in r and _public(r["dst"]["ip"]) and r["dst"].get("fqdn") != "s3.amazonaws.com":
            external[r["src"]["pod"]] = external.get(r["src"]["pod"], 0) + r["bytes_out"]
    seen = set()
    for lab in result.labels:
        seen.add(lab["technique"])
        if lab["technique"] == "T1578.003" and lab["kind"] == "pod":
            deletes = [r for r in pods[(lab["namespace"], lab["pod"])] if r["verb"] == "delete"]
            assert deletes and not deletes[0]["user"]["username"].startswith(
                "system:serviceaccount:kube-system:"
            )
            assert any(
                "subresource" in r["objectRef"] for r in pods[(lab["namespace"], lab["pod"])]
            )
        if lab["technique"] == "T1560.002":
            assert any(p.endswith(ARCHIVE_EXTS) for p in writes[lab["pod"]])
            assert external[lab["pod"]] > 10_000_000
    assert {"T1578.003", "T1213", "T1560.002", "T1071"} <= seen


def test_benign_churn_trips_the_static_rules() -> None:
    """Benign-only runs still delete pods within 5 minutes, write archives and egress big."""
    benign = generate(SimParams(seed=5, hours=1.0, namespaces=10, attack_rate=0.0))
    assert benign.labels == [] and benign.summary["benign_entities"] > 50
    deleters = {
        r["user"]["username"]
        for r in benign.records["k8s_audit"]
        if r["verb"] == "delete"
        and r["stage"] == "ResponseComplete"
        and r["objectRef"]["resource"] == "pods"
    }
    assert any(d.endswith("ttl-after-finished-controller") for d in deleters)
    assert any(d.endswith(":gitlab-runner") for d in deleters)
    archives = [
        r
        for r in benign.records["tetragon"]
        if "process_kprobe" in r
        and r["process_kprobe"]["args"][0]
        .get("file_arg", {})
        .get("path", "")
        .endswith(ARCHIVE_EXTS)
    ]
    assert archives
    assert max(r.get("bytes_out", 0) for r in benign.records["flow"]) > 50_000_000


def test_scenario_subset_and_unknown_names() -> None:
    only = generate(SimParams(seed=1, hours=1.0, namespaces=6, scenarios=("ci-runners",)))
    assert set(only.summary["scenarios"]) == {"ci-runners"}
    namespaces = {
        r["objectRef"]["namespace"]
        for r in only.records["k8s_audit"]
        if r["verb"] == "create" and r.get("objectRef", {}).get("resource") == "pods"
    }
    assert namespaces and all(only.summary["namespaces"][ns] == "ci" for ns in namespaces)
    assert not only.records["cloudtrail"]
    with pytest.raises(ConfigError, match="unknown scenario"):
        generate(SimParams(scenarios=("no-such-scenario",)))


def test_attack_minimum_from_six_hours() -> None:
    run = generate(SimParams(seed=11, hours=6, namespaces=8, attack_rate=0.01))
    names = {lab["scenario"] for lab in run.labels}
    assert {s.name for s in SCENARIOS if s.kind == "attack" and s.mix == "default"} <= names


def test_hard_mix_adds_lookalikes_and_adaptive_attacks_each_labelled_with_its_kind() -> None:
    run = generate(SimParams(seed=11, hours=8, namespaces=10, attack_rate=0.01, mix="hard"))
    hard = [s for s in SCENARIOS if s.mix == "hard"]
    assert {s.name for s in hard if s.kind == "attack"} <= {lab["scenario"] for lab in run.labels}
    kinds = set(run.benign.values())
    assert {"log-archivers", "ci-exec", "gitops-polling", "node-scale-down"} <= kinds
    assert run.summary["benign_kinds"] == {k: list(run.benign.values()).count(k) for k in kinds}
    malicious = {f"{lab['namespace']}/{lab['pod']}" for lab in run.labels if lab["pod"]}
    assert not malicious & set(run.benign)  # an attacked entity is never a benign one
    assert sum(run.summary["benign_kinds"].values()) == run.summary["benign_entities"]
    for fmt, rows in run.records.items():
        for r in rows:
            assert not parse_record(orjson.dumps(r)).rejected, fmt
    # people carry their identity provider's team: the platform team (admins, SREs)
    # operates the cluster; the attacks' phished developer account is in the developers'
    teams: dict[str, set[str]] = {}
    for r in run.records["k8s_audit"]:
        user = r["user"]
        if "@" in user["username"]:
            teams.setdefault(user["username"], set()).update(user["groups"])
    assert teams[ATTACKER_USER] == {DEVELOPERS_GROUP, "system:authenticated"}
    assert {u for u, g in teams.items() if PLATFORM_GROUP in g} >= {*SRES, *PEOPLE} & set(teams)
    # the default mix is unchanged by the hard scenarios' existence
    default = generate(SimParams(seed=11, hours=8, namespaces=10, attack_rate=0.01))
    assert not {s.name for s in hard} & set(default.summary["scenarios"])
    with pytest.raises(ConfigError, match="unknown mix"):
        generate(SimParams(mix="harder"))


def test_a_cluster_dated_ahead_of_the_wall_clock_is_refused() -> None:
    """The pipeline dead-letters events dated ahead of the wall clock (max_future_seconds):
    a simulated future would be all dead letters, so it is a clear error instead."""
    with pytest.raises(ConfigError, match="ahead of the wall"):
        generate(SimParams(seed=1, hours=1.0, start="2999-01-01T00:00:00Z"))


def test_cli_writes_files_and_lists_scenarios(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sim"
    args = [
        "simulate",
        "--out",
        str(out),
        "--seed",
        "2",
        "--hours",
        "0.5",
        "--namespaces",
        "4",
        "--scenario",
        "deployments",
        "cronjobs",
        "--scenario",
        "admin-debug",
        "--start",
        "2026-05-01T12:00:00Z",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 2 and summary["start"] == "2026-05-01T12:00:00Z"
    assert list(summary["scenarios"]) == ["deployments", "cronjobs", "admin-debug"]
    first = orjson.loads((out / "k8s_audit.jsonl").read_bytes().splitlines()[0])
    assert first["stageTimestamp"].startswith("2026-05-01T12:")
    assert "records" in capsys.readouterr().err
    assert main(["simulate", "--list-scenarios"]) == 0
    listed = capsys.readouterr().out
    assert all(s.name in listed for s in SCENARIOS)
    assert main(["simulate", "--out", str(out), "--scenario", "nope"]) == 2
