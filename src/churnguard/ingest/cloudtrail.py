"""AWS CloudTrail records -> instance lifecycle and cloud calls attributed to pods/instances.

Identity comes from ``userIdentity``: an EC2 instance role session is named after the
instance id, the autoscaler (and spot reclaim) shows up as an AWS service, people as IAM
users or SSO sessions. A call is tied to a pod by its private ``sourceIPAddress`` (the
entity table resolves pod IPs) or by a configured role -> namespace/service-account map;
calls nobody can be tied to are ignored, they would only feed an entity-less bucket.
"""

from __future__ import annotations

import re
from functools import lru_cache

from churnguard.ingest.common import (
    AdapterContext,
    get,
    opt_dict,
    opt_list,
    opt_str,
    parse_time,
    req_str,
)
from churnguard.ingest.events import (  # the members, read without the enum hook
    AUTOSCALER_ACTOR,
    CLOUD_CALL_EVENT,
    CLOUD_DESTRUCTIVE_CATEGORY,
    DELETE_CATEGORY,
    INSTANCE_ACTOR,
    INSTANCE_IP_EVENT,
    INSTANCE_RUN_EVENT,
    INSTANCE_TERMINATE_EVENT,
    LIST_CATEGORY,
    PERSON_ACTOR,
    READ_CATEGORY,
    REPO_READ_CATEGORY,
    SECRET_READ_CATEGORY,
    SERVICE_ACCOUNT_ACTOR,
    UNKNOWN_ACTOR,
    WRITE_CATEGORY,
    ActorKind,
    ApiCategory,
    Event,
    Ignored,
)

FORMAT = "cloudtrail"
_INSTANCE_SESSION = re.compile(r"i-[0-9a-f]{8,17}")
_AUTOSCALER_INVOKERS = frozenset({"autoscaling.amazonaws.com", "ec2.amazonaws.com"})
_PERSON_TYPES = frozenset({"IAMUser", "Root", "FederatedUser", "IdentityCenterUser"})
_DESTRUCTIVE = frozenset(
    {
        "TerminateInstances",
        "DeleteBucket",
        "DeleteTrail",
        "StopLogging",
        "DeleteSnapshot",
        "DeleteDBInstance",
        "DeleteVolume",
        "DeleteLogGroup",
    }
)
_REPO_READS = frozenset(
    {
        ("s3", "GetObject"),
        ("s3", "GetObjectAttributes"),
        ("codecommit", "GetFile"),
        ("codecommit", "GetBlob"),
        ("codecommit", "GetFolder"),
    }
)
_SECRET_READS = frozenset(
    {
        "GetSecretValue",
        "BatchGetSecretValue",
        "GetParameter",
        "GetParameters",
        "GetParametersByPath",
    }
)
_WRITE_PREFIXES = ("Put", "Create", "Update", "Modify", "Attach", "Set", "Add", "Upload", "Copy")
# requestParameters keys naming the object a call touches, most specific first.
_OBJECT_KEYS = (
    "secretId",
    "name",
    "functionName",
    "tableName",
    "logGroupName",
    "trailName",
    "roleName",
    "userName",
    "dBInstanceIdentifier",
    "snapshotId",
    "volumeId",
    "queueUrl",
    "topicArn",
    "keyId",
)


class _Caller:
    """Who made the call and which entity it can be attributed to."""

    __slots__ = ("actor", "instance_id", "kind", "namespace", "pod_ip", "service_account")

    def __init__(self, obj: dict, ctx: AdapterContext) -> None:
        ui = opt_dict(obj.get("userIdentity"), "userIdentity") or {}
        arn = opt_str(ui.get("arn"), "userIdentity.arn")
        self.actor = (
            arn
            or opt_str(ui.get("userName"), "userIdentity.userName")
            or opt_str(ui.get("principalId"), "userIdentity.principalId")
            or opt_str(ui.get("invokedBy"), "userIdentity.invokedBy")
        )
        typ = opt_str(ui.get("type"), "userIdentity.type")
        invoked_by = opt_str(ui.get("invokedBy"), "userIdentity.invokedBy")
        self.kind, self.instance_id = _identity(typ, invoked_by, arn)
        source_ip = opt_str(obj.get("sourceIPAddress"), "sourceIPAddress")
        self.pod_ip = source_ip if ctx.is_internal_address(source_ip) else None
        self.namespace, self.service_account = _mapped_role(ui, arn, ctx)

    @property
    def attributed(self) -> bool:
        return bool(self.pod_ip or self.instance_id or self.namespace)


@lru_cache(maxsize=4096)
def _identity(
    typ: str | None, invoked_by: str | None, arn: str | None
) -> tuple[ActorKind, str | None]:
    """The caller's kind and, for an EC2 instance role session, its instance id.

    Remembered by its inputs: an account has few identities, each making many calls."""
    if (
        invoked_by in _AUTOSCALER_INVOKERS
        or typ == "AWSService"
        or (arn is not None and "AWSServiceRoleForAutoScaling" in arn)
    ):
        return AUTOSCALER_ACTOR, None
    if typ in _PERSON_TYPES:
        return PERSON_ACTOR, None
    if typ == "AssumedRole" and arn is not None:
        session = arn.rsplit("/", 1)[-1]
        if _INSTANCE_SESSION.fullmatch(session):
            return INSTANCE_ACTOR, session
        role = _role_name(arn) or ""
        if role.startswith("AWSReservedSSO_") or "@" in session:
            return PERSON_ACTOR, None
        return SERVICE_ACCOUNT_ACTOR, None
    if typ in ("Role", "AssumedRole", "WebIdentityUser", "SAMLUser"):
        return SERVICE_ACCOUNT_ACTOR, None
    return UNKNOWN_ACTOR, None


def adapt(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    """One CloudTrail record -> instance lifecycle and/or an attributed cloud call."""
    time = parse_time(obj.get("eventTime"), "eventTime")
    name = req_str(obj.get("eventName"), "eventName")
    service = _service(req_str(obj.get("eventSource"), "eventSource"))
    error = opt_str(obj.get("errorCode"), "errorCode")
    if error is not None:
        return Ignored(format=FORMAT, reason=f"error:{error}")
    caller = _Caller(obj, ctx)

    if name in ("RunInstances", "TerminateInstances"):
        return _lifecycle(obj, name, service, time, caller)
    if name == "DescribeInstances":
        bindings = _described_addresses(obj, time)
        if bindings:
            return bindings + (
                [_cloud_call(obj, name, service, time, caller)] if caller.attributed else []
            )
    if not caller.attributed:
        return Ignored(format=FORMAT, reason="unattributed_call")
    return [_cloud_call(obj, name, service, time, caller)]


def _lifecycle(
    obj: dict, name: str, service: str, time: float, caller: _Caller
) -> list[Event] | Ignored:
    """One event per instance id, plus the caller's own cloud call when it is an entity."""
    if name == "RunInstances":
        kind, where = INSTANCE_RUN_EVENT, "responseElements"
    else:
        kind, where = INSTANCE_TERMINATE_EVENT, "requestParameters"
    items = opt_list(get(obj, where, "instancesSet", "items"), f"{where}.instancesSet.items")
    events = [
        Event(
            time=time,
            kind=kind,
            format=FORMAT,
            instance_id=iid,
            pod_ip=address,  # the RunInstances response binds the instance's private IP
            actor=caller.actor,
            actor_kind=caller.kind,
            verb=name,
            resource=service,
        )
        for iid, address in _instances(items, where)
    ]
    if caller.attributed:
        events.append(_cloud_call(obj, name, service, time, caller))
    if not events:
        return Ignored(format=FORMAT, reason="no_instance_ids")
    return events


def _instances(items: list, where: str) -> list[tuple[str, str | None]]:
    """``(instance id, private IP)`` of each item of an ``instancesSet``."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        iid = opt_str(item.get("instanceId"), f"{where}.instancesSet.items[].instanceId")
        ip = opt_str(item.get("privateIpAddress"), f"{where}.instancesSet.items[].privateIpAddress")
        if iid is not None:
            out.append((iid, ip))
    return out


def _described_addresses(obj: dict, time: float) -> list[Event]:
    """INSTANCE_IP bindings from a DescribeInstances response, when the trail logged one."""
    where = "responseElements.reservationSet.items"
    events = []
    for reservation in opt_list(get(obj, "responseElements", "reservationSet", "items"), where):
        items = opt_list(get(reservation, "instancesSet", "items"), f"{where}[].instancesSet")
        for iid, address in _instances(items, "reservationSet.items[]"):
            if address is not None:
                events.append(
                    Event(
                        time=time,
                        kind=INSTANCE_IP_EVENT,
                        format=FORMAT,
                        instance_id=iid,
                        pod_ip=address,
                    )
                )
    return events


def _cloud_call(obj: dict, name: str, service: str, time: float, caller: _Caller) -> Event:
    rp = opt_dict(obj.get("requestParameters"), "requestParameters") or {}
    return Event(  # keywords, not **a dict: msgspec builds a struct from them 3x faster
        time=time,
        kind=CLOUD_CALL_EVENT,
        format=FORMAT,
        actor=caller.actor,
        actor_kind=caller.kind,
        instance_id=caller.instance_id,
        pod_ip=caller.pod_ip,
        namespace=caller.namespace,
        service_account=caller.service_account,
        verb=name,
        resource=service,
        object_name=_object_name(rp),
        api_category=category(service, name),
    )


@lru_cache(maxsize=4096)
def category(service: str, event_name: str) -> ApiCategory | None:
    """The coarse API-call category of a CloudTrail event name (feature spec ``api_*``);
    remembered, as a trail repeats few names."""
    if (service, event_name) in _REPO_READS:
        return REPO_READ_CATEGORY
    if event_name in _SECRET_READS:
        return SECRET_READ_CATEGORY
    if event_name in _DESTRUCTIVE:
        return CLOUD_DESTRUCTIVE_CATEGORY
    if event_name.startswith(("List", "Describe")):
        return LIST_CATEGORY
    if event_name.startswith(("Get", "Head")):
        return READ_CATEGORY
    if event_name.startswith("Delete"):
        return DELETE_CATEGORY
    if event_name.startswith(_WRITE_PREFIXES):
        return WRITE_CATEGORY
    return None


def _service(event_source: str) -> str:
    """``s3.amazonaws.com`` -> ``s3``; ``aws:s3`` -> ``s3``."""
    return event_source.removeprefix("aws:").split(".", 1)[0]


def _object_name(rp: dict) -> str | None:
    bucket = rp.get("bucketName")
    if isinstance(bucket, str) and bucket:
        key = rp.get("key")
        return f"{bucket}/{key}" if isinstance(key, str) and key else bucket
    repo = rp.get("repositoryName")
    if isinstance(repo, str) and repo:
        path = rp.get("filePath") or rp.get("folderPath") or rp.get("blobId")
        return f"{repo}/{path}" if isinstance(path, str) and path else repo
    for key in _OBJECT_KEYS:
        value = rp.get(key)
        if isinstance(value, str) and value:
            return value
    names = rp.get("names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    return None


def _role_name(arn: str) -> str | None:
    """``arn:aws:sts::1:assumed-role/NAME/session`` or ``arn:aws:iam::1:role/path/NAME``."""
    resource = arn.split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        parts = resource.split("/")
        return parts[1] if len(parts) >= 3 else None
    if resource.startswith("role/"):
        return resource.rsplit("/", 1)[-1]
    return None


def _mapped_role(ui: dict, arn: str | None, ctx: AdapterContext) -> tuple[str | None, str | None]:
    """``role_map`` lookup by issuer ARN, role name or the session ARN itself."""
    if not ctx.role_map:
        return None, None
    issuer = get(ui, "sessionContext", "sessionIssuer")
    keys = [
        get(issuer, "arn"),
        get(issuer, "userName"),
        arn,
        _role_name(arn) if arn else None,
    ]
    for key in keys:
        if isinstance(key, str) and key in ctx.role_map:
            ns, _, sa = ctx.role_map[key].partition("/")
            return ns or None, sa or None
    return None, None
