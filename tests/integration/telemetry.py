"""Small, deterministic k8s-audit streams for the Kafka tests (real audit.k8s.io/v1 shape).

Each pod is created by its ReplicaSet controller and deleted by a person a few minutes
later, in a handful of namespaces, so every pod ends in a final profile within the stream
and the stand-in scorer has something to alert on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

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


def pod_stream(pods: int, namespaces: int = 4, *, start: float = T0) -> list[tuple[str, bytes]]:
    """``(namespace, record)`` pairs: create then delete of ``pods`` pods, in time order."""
    rows: list[tuple[float, str, dict]] = []
    for i in range(pods):
        ns = f"ns-{i % namespaces}"
        pod = f"app{i % 7}-{i}"
        born = start + i * 2.0
        rows.append((born, ns, audit("create", ns, pod, born, _RS)))
        rows.append((born + 240.0, ns, audit("delete", ns, pod, born + 240.0, "alice")))
    rows.sort(key=lambda r: r[0])
    return [(ns, orjson.dumps(doc)) for _, ns, doc in rows]


_RS = "system:serviceaccount:kube-system:replicaset-controller"
