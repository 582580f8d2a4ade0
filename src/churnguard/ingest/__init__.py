"""Decode + adapt: one raw record (bytes of one line or message) -> canonical events.

:func:`parse_record` is the stage's only entry point and never raises: every input comes
out as events, as :class:`~churnguard.ingest.events.Ignored` (well-formed, nothing the features
use) or as :class:`~churnguard.ingest.events.Rejected` (dead letter, with the reason). A record
may hold many items (an audit ``EventList``, a CloudTrail ``{"Records": [...]}`` file);
each item is adapted on its own, so one bad item never costs its neighbours.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import msgspec
import orjson

from churnguard.ingest import cloudtrail, envelopes, falco, flows, k8s_audit, tetragon
from churnguard.ingest.common import (
    GZIP_MAGIC,
    AdapterContext,
    TooLarge,
    gunzip_bounded,
    truncate,
)
from churnguard.ingest.events import Event, Ignored, Origin, Rejected
from churnguard.ingest.exceptions import AdapterError

__all__ = [
    "FORMATS",
    "AdapterContext",
    "AdapterError",
    "Parsed",
    "detect_format",
    "parse_record",
]

FORMATS: tuple[str, ...] = ("k8s_audit", "cloudtrail", "falco", "tetragon", "flow")
RECORD_KEEP_CHARS = 2048  # how much of a rejected record the dead letter keeps

Adapter = Callable[[dict, AdapterContext], "list[Event] | Ignored"]
_ADAPTERS: dict[str, Adapter] = {
    k8s_audit.FORMAT: k8s_audit.adapt,
    cloudtrail.FORMAT: cloudtrail.adapt,
    falco.FORMAT: falco.adapt,
    tetragon.FORMAT: tetragon.adapt,
    flows.FORMAT: flows.adapt,
}
_TETRAGON_KEYS = frozenset(tetragon.EVENT_KEYS + tetragon.OTHER_EVENT_KEYS)
_DEFAULT_CTX = AdapterContext()


class Parsed(msgspec.Struct):
    """What one raw record turned into. At least one list is non-empty."""

    # empty-list defaults: msgspec copies them for each instance, faster than a factory call
    events: list[Event] = []
    ignored: list[Ignored] = []
    rejected: list[Rejected] = []


def detect_format(obj: dict) -> str | None:
    """The format of a decoded record from its distinctive keys, or None."""
    api_version = obj.get("apiVersion")
    if (
        isinstance(api_version, str)
        and api_version.startswith("audit.k8s.io")
        and obj.get("kind") in ("Event", "EventList")
    ) or k8s_audit.looks_like(obj):
        return k8s_audit.FORMAT
    if isinstance(obj.get("Records"), list) or ("eventVersion" in obj and "eventSource" in obj):
        return cloudtrail.FORMAT
    if "rule" in obj and "output_fields" in obj:
        return falco.FORMAT
    if not _TETRAGON_KEYS.isdisjoint(obj):
        return tetragon.FORMAT
    if isinstance(obj.get("flow"), dict) or ("IP" in obj and "verdict" in obj):
        return flows.FORMAT
    if "src" in obj and "dst" in obj and ("bytes_out" in obj or "time" in obj):
        return flows.FORMAT
    return None


def parse_record(
    raw: bytes | str,
    origin: Origin | None = None,
    pinned: str | None = None,
    ctx: AdapterContext | None = None,
) -> Parsed:
    """Decode one raw record and adapt each item in it; never raises.

    ``pinned`` names the format (a topic's configured format) and skips detection;
    None or ``"auto"`` detects per item. ``origin`` is stamped on events and dead letters.
    """
    ctx = ctx or _DEFAULT_CTX
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            text = raw.encode("utf-8", "backslashreplace").decode()
            return _rejected(
                origin, "malformed_json", f"not encodable as UTF-8: {exc.reason}", text
            )
    if len(raw) > ctx.max_record_bytes:
        return _rejected(
            origin,
            "record_too_large",
            f"{len(raw)} bytes > max_record_bytes {ctx.max_record_bytes}",
            _preview(raw),
        )
    if raw.startswith(GZIP_MAGIC):  # a Kinesis/Firehose payload: CloudWatch Logs gzips its batches
        try:
            raw = gunzip_bounded(raw, ctx.max_record_bytes)
        except TooLarge as exc:
            return _rejected(origin, "record_too_large", f"gzip record {exc}", "")
        except (zlib.error, EOFError) as exc:
            detail = f"gzip record does not inflate: {exc}"
            return _rejected(origin, "malformed_json", detail, _preview(raw))
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _rejected(origin, "malformed_json", str(exc), _preview(raw))
    hint = None
    plain = isinstance(obj, dict) and envelopes.is_plain(obj)  # most records: no envelope
    if isinstance(obj, dict) and not plain:  # a shipper's wrapping off, its pod metadata kept
        try:
            unwrapped = envelopes.unwrap(obj, ctx.max_record_bytes)
        except envelopes.EnvelopeTooLarge as exc:
            return _rejected(origin, "record_too_large", str(exc), _preview(raw))
        except envelopes.EnvelopeError as exc:
            return _rejected(origin, "malformed_json", str(exc), _preview(raw))
        obj, hint = unwrapped.record, unwrapped.hint
    if not isinstance(obj, dict):
        detail = f"top-level JSON {type(obj).__name__}"
        return _rejected(origin, "not_an_object", detail, _preview(raw))
    if pinned == "auto":
        pinned = None
    if pinned is not None and pinned not in _ADAPTERS:
        detail = f"pinned format {pinned!r} is not one of {FORMATS}"
        return _rejected(origin, "unknown_format", detail, _preview(raw))

    if not plain and envelopes.is_control_message(obj):
        return Parsed(ignored=[Ignored(format="cloudwatch_logs", reason="control_message")])
    items = _items(obj, pinned, plain)
    if items is None:  # most records: one item, no list of one built and looped over
        return _adapt(Parsed(), pinned, obj, ctx, origin, hint)
    out = Parsed()
    if not items:
        out.ignored.append(Ignored(format=pinned or detect_format(obj) or "", reason="empty_list"))
    for fmt, item in items:
        if isinstance(item, envelopes.EnvelopeError):
            _reject(out, origin, "malformed_json", str(item), item.payload)
        elif not isinstance(item, dict):
            detail = f"{fmt} item is a {type(item).__name__}"
            _reject(out, origin, "not_an_object", detail, _dump(item))
        else:
            _adapt(out, fmt, item, ctx, origin, hint)
    return out


def _adapt(
    out: Parsed,
    fmt: str | None,
    item: dict,
    ctx: AdapterContext,
    origin: Origin | None,
    hint: envelopes.Hint | None,
) -> Parsed:
    """Adapt one item of a known (or detected) format into ``out``; ``out`` back."""
    fmt = fmt or detect_format(item)
    if fmt is None:
        return _reject(out, origin, "unknown_format", "no known format's keys", _dump(item))
    try:
        result = _ADAPTERS[fmt](item, ctx)
    except AdapterError as exc:
        return _reject(out, origin, exc.reason, f"{fmt}: {exc.detail}", _dump(item))
    except Exception as exc:  # the stage's contract: a bad record never stops the stream
        detail = f"{fmt}: internal error {type(exc).__name__}: {exc}"
        return _reject(out, origin, "bad_value", detail, _dump(item))
    if isinstance(result, Ignored):
        out.ignored.append(result)
    elif not result:
        out.ignored.append(Ignored(format=fmt, reason="no_events"))
    else:
        for event in result:
            event.origin = origin
        if hint is not None:
            for event in result:
                envelopes.attribute(event, hint)
        out.events.extend(result)
    return out


def _reject(out: Parsed, origin: Origin | None, reason: str, detail: str, record: str) -> Parsed:
    """Add a dead letter to ``out`` (the record kept truncated); ``out`` back."""
    rejected = Rejected(
        reason=reason, detail=detail, origin=origin, record=truncate(record, RECORD_KEEP_CHARS)
    )
    out.rejected.append(rejected)
    return out


def _rejected(origin: Origin | None, reason: str, detail: str, record: str) -> Parsed:
    """A record that is one dead letter as a whole."""
    return _reject(Parsed(), origin, reason, detail, record)


def _items(obj: dict, pinned: str | None, plain: bool) -> list[tuple[str | None, object]] | None:
    """Split container documents into items with their (known) format; None when ``obj`` is
    one item itself. ``plain``: ``obj`` is no CloudWatch Logs message
    (:func:`envelopes.is_plain`)."""
    messages = None if plain else envelopes.log_events(obj)
    if messages is not None:  # each message is a record of its own, of any format
        return [(pinned, message) for message in messages]
    if obj.get("kind") == "EventList" and pinned in (None, k8s_audit.FORMAT):
        items = obj.get("items")
        if isinstance(items, list):
            return [(k8s_audit.FORMAT, item) for item in items]
    records = obj.get("Records")
    if isinstance(records, list) and pinned in (None, cloudtrail.FORMAT):
        return [(cloudtrail.FORMAT, item) for item in records]
    return None


def _preview(raw: bytes) -> str:
    return raw[: RECORD_KEEP_CHARS * 2].decode("utf-8", errors="replace")


def _dump(item: object) -> str:
    try:
        return orjson.dumps(item).decode()
    except (TypeError, orjson.JSONEncodeError):
        return repr(item)
