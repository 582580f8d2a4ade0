"""Small, deterministic k8s-audit streams for the Kafka tests (real audit.k8s.io/v1 shape).

Each pod is created by its ReplicaSet controller and deleted by a person a few minutes
later, in a handful of namespaces, so every pod ends in a final profile within the stream
and the stand-in scorer has something to alert on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from churnguard.ingest import parse_record
from churnguard.simulate import SimParams, generate, write

T0 = 1_715_680_800.0  # 2024-05-14T10:00:00Z


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit(verb: str, namespace: str, pod: str, t: float, user: str) -> dict:
    """One ResponseComplete audit event on a pod."""
    meta = {"name": pod, "namespace": namespace, "uid": f"uid-{namespace}-{pod}"}
    event: dict = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": f"{verb}-{namespace}-{pod}",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user},
        "objectRef": {"resource": "pods", "namespace": namespace, "apiVersion": "v1"},
        "responseStatus": {"code": 201 if verb == "create" else 200},
        "requestReceivedTimestamp": _ts(t),
        "stageTimestamp": _ts(t),
    }
    if verb == "create":
        meta["labels"] = {"app": pod.rsplit("-", 1)[0]}
        event["responseObject"] = {"kind": "Pod", "apiVersion": "v1", "metadata": meta}
    else:
        event["objectRef"]["name"] = pod
    return event


def pod_stream(
    pods: int, namespaces: int = 4, *, start: float = T0, first: int = 0
) -> list[tuple[str, bytes]]:
    """``(namespace, record)`` pairs: create then delete of ``pods`` pods, in time order;
    ``first`` numbers them on from an earlier stream (names and times continue)."""
    rows: list[tuple[float, str, dict]] = []
    for i in range(first, first + pods):
        ns = f"ns-{i % namespaces}"
        pod = f"app{i % 7}-{i}"
        born = start + i * 2.0
        rows.append((born, ns, audit("create", ns, pod, born, _RS)))
        rows.append((born + 240.0, ns, audit("delete", ns, pod, born + 240.0, "alice")))
    rows.sort(key=lambda r: r[0])
    return [(ns, orjson.dumps(doc)) for _, ns, doc in rows]


_RS = "system:serviceaccount:kube-system:replicaset-controller"


# two hours past the simulation a record per namespace closes every window, as live
# traffic would; end-of-input profiling is a replay-only notion
SENTINEL_DELAY_S = 7200.0


def sentinels(sim, namespaces: set[str]) -> list[dict]:
    """One pod create per namespace two hours past a simulation: it closes every window."""
    last = max(r["stageTimestamp"] for r in sim.records["k8s_audit"])
    t = datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(seconds=SENTINEL_DELAY_S)
    stamp = t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return [
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": f"sentinel-{ns}",
            "stage": "ResponseComplete",
            "requestURI": f"/api/v1/namespaces/{ns}/pods",
            "verb": "create",
            "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "objectRef": {"resource": "pods", "namespace": ns, "name": "sentinel"},
            "responseStatus": {"code": 201},
            "requestReceivedTimestamp": stamp,
            "stageTimestamp": stamp,
        }
        for ns in sorted(namespaces)
    ]


@dataclass
class SimulatedDay:
    """A simulated cluster as files (for replay) and as two topics' records (for serve)."""

    files: list[str]  # the JSONL files replay reads, sentinels included
    topics: dict[str, list[tuple[str, dict]]]  # topic -> (format, record), event-time order
    sentinels: list[bytes]


def simulated_day(
    tmp_path: Path, audit_topic: str, runtime_topic: str, *, seed: int = 5, hours: float = 3.0
) -> SimulatedDay:
    """Audit and CloudTrail on one topic, Falco, Tetragon and flows on the other, each
    topic's exporters interleaved in event time as a shipper writing them live would."""
    sim = generate(SimParams(seed=seed, hours=hours))
    write(sim, tmp_path)
    namespaces = {r["objectRef"]["namespace"] for r in sim.records["k8s_audit"]
                  if r.get("objectRef", {}).get("namespace")}  # fmt: skip
    closing = [orjson.dumps(s) for s in sentinels(sim, namespaces)]
    (tmp_path / "sentinels.jsonl").write_bytes(b"\n".join(closing) + b"\n")
    timed: dict[str, list[tuple[float, str, dict]]] = {audit_topic: [], runtime_topic: []}
    for fmt, rows in sim.records.items():
        topic = audit_topic if fmt in ("k8s_audit", "cloudtrail") else runtime_topic
        for row in rows:
            events = parse_record(orjson.dumps(row)).events
            timed[topic].append((events[0].time if events else 0.0, fmt, row))
    topics = {}
    for topic, rows in timed.items():
        rows.sort(key=lambda item: item[0])
        topics[topic] = [(fmt, row) for _, fmt, row in rows]
    files = [str(p) for p in sorted(tmp_path.glob("*.jsonl")) if p.name != "labels.jsonl"]
    return SimulatedDay(files, topics, closing)
