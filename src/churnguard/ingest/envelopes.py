"""Shipper envelopes: the wrappers log pipelines put around a record, recognised by content.

Telemetry rarely reaches Kafka (or a file) as its exporter wrote it. A log shipper that
tails a container's stdout wraps each line; Logstash's CloudTrail codec renames a field.
:func:`unwrap` turns what the shipper wrote back into the exporter's record, for files and
Kafka alike (``ingest.parse_record`` calls it for every record), and keeps the shipper's
Kubernetes metadata as a :class:`Hint`. The shapes, from each shipper's documentation:

- **Fluent Bit** (``tail`` input with the ``docker`` or ``cri`` parser, optionally the
  ``kubernetes`` filter, ``kafka`` output with ``Format json``): the line is a JSON *string*
  under ``log``, beside ``stream``, ``time`` (and ``_p`` from the cri parser), the output's
  ``@timestamp`` (a float by default, ``Timestamp_Format double``) and the filter's
  ``kubernetes`` map (``pod_name``, ``namespace_name``, ``pod_id``, ``host``,
  ``container_name``, ``docker_id``, ...). With ``Merge_Log On`` the parsed line's keys are
  merged into the top level (and ``log`` is dropped with ``Keep_Log Off``).
- **Vector** (``kubernetes_logs`` source, ``kafka`` sink, ``encoding.codec = "json"``):
  the line is a string under ``message``, beside ``file``, ``source_type``, ``stream``,
  ``timestamp`` and ``kubernetes`` (``pod_name``, ``pod_namespace``, ``pod_uid``,
  ``pod_owner``, ``container_id``, ``pod_node_name``, ...). Vector's ``http_server`` source
  with the ``bytes`` codec puts a posted body (an audit webhook ``EventList``) there too.
- **Logstash** ``cloudtrail`` codec: each record of a delivered file becomes an event whose
  ``eventTime`` was moved to ``@timestamp``, with ``@version`` added, and whose
  ``requestParameters.disableApiTermination`` was wrapped as ``{"value": ...}``.

- **CloudWatch Logs subscriptions** (CloudTrail's or EKS control-plane audit log group
  subscribed to Kinesis, Firehose or a Lambda that forwards to Kafka): a ``DATA_MESSAGE``
  whose ``logEvents[].message`` are the records as JSON strings, delivered gzipped (raw
  gzip bytes; a Lambda's event wraps them as base64 under ``awslogs.data``).
  ``CONTROL_MESSAGE`` health checks carry no record and are ignored.

falcosidekick's Kafka output and a shipper that forwards an audit webhook's ``EventList``
as JSON send the exporter's document as it is: nothing to unwrap, the adapters read them.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import msgspec
import orjson

from churnguard.ingest.common import TooLarge, gunzip_bounded, strip_runtime_prefix
from churnguard.ingest.events import Event

MAX_DEPTH = 3  # envelopes inside envelopes (a Vector message holding a Logstash event)
SHORT_ID = 12  # Falco and `docker ps` print container ids cut to 12 hex digits

# (field holding the line, shipper, keys of which one must be beside it). Fluent Bit's
# classic regex `cri` parser names the line `message` (and adds `logtag`) like Vector does.
_LINE_FIELDS = (
    ("log", "fluent_bit", ("stream", "_p", "logtag", "time", "@timestamp", "kubernetes")),
    ("message", "vector", ("source_type", "kubernetes", "file", "stream", "timestamp", "logtag")),
)


class Hint(msgspec.Struct, frozen=True, kw_only=True):
    """The pod a shipper read the line from (its own Kubernetes metadata)."""

    namespace: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    container_id: str | None = None
    node: str | None = None


class Unwrapped(msgspec.Struct, frozen=True, kw_only=True):
    """A record with its envelopes removed: the exporter's document and what wrapped it."""

    record: Any
    # "fluent_bit" | "vector" | "logstash" | "cloudwatch_logs"; None = not wrapped
    shipper: str | None = None
    hint: Hint | None = None


class EnvelopeError(ValueError):
    """An envelope whose payload is not a JSON document (the shipper forwarded plain text)."""

    def __init__(self, detail: str, payload: str = "") -> None:
        super().__init__(detail)
        self.payload = payload  # the part that failed, for its dead letter


class EnvelopeTooLarge(EnvelopeError):
    """An envelope whose compressed payload inflates past the record cap."""


CONTROL_MESSAGE = "CONTROL_MESSAGE"  # a CloudWatch Logs destination health check
# every top-level key an envelope (or a CloudWatch Logs message) is recognised by: a record
# with none of them is no shipper's, which is most records (see :func:`is_plain`)
_ENVELOPE_KEYS = frozenset(
    {"awslogs", "@version", "kubernetes", "messageType"} | {field for field, _, _ in _LINE_FIELDS}
)


def unwrap(obj: dict, max_bytes: int = 1 << 20) -> Unwrapped:
    """Remove every envelope around a decoded record; raises :class:`EnvelopeError`.

    A record no shipper wrapped comes back as it is, with ``shipper`` None. ``max_bytes``
    caps what a compressed payload inside an envelope may inflate to.
    """
    record: Any = obj
    shipper: str | None = None
    hint: Hint | None = None
    for _ in range(MAX_DEPTH):
        if not isinstance(record, dict):
            break
        step = _unwrap_once(record, max_bytes)
        if step is None:
            break
        record, name, found = step
        shipper = shipper or name
        hint = found or hint  # the innermost shipper sat closest to the pod
    return Unwrapped(record=record, shipper=shipper, hint=hint)


def is_plain(obj: dict) -> bool:
    """True when no envelope wraps ``obj`` and it is no CloudWatch Logs message: ``unwrap``
    would return it as it is, and it holds no log events. One set test a record instead of
    each shape's lookups."""
    return _ENVELOPE_KEYS.isdisjoint(obj)


def attribute(event: Event, hint: Hint | None) -> None:
    """Fill an event's missing namespace/pod from the shipper's metadata, when it is its pod.

    The shipper names the pod that *wrote the line*. For a Falco or Tetragon DaemonSet that
    is the agent's own pod, while its events are about other containers: the hint applies
    only to an event about the writing container itself (same container id) or about the
    same pod by name, and never overrides what the record says.
    """
    if hint is None or (event.namespace and event.pod):
        return
    same_container = _same_container(event.container_id, hint.container_id)
    same_pod = event.pod is not None and event.pod == hint.pod
    if not (same_container or same_pod):
        return
    event.namespace = event.namespace or hint.namespace
    event.pod = event.pod or hint.pod
    event.pod_uid = event.pod_uid or hint.pod_uid
    event.node = event.node or hint.node


def log_events(obj: dict) -> list[Any] | None:
    """The records in a CloudWatch Logs subscription ``DATA_MESSAGE``; None if it is not one.

    Each element is a log event's message decoded from JSON, or an :class:`EnvelopeError`
    saying why it could not be (the caller dead-letters that one and keeps the others).
    """
    events = obj.get("logEvents")
    if obj.get("messageType") != "DATA_MESSAGE" or not isinstance(events, list):
        return None
    records: list[Any] = []
    for n, event in enumerate(events):
        message = event.get("message") if isinstance(event, dict) else None
        if not isinstance(message, str):
            detail = f"cloudwatch_logs logEvents[{n}] has no message"
            records.append(EnvelopeError(detail, orjson.dumps(event).decode()))
            continue
        try:
            records.append(_payload(message, "cloudwatch_logs", f"logEvents[{n}].message"))
        except EnvelopeError as exc:
            records.append(EnvelopeError(str(exc), message))
    return records


def is_control_message(obj: dict) -> bool:
    return obj.get("messageType") == CONTROL_MESSAGE and "logEvents" in obj


def _unwrap_once(obj: dict, max_bytes: int) -> tuple[Any, str, Hint | None] | None:
    awslogs = obj.get("awslogs")
    if isinstance(awslogs, dict) and isinstance(awslogs.get("data"), str):
        return _awslogs_data(awslogs["data"], max_bytes), "cloudwatch_logs", None
    for field, shipper, markers in _LINE_FIELDS:
        line = obj.get(field)
        if isinstance(line, str) and any(k in obj for k in markers):
            return _payload(line, shipper, field), shipper, _k8s_hint(obj)
    if "@version" in obj and "eventTime" not in obj and "eventSource" in obj:
        return _logstash_cloudtrail(obj), "logstash", None
    if isinstance(obj.get("kubernetes"), dict):
        # Fluent Bit with Merge_Log On, Keep_Log Off: the record is already at the top level
        merged = {k: v for k, v in obj.items() if k != "kubernetes"}
        return merged, "fluent_bit", _k8s_hint(obj)
    return None


def _payload(text: str, shipper: str, field: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{shipper} envelope: `{field}` is not JSON ({exc})") from None


def _awslogs_data(data: str, max_bytes: int) -> Any:
    """A Lambda's CloudWatch Logs event: base64 of the gzipped subscription message."""
    try:
        text = gunzip_bounded(base64.b64decode(data, validate=True), max_bytes)
    except TooLarge as exc:
        raise EnvelopeTooLarge(f"cloudwatch_logs awslogs.data {exc}") from None
    except (binascii.Error, zlib.error, EOFError) as exc:
        raise EnvelopeError(f"cloudwatch_logs awslogs.data is not base64 gzip ({exc})") from None
    return _payload(text.decode("utf-8", "replace"), "cloudwatch_logs", "awslogs.data")


def _logstash_cloudtrail(obj: dict) -> dict:
    """Undo the Logstash cloudtrail codec's renames (the rest of its fields are ignored)."""
    record = {k: v for k, v in obj.items() if k not in ("@timestamp", "@version")}
    if obj.get("@timestamp") is not None:
        record["eventTime"] = obj["@timestamp"]
    params = record.get("requestParameters")
    wrapped = params.get("disableApiTermination") if isinstance(params, dict) else None
    if isinstance(wrapped, dict) and set(wrapped) == {"value"}:
        record["requestParameters"] = {**params, "disableApiTermination": wrapped["value"]}
    return record


def _k8s_hint(obj: dict) -> Hint | None:
    """The shipper's ``kubernetes`` map, in Fluent Bit's or Vector's field names."""
    k8s = obj.get("kubernetes")
    if not isinstance(k8s, dict):
        return None
    return _hint(
        namespace=k8s.get("namespace_name") or k8s.get("pod_namespace"),
        pod=k8s.get("pod_name"),
        pod_uid=k8s.get("pod_id") or k8s.get("pod_uid"),
        container_id=k8s.get("docker_id") or k8s.get("container_id"),
        node=k8s.get("host") or k8s.get("pod_node_name"),
    )


def _hint(**fields: Any) -> Hint | None:
    """A hint from the string-valued fields; None when the shipper named no pod."""
    clean = {k: v for k, v in fields.items() if isinstance(v, str) and v}
    if "container_id" in clean:
        clean["container_id"] = strip_runtime_prefix(clean["container_id"])
    if not clean.get("pod") and not clean.get("container_id"):
        return None
    return Hint(**clean)


def _same_container(a: str | None, b: str | None) -> bool:
    """Two container ids name one container (full or cut to 12 digits, runtime prefix off)."""
    a, b = strip_runtime_prefix(a), strip_runtime_prefix(b)
    if not a or not b or min(len(a), len(b)) < SHORT_ID:
        return False
    return a.startswith(b) or b.startswith(a)
