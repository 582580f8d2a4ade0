"""Records as log shippers deliver them to Kafka: the envelopes of ``ingest.envelopes``.

Each function wraps one exporter record the way a shipper's documented configuration
writes it (docs/operations.md, "Connecting your telemetry", has the configurations):

- :func:`fluent_bit`: ``tail`` input with the ``cri`` parser, ``kubernetes`` filter and
  ``kafka`` output ``Format json`` (Fluent Bit manual: pipeline/inputs/tail,
  pipeline/filters/kubernetes, pipeline/outputs/kafka: ``Timestamp_Key @timestamp``,
  ``Timestamp_Format double``); ``merge=True`` is the filter's ``Merge_Log On`` with
  ``Keep_Log Off``.
- :func:`vector`: ``kubernetes_logs`` source into the ``kafka`` sink with
  ``encoding.codec = "json"`` (Vector reference: sources/kubernetes_logs output fields).
- :func:`logstash_cloudtrail`: the ``cloudtrail`` codec of Logstash's ``s3``/``sqs`` input
  (logstash-plugins/logstash-codec-cloudtrail, lib/logstash/codecs/cloudtrail.rb) into the
  ``kafka`` output with the ``json`` codec.
- :func:`audit_webhook_batch`: the ``EventList`` the API server's webhook audit backend
  posts (kubernetes.io, "Auditing", webhook backend), forwarded as the body it received.
- :func:`cloudwatch_logs`: a CloudWatch Logs subscription filter's delivery (CloudTrail's
  log group, or EKS control-plane audit logs) as Kinesis or Firehose receive it: the
  gzipped ``DATA_MESSAGE`` (CloudWatch Logs User Guide, "Subscriptions"); ``lambda_event``
  wraps it as a Lambda receives it, base64 under ``awslogs.data``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import UTC, datetime

import orjson

SHIPPED_AT_DELAY_S = 0.5  # a shipper stamps a line shortly after the exporter wrote it


def fluent_bit(
    record: dict,
    t: float,
    *,
    pod: str = "falco-74htl",
    namespace: str = "falco",
    container_id: str | None = None,
    merge: bool = False,
) -> dict:
    """One exporter line as Fluent Bit's kafka output writes it (``t``: line time, epoch s)."""
    cid = container_id or _container_id(pod)
    doc: dict = {
        "@timestamp": t + SHIPPED_AT_DELAY_S,
        "time": _rfc3339(t),
        "stream": "stdout",
        "_p": "F",
        "kubernetes": {
            "pod_name": pod,
            "namespace_name": namespace,
            "pod_id": f"uid-{pod}",
            "labels": {"app.kubernetes.io/name": pod.rsplit("-", 1)[0]},
            "host": "node-1",
            "container_name": pod.rsplit("-", 1)[0],
            "docker_id": cid,
            "container_hash": "docker.io/falcosecurity/falco@sha256:" + "0" * 64,
            "container_image": "docker.io/falcosecurity/falco:0.38.0",
        },
    }
    if merge:
        doc.update(record)
    else:
        doc["log"] = orjson.dumps(record).decode() + "\n"
    return doc


def vector(
    record: dict, t: float, *, pod: str = "tetragon-x7k2p", namespace: str = "kube-system"
) -> dict:
    """One exporter line as Vector's kafka sink (JSON encoding) writes it."""
    return {
        "file": f"/var/log/pods/{namespace}_{pod}_uid-{pod}/export-stdout/0.log",
        "kubernetes": {
            "container_id": f"containerd://{_container_id(pod)}",
            "container_image": "quay.io/cilium/tetragon:v1.1.0",
            "container_name": "export-stdout",
            "namespace_labels": {"kubernetes.io/metadata.name": namespace},
            "node_labels": {"kubernetes.io/hostname": "node-1"},
            "pod_ip": "10.0.3.17",
            "pod_labels": {"app.kubernetes.io/name": "tetragon"},
            "pod_name": pod,
            "pod_namespace": namespace,
            "pod_node_name": "node-1",
            "pod_owner": "DaemonSet/tetragon",
            "pod_uid": f"uid-{pod}",
        },
        "message": orjson.dumps(record).decode(),
        "source_type": "kubernetes_logs",
        "stream": "stdout",
        "timestamp": _rfc3339(t + SHIPPED_AT_DELAY_S),
    }


def logstash_cloudtrail(record: dict) -> dict:
    """One CloudTrail record as the Logstash cloudtrail codec and json output write it."""
    doc = {k: v for k, v in record.items() if k != "eventTime"}
    doc["@timestamp"] = _logstash_time(record["eventTime"])
    doc["@version"] = "1"
    params = doc.get("requestParameters")
    if isinstance(params, dict) and "disableApiTermination" in params:
        value = params["disableApiTermination"]
        if not isinstance(value, dict):
            doc["requestParameters"] = {**params, "disableApiTermination": {"value": value}}
    return doc


def audit_webhook_batch(events: list[dict]) -> dict:
    """Audit events as one webhook POST body (``audit.k8s.io/v1`` ``EventList``)."""
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events}


def cloudwatch_logs(
    records: list[dict], log_group: str = "aws-cloudtrail-logs", *, lambda_event: bool = False
) -> bytes:
    """Records as one CloudWatch Logs subscription delivery: gzipped ``DATA_MESSAGE`` bytes."""
    message = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": "123456789012_CloudTrail_us-east-1",
        "subscriptionFilters": ["churnguard"],
        "logEvents": [
            {"id": f"{n:056d}", "timestamp": 1_700_000_000_000 + n, "message": _text(record)}
            for n, record in enumerate(records)
        ],
    }
    payload = gzip.compress(orjson.dumps(message), mtime=0)
    if lambda_event:
        return orjson.dumps({"awslogs": {"data": base64.b64encode(payload).decode()}})
    return payload


def _text(record: dict) -> str:
    return orjson.dumps(record).decode()


def _container_id(pod: str) -> str:
    return hashlib.sha256(pod.encode()).hexdigest()


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _logstash_time(value: str) -> str:
    """Logstash serialises ``@timestamp`` in UTC with milliseconds."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
