"""Kubernetes audit (``audit.k8s.io/v1``, ``v1beta1``) -> pod lifecycle, execs, pod API calls.

Only ``ResponseComplete`` carries the outcome, so the other stages are ignored, except an
exec / attach / port-forward at ``ResponseStarted`` (a websocket session is often audited
only there; the ``auditID`` it carries lets the entity count the session once).
``kubectl --as`` acts as the impersonated user; the real one is kept as ``actor_via``. What a
record means depends on the resource and on *who* called: lifecycle and exec events are
about the target pod (actor = the caller), API calls are about the calling pod (known from
its bound token's ``user.extra`` pod name, else from its service account). The control
plane's own traffic — controllers, kubelets, the scheduler, discovery — is ignored with a
reason, so real audit noise yields counts, not entities.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from churnguard.ingest.common import (
    AdapterContext,
    classify_k8s_user,
    first_time,
    get,
    idp_groups,
    opt_dict,
    opt_int,
    opt_list,
    opt_str,
    req_str,
    service_account_of,
    str_map,
    workload_ref,
)
from churnguard.ingest.events import (  # the members, read without the enum hook
    API_CALL_EVENT,
    CONTROLLER_ACTOR,
    DELETE_CATEGORY,
    EXEC_CATEGORY,
    LIST_CATEGORY,
    NODE_ACTOR,
    PERSON_ACTOR,
    POD_CREATE_EVENT,
    POD_DELETE_EVENT,
    POD_EXEC_EVENT,
    POD_IP_EVENT,
    READ_CATEGORY,
    SECRET_READ_CATEGORY,
    SERVICE_ACCOUNT_ACTOR,
    WRITE_CATEGORY,
    ApiCategory,
    Event,
    Ignored,
)

FORMAT = "k8s_audit"
EXEC_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
_POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
_VERB_CATEGORY = {
    "get": READ_CATEGORY,
    "list": LIST_CATEGORY,
    "watch": LIST_CATEGORY,
    "create": WRITE_CATEGORY,
    "update": WRITE_CATEGORY,
    "patch": WRITE_CATEGORY,
    "delete": DELETE_CATEGORY,
    "deletecollection": DELETE_CATEGORY,
}


class _Who:
    """Who acted: the impersonated user when there is one, with the real user kept."""

    __slots__ = ("groups", "kind", "real", "username", "via")

    def __init__(self, obj: dict) -> None:
        self.real = req_str(get(obj, "user", "username"), "user.username")
        groups = opt_list(get(obj, "user", "groups"), "user.groups")
        imp = opt_dict(obj.get("impersonatedUser"), "impersonatedUser") or {}
        acting = opt_str(imp.get("username"), "impersonatedUser.username")
        if acting is not None:
            groups = opt_list(imp.get("groups"), "impersonatedUser.groups")
        self.username = acting or self.real
        self.via = self.real if acting is not None else None
        self.groups = frozenset([g for g in groups if isinstance(g, str)])
        self.kind = classify_k8s_user(self.username, self.groups)

    def stamp(self, event: Event) -> None:
        """Set who acted on an event of the record (every one of them has the same actor).

        Set on the built event, not spread into ``Event(**...)``: msgspec's keyword path for
        a dict is ~3x slower than for keywords or attribute sets."""
        event.actor = self.username
        event.actor_kind = self.kind
        event.actor_via = self.via
        if self.kind is PERSON_ACTOR:
            event.actor_groups = idp_groups(self.groups)


def looks_like(obj: dict) -> bool:
    """An audit event recognised by its fields when ``apiVersion``/``kind`` are absent.

    Falco's k8saudit traces and some log pipelines drop them; ``auditID`` + ``stage`` +
    ``verb`` is a combination no other supported format carries.
    """
    return (  # auditID first: the one lookup that rules out every other format's record
        isinstance(obj.get("auditID"), str)
        and obj.get("kind") in (None, "Event")
        and isinstance(obj.get("stage"), str)
        and isinstance(obj.get("verb"), str)
    )


def adapt(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    """One audit ``Event`` object -> events about pods, or the reason it carries none."""
    stage = req_str(obj.get("stage"), "stage")
    ref = opt_dict(obj.get("objectRef"), "objectRef")
    # A websocket exec/attach/port-forward session is often audited only at
    # ResponseStarted; both stages carry the auditID, so the entity counts it once.
    session = _is_session(ref)
    if stage != "ResponseComplete" and not (stage == "ResponseStarted" and session):
        return Ignored(format=FORMAT, reason=f"stage:{stage}")
    verb = req_str(obj.get("verb"), "verb")
    who = _Who(obj)
    # stageTimestamp: when the pod exists / the exec stream started or ended; v1beta1
    # events carry only ``timestamp``.
    time = first_time(
        [
            (obj.get("stageTimestamp"), "stageTimestamp"),
            (obj.get("timestamp"), "timestamp"),
            (obj.get("requestReceivedTimestamp"), "requestReceivedTimestamp"),
        ],
        "stageTimestamp",
    )
    code = opt_int(get(obj, "responseStatus", "code"), "responseStatus.code")
    if code is not None and code >= 400:
        return Ignored(format=FORMAT, reason="failed_request")
    if not ref or not ref.get("resource"):
        return Ignored(format=FORMAT, reason="non_resource_url")
    if verb == "watch":
        return Ignored(format=FORMAT, reason="verb:watch")

    resource = req_str(ref.get("resource"), "objectRef.resource")
    subresource = opt_str(ref.get("subresource"), "objectRef.subresource")
    event_id = opt_str(obj.get("auditID"), "auditID") if session else None
    events: list[Event] = []
    if resource == "pods":
        target = _pod_event(obj, ref, verb, subresource, time)
        if isinstance(target, Ignored):
            return target
        if target is not None:
            events.append(target)

    call = _call_by_pod(obj, ref, verb, resource, subresource, who, time)
    if call is not None:
        events.append(call)
    if events:
        for ev in events:
            ev.event_id = event_id
            who.stamp(ev)
        return events
    if who.kind in (CONTROLLER_ACTOR, NODE_ACTOR):
        return Ignored(format=FORMAT, reason="control_plane")
    return Ignored(format=FORMAT, reason="not_pod_related")


def _is_session(ref: dict | None) -> bool:
    """An exec / attach / port-forward into a pod (a streaming session)."""
    subresource = ref.get("subresource") if ref is not None else None
    return (
        ref is not None
        and ref.get("resource") == "pods"
        and isinstance(subresource, str)
        and subresource in EXEC_SUBRESOURCES
    )


def _pod_event(
    obj: dict,
    ref: dict,
    verb: str,
    subresource: str | None,
    time: float,
) -> Event | Ignored | None:
    """The lifecycle / exec / IP event about the target pod, if the call is one (its actor
    stamped by the caller)."""
    namespace = opt_str(ref.get("namespace"), "objectRef.namespace")
    name = opt_str(ref.get("name"), "objectRef.name")
    uid = opt_str(ref.get("uid"), "objectRef.uid")
    if subresource is None and verb == "create":
        return _pod_create(obj, namespace, name, uid, time)
    if subresource is None and verb == "delete":
        namespace, name, uid = _merge_identity(_pod_fields(obj), namespace, name, uid)
        return Event(
            time=time,
            kind=POD_DELETE_EVENT,
            format=FORMAT,
            namespace=namespace,
            pod=name,
            pod_uid=uid,
        )
    if subresource == "eviction" and verb == "create":
        return Event(
            time=time,
            kind=POD_DELETE_EVENT,
            format=FORMAT,
            namespace=namespace,
            pod=name,
            pod_uid=uid,
            detail="eviction",
        )
    if subresource in EXEC_SUBRESOURCES and verb in ("create", "get"):
        return Event(
            time=time,
            kind=POD_EXEC_EVENT,
            format=FORMAT,
            namespace=namespace,
            pod=name,
            pod_uid=uid,
            detail=subresource,
            args=_exec_command(obj.get("requestURI")),
        )
    if subresource == "status" and verb in ("patch", "update"):
        ip = _pod_ip(obj)
        if ip is not None and name is not None:
            return Event(
                time=time,
                kind=POD_IP_EVENT,
                format=FORMAT,
                namespace=namespace,
                pod=name,
                pod_uid=uid or opt_str(get(obj, "requestObject", "metadata", "uid"), "uid"),
                pod_ip=ip,
            )
    return None


def _pod_create(
    obj: dict,
    namespace: str | None,
    name: str | None,
    uid: str | None,
    time: float,
) -> Event | Ignored:
    meta = _pod_fields(obj)
    namespace, name, uid = _merge_identity(meta, namespace, name, uid)
    if name is None:
        # generateName creates at Metadata level: the name exists only in the response.
        return Ignored(format=FORMAT, reason="pod_create_without_name")
    return Event(
        time=time,
        kind=POD_CREATE_EVENT,
        format=FORMAT,
        namespace=namespace,
        pod=name,
        pod_uid=uid,
        workload=meta.get("workload"),
        image=meta.get("image"),
        container=meta.get("container"),
        service_account=meta.get("service_account"),
        node=meta.get("node"),
        labels=meta.get("labels"),
        pod_ip=meta.get("pod_ip"),
    )


def _merge_identity(
    meta: dict[str, Any], namespace: str | None, name: str | None, uid: str | None
) -> tuple[str | None, str | None, str | None]:
    """Namespace, name and uid: objectRef first (what the API server resolved), the pod
    object fills the gaps."""
    return (
        namespace or meta.get("namespace"),
        name or meta.get("pod"),
        uid or meta.get("pod_uid"),
    )


def _pod_object(obj: dict) -> dict | None:
    """The Pod carried by a Request/RequestResponse level record (response preferred)."""
    for key in ("responseObject", "requestObject"):
        candidate = obj.get(key)
        if (
            isinstance(candidate, dict)
            and candidate.get("kind") in (None, "Pod")
            and isinstance(candidate.get("metadata"), dict)
        ):
            return candidate
    return None


def _pod_fields(obj: dict) -> dict[str, Any]:
    """Metadata, owner, service account, node, first container and IP of the pod object."""
    pod = _pod_object(obj)
    if pod is None:
        return {}
    meta = pod["metadata"]
    owners = opt_list(meta.get("ownerReferences"), "metadata.ownerReferences")
    owner = owners[0] if owners and isinstance(owners[0], dict) else {}
    spec = opt_dict(pod.get("spec"), "spec") or {}
    containers = opt_list(spec.get("containers"), "spec.containers")
    first = containers[0] if containers and isinstance(containers[0], dict) else {}
    return {
        "namespace": opt_str(meta.get("namespace"), "metadata.namespace"),
        "pod": opt_str(meta.get("name"), "metadata.name"),
        "pod_uid": opt_str(meta.get("uid"), "metadata.uid"),
        "labels": str_map(meta.get("labels"), "metadata.labels"),
        "workload": workload_ref(owner.get("kind"), owner.get("name")),
        "service_account": opt_str(spec.get("serviceAccountName"), "spec.serviceAccountName"),
        "node": opt_str(spec.get("nodeName"), "spec.nodeName"),
        "container": opt_str(first.get("name"), "spec.containers[0].name"),
        "image": opt_str(first.get("image"), "spec.containers[0].image"),
        "pod_ip": opt_str(get(pod, "status", "podIP"), "status.podIP"),
    }


def _pod_ip(obj: dict) -> str | None:
    for key in ("requestObject", "responseObject"):
        ip = opt_str(get(obj, key, "status", "podIP"), f"{key}.status.podIP")
        if ip is not None:
            return ip
    return None


def _exec_command(uri: Any) -> str | None:
    """``?command=sh&command=-c&command=id`` -> ``"sh -c id"`` (URL-decoded)."""
    if not isinstance(uri, str) or "command=" not in uri:
        return None
    parts = parse_qs(urlsplit(uri).query).get("command")
    return " ".join(parts) if parts else None


def _call_by_pod(
    obj: dict,
    ref: dict,
    verb: str,
    resource: str,
    subresource: str | None,
    who: _Who,
    time: float,
) -> Event | None:
    """An API_CALL about the calling pod, when the caller is a pod (or a workload SA).

    The calling pod is the authenticated user's (its bound token); an impersonation it
    made is kept as the acting identity.
    """
    extra = opt_dict(get(obj, "user", "extra"), "user.extra") or {}
    pod_name = _first_str(extra.get(_POD_NAME_KEY), f"user.extra.{_POD_NAME_KEY}")
    pod_uid = _first_str(extra.get(_POD_UID_KEY), f"user.extra.{_POD_UID_KEY}")
    sa = service_account_of(who.real)
    workload_sa = sa is not None and classify_k8s_user(who.real) is SERVICE_ACCOUNT_ACTOR
    if pod_name is None and not workload_sa:
        return None
    obj_ns = opt_str(ref.get("namespace"), "objectRef.namespace")
    obj_name = opt_str(ref.get("name"), "objectRef.name")
    if obj_name is not None and obj_ns is not None:
        object_name: str | None = f"{obj_ns}/{obj_name}"
    else:
        object_name = obj_name
    return Event(
        time=time,
        kind=API_CALL_EVENT,
        format=FORMAT,
        namespace=sa[0] if sa else None,
        pod=pod_name,
        pod_uid=pod_uid,
        service_account=sa[1] if sa else None,
        verb=verb,
        resource=f"{resource}/{subresource}" if subresource else resource,
        object_name=object_name,
        api_category=_category(verb, resource, subresource),
    )


def _category(verb: str, resource: str, subresource: str | None) -> ApiCategory | None:
    if subresource in EXEC_SUBRESOURCES:
        return EXEC_CATEGORY
    if resource == "secrets" and verb in ("get", "list"):
        return SECRET_READ_CATEGORY
    return _VERB_CATEGORY.get(verb)


def _first_str(value: Any, field: str) -> str | None:
    """``user.extra`` values are lists of strings; take the first."""
    if isinstance(value, list):
        return opt_str(value[0], field) if value else None
    return opt_str(value, field)
