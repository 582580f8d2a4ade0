"""Helpers every adapter shares: settings, event time, typed field access, IPs, actors.

Adapters are pure functions of a decoded record, so everything they need from the
configuration travels in :class:`AdapterContext`; everything they need to read a field
safely lives here, once, so the five formats agree on what "missing" and "bad" mean.
"""

from __future__ import annotations

import ipaddress
import math
import re
import zlib
from collections.abc import Collection
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec

from churnguard.errors import ConfigError
from churnguard.ingest.events import (  # the members, read without the enum hook
    AUTOSCALER_ACTOR,
    CONTROLLER_ACTOR,
    NODE_ACTOR,
    PERSON_ACTOR,
    SERVICE_ACCOUNT_ACTOR,
    UNKNOWN_ACTOR,
    ActorKind,
)
from churnguard.ingest.exceptions import bad, missing

# Address space that is never the internet: RFC 1918, carrier-grade NAT (EKS custom
# networking, Tailscale) and IPv6 unique-local. An address here is not external, and may
# be a pod's or an instance's, but only a binding learned from the records (pod status,
# runtime and flow metadata, RunInstances) ever attributes it to one: an office or VPN
# address in the same ranges stays nobody's.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
# Configured cluster_cidrs add ranges a cluster uses beyond the private ones (pods on
# public address space); the default adds none.
DEFAULT_CLUSTER_CIDRS: tuple[str, ...] = ()

# Event times outside this range are typos, unit mix-ups or attacks on the windowing.
MIN_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z
MAX_BYTES = 10**13  # a byte count above 10 TB in one record is a broken exporter

GZIP_MAGIC = b"\x1f\x8b"


class TooLarge(ValueError):
    """A compressed payload that inflates past the record cap (a zip bomb, or a huge batch)."""


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate a gzip payload (every member, as ``gzip`` concatenation allows), at most ``limit``.

    Raises :class:`TooLarge` past ``limit`` bytes without inflating further, and
    ``zlib.error`` / ``EOFError`` for a payload that is not whole gzip: a record's size
    cap must hold for what it inflates to, not only for what arrived.
    """
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = inflater.decompress(rest, limit - size + 1)
        size += len(chunk)
        out.append(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise TooLarge(f"inflates past {limit} bytes")
        if not inflater.eof:
            raise EOFError("gzip payload ends before its end-of-stream marker")
        rest = inflater.unused_data.lstrip(b"\0")  # members may be padded with zeros
    return b"".join(out)


_LEAP_SECOND = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:)60(.*)")
_RUNTIME_PREFIX = re.compile(r"^[a-z0-9-]+://")
_RUNTIMES = frozenset({"containerd", "docker", "cri-o"})  # the usual prefixes' names


class AdapterContext(msgspec.Struct, kw_only=True):
    """The settings adapters need (a slice of ``config.PipelineSettings``).

    ``cluster_cidrs``: ranges the cluster uses beyond :data:`PRIVATE_RANGES` (a hint, not
    an attribution: pod and instance addresses are learned from the records); an address
    outside both is external. Loopback and link-local addresses are always internal.
    ``role_map``: CloudTrail role ARN or role name -> ``"namespace/serviceaccount"``
    (IRSA-style attribution).
    """

    cluster_cidrs: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CLUSTER_CIDRS))
    role_map: dict[str, str] = msgspec.field(default_factory=dict)
    max_record_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        try:
            _networks(tuple(self.cluster_cidrs))
        except ValueError as exc:
            raise ConfigError(f"cluster_cidrs: {exc}") from exc

    @classmethod
    def from_settings(cls, pipeline: Any) -> AdapterContext:
        """Build from ``config.PipelineSettings`` (duck-typed to keep this module config-free)."""
        return cls(
            cluster_cidrs=list(pipeline.cluster_cidrs),
            role_map=dict(pipeline.role_map),
            max_record_bytes=int(pipeline.max_record_bytes),
        )

    def is_external(self, ip: str | None) -> bool | None:
        """True outside the cluster/private ranges, False inside, None if not an address."""
        if not ip:
            return None
        return is_external_address(ip, tuple(self.cluster_cidrs))

    def is_internal_address(self, value: str | None) -> bool:
        """True for a routable in-cluster address (a candidate pod IP): not loopback."""
        if not value:
            return False
        return is_internal_address(value, tuple(self.cluster_cidrs))


# -- event time ---------------------------------------------------------------------------


def parse_time(value: Any, field: str) -> float:
    """Event time in float epoch seconds from RFC3339 (up to ns digits) or a number.

    Numbers are read by magnitude: seconds, milliseconds, microseconds or nanoseconds
    (Falco's ``evt.time`` is ns). ``{"seconds", "nanos"}`` (protobuf JSON) is accepted too.
    Raises ``bad_value`` for anything unparseable or outside 2000..2100.
    """
    if isinstance(value, str):  # first: nearly every record's time is a string
        t = _parse_time_str(value.strip(), field)
    elif value is None:
        raise missing(field)
    elif isinstance(value, bool):
        raise bad(field, "a boolean is not a time")
    elif isinstance(value, int | float):
        t = _from_number(_number(value, field), field)
    elif isinstance(value, dict) and "seconds" in value:
        secs = _number(value.get("seconds"), field)
        nanos = _number(value.get("nanos") or 0, field)
        t = secs + nanos / 1e9
    else:
        raise bad(field, f"not a time: {type(value).__name__}")
    if not MIN_TIME <= t < MAX_TIME:
        raise bad(field, f"time {value!r} is outside 2000..2100")
    return t


def first_time(candidates: list[tuple[Any, str]], field: str) -> float:
    """Parse the first present candidate ``(value, name)``; ``missing_field`` if none is."""
    for value, name in candidates:
        if value is not None:
            return parse_time(value, name)
    raise missing(field)


def _parse_time_str(text: str, field: str) -> float:
    """RFC 3339 by msgspec's parser (to the microsecond), else a number in a string.

    Kept from what exporters write in the wild: a comma before the fraction, no offset
    (UTC), and a leap second (``:60``, read as ``:59``)."""
    try:
        moment = _rfc3339(text.replace(",", ".", 1))
    except msgspec.ValidationError:
        leap = _LEAP_SECOND.fullmatch(text)
        if leap is None:
            try:
                return _from_number(float(text), field)
            except ValueError:
                raise bad(field, f"not an RFC3339 time: {text[:64]!r}") from None
        return _parse_time_str(leap[1] + "59" + leap[2], field)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_DATETIME = msgspec.json.Decoder(datetime)


def _rfc3339(text: str) -> datetime:
    """``msgspec.convert(text, datetime)``, by the same parser at about half the cost.

    msgspec's JSON decoder reads a quoted datetime with the parser ``convert`` uses, and spares
    ``convert``'s per-call type lookup. Quoting changes nothing in a text without a quote or a
    backslash (no escape to undo); any other text, and any text the decoder refuses (not a
    time, a control character JSON forbids, a lone surrogate), goes to ``convert``, which
    decides as it always did and raises what it always raised.
    """
    if '"' not in text and "\\" not in text:
        try:
            return _DATETIME.decode(f'"{text}"')
        except (msgspec.DecodeError, UnicodeEncodeError):
            pass
    return msgspec.convert(text, datetime)


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad(field, f"not a number: {value!r}"[:120])
    try:
        return float(value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond float range
        raise bad(field, f"not a number: {str(value)[:100]!r}") from None


def _from_number(v: float, field: str) -> float:
    if not math.isfinite(v):
        raise bad(field, "time is not finite")
    if abs(v) >= 1e17:
        return v / 1e9
    if abs(v) >= 1e14:
        return v / 1e6
    if abs(v) >= 1e11:
        return v / 1e3
    return v


# -- typed field access -------------------------------------------------------------------


def get(obj: Any, *path: str) -> Any:
    """Nested lookup that yields None wherever a level is absent or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def opt_dict(value: Any, field: str) -> dict | None:
    """An optional JSON object; another type is ``bad_value``."""
    if value is None or isinstance(value, dict):
        return value
    raise bad(field, f"expected an object, got {type(value).__name__}")


def opt_list(value: Any, field: str) -> list:
    """An optional JSON array (absent = empty); another type is ``bad_value``."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise bad(field, f"expected an array, got {type(value).__name__}")


def opt_str(value: Any, field: str) -> str | None:
    """An optional string; empty means absent; a non-string is ``bad_value``."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    raise bad(field, f"expected a string, got {type(value).__name__}")


def req_str(value: Any, field: str) -> str:
    """A required non-empty string."""
    s = opt_str(value, field)
    if s is None:
        raise missing(field)
    return s


def opt_int(value: Any, field: str) -> int | None:
    """An optional integer, also from an integral float or a decimal string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad(field, "a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            return int(value)
        except ValueError:  # digits to isdigit() that int() refuses: '⒎', '²', '--5', 5,000 of them
            pass
    raise bad(field, f"not an integer: {value!r}"[:120])


def byte_count(value: Any, field: str) -> int:
    """A byte count: absent = 0; negative or above 10 TB is ``bad_value``."""
    n = opt_int(value, field)
    if n is None:
        return 0
    if n < 0 or n > MAX_BYTES:
        raise bad(field, f"byte count {n} out of range")
    return n


def port(value: Any, field: str) -> int | None:
    """A TCP/UDP port or None."""
    n = opt_int(value, field)
    if n is not None and not 0 <= n <= 65535:
        raise bad(field, f"port {n} out of range")
    return n


def str_map(value: Any, field: str) -> dict[str, str] | None:
    """Labels: string values kept, other values stringified, an empty map is None."""
    d = opt_dict(value, field)
    if not d:
        return None
    return {str(k): v if isinstance(v, str) else str(v) for k, v in d.items() if v is not None}


def workload_ref(kind: Any, name: Any) -> str | None:
    """``"Kind/name"`` when both are strings, else None (features normalise further)."""
    if isinstance(kind, str) and kind and isinstance(name, str) and name:
        return f"{kind}/{name}"
    return None


def strip_runtime_prefix(container_id: str | None) -> str | None:
    """``containerd://abc`` / ``docker://abc`` / ``cri-o://abc`` -> ``abc``."""
    if container_id is None:
        return None
    if "://" not in container_id:  # most ids: no prefix to match (a test, not a regex run)
        return container_id or None
    runtime, _, rest = container_id.partition("://")
    if runtime in _RUNTIMES:  # what the pattern would strip, without running it
        return rest or None
    return _RUNTIME_PREFIX.sub("", container_id, count=1) or None


# -- addresses ----------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _bare_ip(value: str) -> str:
    return value.strip().strip("[]").split("%", 1)[0]


@lru_cache(maxsize=65_536)
def is_internal_address(value: str, cidrs: tuple[str, ...] = ()) -> bool:
    """Inside the private ranges or ``cidrs`` and not loopback (cached like
    :func:`is_external_address`: a cluster has few addresses, each seen in many records)."""
    if is_external_address(value, cidrs) is not False:
        return False
    return not ipaddress.ip_address(_bare_ip(value)).is_loopback


@lru_cache(maxsize=65_536)
def is_external_address(value: str, cidrs: tuple[str, ...] = ()) -> bool | None:
    """True outside :data:`PRIVATE_RANGES` and ``cidrs``, False inside them or for loopback,
    link-local and unspecified addresses, None when ``value`` is not an address. The one rule
    adapters and features use."""
    try:
        ip = ipaddress.ip_address(_bare_ip(value))
    except ValueError:
        return None
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        return False
    nets = _networks(PRIVATE_RANGES) + _networks(cidrs)
    return not any(ip in net for net in nets if net.version == ip.version)


# -- Kubernetes identities ----------------------------------------------------------------

# kube-system service accounts of kube-controller-manager's controllers whose names do
# not end in "-controller".
_KUBE_SYSTEM_CONTROLLER_SAS = frozenset(
    {
        "pod-garbage-collector",
        "generic-garbage-collector",
        "horizontal-pod-autoscaler",
        "persistent-volume-binder",
        "attachdetach-controller",
        "certificate-controller",
        "clusterrole-aggregation-controller",
        "root-ca-cert-publisher",
        "service-account-controller",
        "pv-protection-controller",
        "pvc-protection-controller",
        "ttl-controller",
        "cloud-controller-manager",
    }
)
# Node autoscalers' service accounts, (namespace, name) as their charts install them: they
# drain the nodes they remove (evicting every pod there), which is churn, not evasion.
NODE_AUTOSCALER_SAS = frozenset(
    {
        ("kube-system", "cluster-autoscaler"),
        ("karpenter", "karpenter"),
        ("kube-system", "karpenter"),
    }
)
# The control plane's own users, by name: a ``system:`` prefix alone proves nothing
# (``system:admin`` is a person holding the cluster-admin client certificate).
CONTROL_PLANE_USERS = frozenset(
    {
        "system:kube-controller-manager",
        "system:kube-scheduler",
        "system:apiserver",
        "system:kube-proxy",
        "system:cloud-controller-manager",
        "system:kube-aggregator",
    }
)
# People with cluster-admin rights: the admin kubeconfigs kubeadm / k3s / OpenShift write,
# and anyone authenticated into the ``system:masters`` group.
ADMIN_USERS = frozenset({"system:admin", "kubernetes-admin"})
MASTERS_GROUP = "system:masters"


def service_account_of(username: str) -> tuple[str, str] | None:
    """``system:serviceaccount:<ns>:<sa>`` -> ``(ns, sa)``."""
    if not username.startswith("system:serviceaccount:"):
        return None
    parts = username.split(":", 3)
    if len(parts) != 4 or not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]


def is_cluster_admin(username: str, groups: Collection[str] = ()) -> bool:
    """A person with cluster-admin rights (admin kubeconfig or ``system:masters``)."""
    return username in ADMIN_USERS or (
        MASTERS_GROUP in groups and username not in CONTROL_PLANE_USERS
    )


def classify_k8s_user(username: str, groups: Collection[str] = ()) -> ActorKind:
    """Who a Kubernetes API user is, in the terms the deletion features use.

    Control-plane identities are named exactly (its users, kube-system controller service
    accounts, nodes); node autoscalers (cluster-autoscaler, Karpenter) are autoscalers;
    cluster admins are people; an unknown ``system:`` user (such as
    ``system:anonymous``) is nobody we can vouch for.
    """
    # the groups count only as membership of system:masters (is_cluster_admin): the answer
    # is remembered by (user, member), a cluster has few users and each calls many times
    return _classify_k8s_user(username, MASTERS_GROUP in groups)


@lru_cache(maxsize=4096)
def _classify_k8s_user(username: str, masters: bool) -> ActorKind:
    if username.startswith("system:node:"):
        return NODE_ACTOR
    if username in CONTROL_PLANE_USERS:
        return CONTROLLER_ACTOR
    sa = service_account_of(username)
    if sa in NODE_AUTOSCALER_SAS:
        return AUTOSCALER_ACTOR
    if sa is not None:
        ns, name = sa
        if ns == "kube-system" and (
            name.endswith("-controller") or name in _KUBE_SYSTEM_CONTROLLER_SAS
        ):
            return CONTROLLER_ACTOR
        return SERVICE_ACCOUNT_ACTOR
    if is_cluster_admin(username, (MASTERS_GROUP,) if masters else ()):
        return PERSON_ACTOR
    if username.startswith("system:"):
        return UNKNOWN_ACTOR
    return PERSON_ACTOR


MAX_IDP_GROUPS = 16  # a person's groups kept per event: hostile input may claim thousands
MAX_GROUP_CHARS = 256


def idp_groups(groups: Collection[str]) -> tuple[str, ...]:
    """A person's groups from the identity provider: the API server's own ``system:``
    groups (every authenticated user has one) left out, sorted, bounded in count and size."""
    mine = sorted({g for g in groups if not g.startswith("system:") and g})
    return tuple(truncate(g, MAX_GROUP_CHARS) for g in mine[:MAX_IDP_GROUPS])


def truncate(text: str, limit: int = 2048) -> str:
    """Bound a string kept in a dead letter or a detail."""
    return text if len(text) <= limit else text[:limit] + "…"
