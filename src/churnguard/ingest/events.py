"""The canonical event: the one type between the format adapters and everything after them.

Adapters (``churnguard.ingest.*``) turn a decoded record of any supported format into zero
or more :class:`Event`; entity resolution, features, scoring and evidence only ever see this
struct. It is flat on purpose: one struct with optional fields is cheaper to build and to
route than a class hierarchy, and msgspec encodes it for checkpoints as it is.

Times are event time in float seconds since the Unix epoch (UTC), never the wall clock.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class EventKind(StrEnum):
    """What happened. One value per behaviour the features care about."""

    POD_CREATE = "pod_create"  # audit create pods, ResponseComplete
    POD_DELETE = "pod_delete"  # audit delete pods (or eviction), ResponseComplete
    POD_EXEC = "pod_exec"  # audit pods/exec, pods/attach, pods/portforward (subresource)
    API_CALL = "api_call"  # a Kubernetes API call made *by* a pod (its service account)
    CLOUD_CALL = "cloud_call"  # a CloudTrail call attributed to a pod or an instance
    INSTANCE_RUN = "instance_run"  # CloudTrail RunInstances, one event per instance id
    INSTANCE_TERMINATE = "instance_terminate"  # CloudTrail TerminateInstances, per instance id
    PROCESS_EXEC = "process_exec"  # Tetragon process_exec, Falco spawned_process-like rules
    PROCESS_EXIT = "process_exit"  # Tetragon process_exit
    FILE_WRITE = "file_write"  # a file opened for writing (Tetragon kprobe, Falco fd.name)
    NET_FLOW = "net_flow"  # a connection / flow record (Hubble, generic flow)
    RUNTIME_ALERT = "runtime_alert"  # a Falco rule that fired with no finer mapping
    POD_IP = "pod_ip"  # carries only an IP <-> pod binding (e.g. audit pod status)
    INSTANCE_IP = "instance_ip"  # only an IP <-> instance binding (DescribeInstances response)


class ActorKind(StrEnum):
    """Who did it, in the terms the deletion features use."""

    CONTROLLER = "controller"  # kube-controller-manager / its controller service accounts
    NODE = "node"  # system:node:* (kubelet evictions, node lifecycle)
    PERSON = "person"  # a human user (not system:, not a service account)
    SERVICE_ACCOUNT = "service_account"  # some other workload identity
    AUTOSCALER = "autoscaler"  # AWS autoscaling / an AWSService invoker / a node autoscaler
    INSTANCE = "instance"  # an EC2 instance role session
    UNKNOWN = "unknown"


class ApiCategory(StrEnum):
    """Coarse API-call mix used by the features (`api_*` in the feature spec)."""

    READ = "read"
    LIST = "list"
    WRITE = "write"
    DELETE = "delete"
    EXEC = "exec"
    SECRET_READ = "secret_read"
    CLOUD_DESTRUCTIVE = "cloud_destructive"
    REPO_READ = "repo_read"


# Origin, Event and EntityKey are made by the tens of thousands a second and held in
# pending windows and heaps; they are untracked by the cyclic garbage collector
# (``gc=False``: their fields are strings, numbers, tuples and string dicts, never a
# reference back to themselves), so the collector no longer walks every held event
# (docs/benchmarks.md, "speed10": about half the collector's time in the feature stage).


class Origin(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Where a record came from: a file line or a Kafka coordinate. Set by the driver."""

    source: str = ""  # the input's name: file path or topic
    line: int | None = None  # 1-based line number in a file
    partition: int | None = None
    offset: int | None = None  # Kafka offset, or a file document's 0-based item index

    def pointer(self) -> str:
        """A short human pointer: ``file:line``, ``file#item`` or ``topic[partition]@offset``."""
        if self.offset is not None and self.partition is None:
            return f"{self.source}#{self.offset}"
        if self.offset is not None:
            return f"{self.source}[{self.partition}]@{self.offset}"
        if self.line is not None:
            return f"{self.source}:{self.line}"
        return self.source


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One canonical event, in event time.

    Identity fields say *which entity* the event is about (the subject): a pod is known by
    ``namespace``/``pod`` (and ``pod_uid``), a container by ``container_id``, a cloud
    instance by ``instance_id``; ``pod_ip`` lets the entity table attribute flows and
    CloudTrail calls that carry only an address (on INSTANCE_RUN / INSTANCE_IP it is the
    instance's private address). ``actor`` is who performed the action
    (for deletes and execs: the person or controller; for API calls: the pod itself).
    """

    time: float
    kind: EventKind
    format: str  # the adapter that produced it: k8s_audit, cloudtrail, falco, tetragon, flow
    # subject identity
    namespace: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    container: str | None = None
    container_id: str | None = None
    pod_ip: str | None = None
    instance_id: str | None = None
    node: str | None = None
    # metadata known at creation or from runtime enrichment
    workload: str | None = None  # "Deployment/web", "CronJob/backup", "Job/x", ...
    image: str | None = None
    service_account: str | None = None
    labels: dict[str, str] | None = None
    # who performed it
    actor: str | None = None
    actor_kind: ActorKind | None = None
    # the authenticated user behind an impersonation (``kubectl --as``): ``actor`` is the
    # impersonated identity that acted, this is who really asked, kept for the evidence
    actor_via: str | None = None
    # a person's groups from the identity provider (audit ``user.groups`` without the
    # ``system:`` ones): who their peers are (features: a new person in a known team)
    actor_groups: tuple[str, ...] = ()
    # the source's id of the action (audit ``auditID``) when one action may arrive as
    # several records (an exec at ResponseStarted and ResponseComplete): counted once
    event_id: str | None = None
    # API calls (Kubernetes or cloud)
    verb: str | None = None  # k8s verb or CloudTrail eventName
    resource: str | None = None  # pods, secrets, s3:object, ...
    object_name: str | None = None  # object read/written (for distinct objects)
    api_category: ApiCategory | None = None
    # processes and files
    binary: str | None = None
    args: str | None = None
    file_path: str | None = None
    bytes_written: int = 0
    # network
    dst_ip: str | None = None
    dst_port: int | None = None
    dst_fqdn: str | None = None
    dst_external: bool | None = None  # None when the adapter cannot tell
    bytes_out: int = 0
    bytes_in: int = 0
    # False for a flow record that reports on a connection already counted (a socket's
    # close with its byte totals, a listening socket): bytes count, connection timing not
    opens_connection: bool = True
    # free text the explanation can quote (Falco rule name, audit subresource, ...)
    detail: str | None = None
    origin: Origin | None = None


class EntityKind(StrEnum):
    POD = "pod"
    INSTANCE = "instance"
    CONTAINER = "container"  # a runtime container no pod accounts for (docker/ctr run on a node)


# On Python 3.11 reading an enum member through its class (``EntityKind.POD``) runs
# EnumType.__getattr__'s attribute hook: ~0.17 µs more than reading a module global, and
# routing and feature rows read ~40 members an event (11 % of the feature stage's
# instructions, docs/benchmarks.md "speed15"). The per-event code compares kinds with
# module constants bound to the same members instead (``is`` holds: they are the members),
# defined here once for every module.
CLOUD_DESTRUCTIVE_CATEGORY = ApiCategory.CLOUD_DESTRUCTIVE
DELETE_CATEGORY = ApiCategory.DELETE
EXEC_CATEGORY = ApiCategory.EXEC
LIST_CATEGORY = ApiCategory.LIST
READ_CATEGORY = ApiCategory.READ
REPO_READ_CATEGORY = ApiCategory.REPO_READ
SECRET_READ_CATEGORY = ApiCategory.SECRET_READ
WRITE_CATEGORY = ApiCategory.WRITE
AUTOSCALER_ACTOR = ActorKind.AUTOSCALER
CONTROLLER_ACTOR = ActorKind.CONTROLLER
INSTANCE_ACTOR = ActorKind.INSTANCE
NODE_ACTOR = ActorKind.NODE
PERSON_ACTOR = ActorKind.PERSON
SERVICE_ACCOUNT_ACTOR = ActorKind.SERVICE_ACCOUNT
UNKNOWN_ACTOR = ActorKind.UNKNOWN
CONTAINER_ENTITY = EntityKind.CONTAINER
INSTANCE_ENTITY = EntityKind.INSTANCE
POD_ENTITY = EntityKind.POD
API_CALL_EVENT = EventKind.API_CALL
CLOUD_CALL_EVENT = EventKind.CLOUD_CALL
FILE_WRITE_EVENT = EventKind.FILE_WRITE
INSTANCE_IP_EVENT = EventKind.INSTANCE_IP
INSTANCE_RUN_EVENT = EventKind.INSTANCE_RUN
INSTANCE_TERMINATE_EVENT = EventKind.INSTANCE_TERMINATE
NET_FLOW_EVENT = EventKind.NET_FLOW
POD_CREATE_EVENT = EventKind.POD_CREATE
POD_DELETE_EVENT = EventKind.POD_DELETE
POD_EXEC_EVENT = EventKind.POD_EXEC
POD_IP_EVENT = EventKind.POD_IP
PROCESS_EXEC_EVENT = EventKind.PROCESS_EXEC
PROCESS_EXIT_EVENT = EventKind.PROCESS_EXIT
RUNTIME_ALERT_EVENT = EventKind.RUNTIME_ALERT


class EntityKey(msgspec.Struct, frozen=True, order=True, gc=False):
    """The key an entity's state is kept under.

    Pods: ``(pod, namespace, pod name)``; instances: ``(instance, "", instance id)``;
    containers outside the orchestrator: ``(container, node, 12-character container id)``.
    The container name and ids of a pod are attributes of the pod entity: audit logs only
    know pods, runtime events know containers, and every behaviour the strategies name is
    visible at pod granularity. A container entity exists only for a runtime container id
    no pod ever claimed.
    """

    kind: EntityKind
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.kind is INSTANCE_ENTITY:
            return f"instance/{self.name}"
        if self.kind is CONTAINER_ENTITY:
            return f"container/{self.namespace}/{self.name}"
        return f"{self.namespace}/{self.name}"


class Rejected(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A record that could not be turned into events: goes to the dead-letter output."""

    reason: str  # short machine-friendly reason, e.g. "malformed_json", "unknown_format"
    detail: str = ""  # human explanation
    origin: Origin | None = None
    record: str = ""  # the raw record (truncated to a bounded size by the decoder)


class Ignored(msgspec.Struct, kw_only=True):
    """A well-formed record that carries nothing the features use, with the reason.

    Counted, never dead-lettered: e.g. an audit ``RequestReceived`` stage or a watch.
    """

    format: str
    reason: str
