"""The simulated cluster: nodes, pods, instances, an event-time scheduler, and the telemetry
each action leaves in every format.

Scenarios never build records themselves; they call actions here (create a pod, exec into
it, write a file, open a connection, call AWS) and each action writes what the real
control plane, CloudTrail, Falco, Tetragon and the CNI would have written. So the formats
agree with each other by construction: a pod's uid, IP, container id and node are the same
in its audit create, its flows and its runtime events.

Over 400 lines on purpose: the actions share one event-time queue and one set of
cross-format identifiers (uid, IP, container id); splitting them would split that state.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from churnguard.simulate import records as rec
from churnguard.simulate.world import ACCOUNT, REGION, External, Ids, Sink, exec_id

CONTROLLER_UA = "kube-controller-manager/v1.29.2 (linux/amd64) kubernetes/4b8e819/"
KUBELET_UA = "kubelet/v1.29.2 (linux/amd64) kubernetes/4b8e819"
RUNNER_UA = "gitlab-runner 16.9.1 (16-9-stable; go1.21.7; linux/amd64)"
CONTROLLERS = {
    "ReplicaSet": "system:serviceaccount:kube-system:replicaset-controller",
    "Job": "system:serviceaccount:kube-system:job-controller",
    "StatefulSet": "system:serviceaccount:kube-system:statefulset-controller",
    "DaemonSet": "system:serviceaccount:kube-system:daemon-set-controller",
}
TTL_CONTROLLER = "system:serviceaccount:kube-system:ttl-after-finished-controller"
GC_CONTROLLER = "system:serviceaccount:kube-system:generic-garbage-collector"
CLUSTER_AUTOSCALER = "system:serviceaccount:kube-system:cluster-autoscaler"
PEOPLE = ("alice@corp.example", "bob@corp.example", "carol@corp.example", "dan@corp.example")
REQUEST_RECEIVED_SHARE = 0.04  # audit backends that log every stage: some RequestReceived too
HUBBLE_SHARE = 0.1  # in-cluster connections seen by Hubble instead of the byte-counting export


@dataclass(eq=False, slots=True)
class Node:
    name: str
    ip: str
    instance_id: str
    index: int
    next_ip: int = 2

    def alloc_ip(self) -> str:
        """Pod IPs from the node's own /16, never reused within a run."""
        n = self.next_ip
        self.next_ip += 1
        return f"10.{100 + self.index}.{n // 250}.{n % 250 + 2}"


@dataclass(eq=False, slots=True)
class Proc:
    """A process in a pod as Tetragon reports it (the dict is reused by child events)."""

    body: dict
    parent: dict | None

    @property
    def exec_id(self) -> str:
        return self.body["exec_id"]


@dataclass(eq=False, slots=True)
class Namespace:
    name: str
    personality: str
    index: int


@dataclass(eq=False, slots=True)
class Pod:
    namespace: Namespace
    name: str
    uid: str
    node: Node
    ip: str
    container: str
    container_id: str
    image: str
    service_account: str
    labels: dict[str, str]
    created: float
    workload_kind: str | None  # Deployment, CronJob, StatefulSet, DaemonSet, None (bare)
    workload_name: str | None
    scenario: str
    session: str  # its IRSA botocore session name
    tetragon: dict = field(default_factory=dict)
    main: Proc | None = None
    main_exited: bool = False
    deleted: float | None = None
    malicious: bool = False
    busy_until: float = 0.0  # scheduled work (a job, a build) runs until then
    pids: int = 1
    on_gone: Callable[[Cluster, float, Pod], None] | None = None
    traffic: Callable[[Cluster, float, Pod], None] | None = None
    touched_by: str = ""  # a benign scenario that acted on it (debugged, drained): its kind

    @property
    def kind(self) -> str:
        """Its benign kind for the evaluation: who last acted on it, else who made it."""
        return self.touched_by or self.scenario

    @property
    def ns(self) -> str:
        return self.namespace.name

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.ns}:{self.service_account}"

    def alive(self, t: float) -> bool:
        return self.created <= t and self.deleted is None


@dataclass(slots=True)
class Instance:
    instance_id: str
    private_ip: str
    launched: float
    scenario: str
    terminated: float | None = None
    malicious: bool = False

    @property
    def kind(self) -> str:
        return self.scenario


@dataclass(slots=True)
class Label:
    kind: str
    namespace: str | None
    pod: str | None
    instance_id: str | None
    technique: str
    scenario: str
    start: float
    end: float
    node: str | None = None  # a container outside the orchestrator: its node ...
    container_id: str | None = None  # ... and its 12-character runtime container id

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "namespace": self.namespace,
            "pod": self.pod,
            "instance_id": self.instance_id,
            "technique": self.technique,
            "scenario": self.scenario,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
        }
        if self.kind == "container":
            out.update(node=self.node, container_id=self.container_id)
        return out


class Cluster:
    """State plus an event-time scheduler; every action emits its telemetry into the sink."""

    def __init__(
        self,
        rng: random.Random,
        start: float,
        hours: float,
        namespaces: list[Namespace],
        node_count: int,
    ) -> None:
        self.rng = rng
        self.ids = Ids(rng)
        self.sink = Sink()
        self.start = start
        self.end = start + hours * 3600.0
        self.namespaces = namespaces
        self.nodes = [self._node(i) for i in range(node_count)]
        self.live: dict[str, Pod] = {}  # uid -> pod, insertion ordered (deterministic)
        self.pods: list[Pod] = []
        self.instances: list[Instance] = []
        self.labels: list[Label] = []
        self.counts: dict[str, Counter[str]] = {}
        self._queue: list[tuple[float, int, Callable[..., None], tuple]] = []
        self._seq = 0

    # -- scheduling -----------------------------------------------------------------------

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(t, *args)`` at event time ``t`` (dropped past the end of the run)."""
        if t < self.end:
            heapq.heappush(self._queue, (t, self._seq, fn, args))
            self._seq += 1

    def run(self, on_time: Callable[[float], None] | None = None) -> None:
        """Play the event queue; ``on_time`` hears the simulated seconds done now and then."""
        done = 0
        while self._queue:
            t, _, fn, args = heapq.heappop(self._queue)
            fn(t, *args)
            done += 1
            if on_time is not None and done % 4096 == 0:
                on_time(t - self.start)

    def count(self, scenario: str, what: str, n: int = 1) -> None:
        self.counts.setdefault(scenario, Counter())[what] += n

    def jitter(self, lo: float, hi: float) -> float:
        return self.rng.uniform(lo, hi)

    def live_pods(self, t: float, pred: Callable[[Pod], bool]) -> list[Pod]:
        return [p for p in self.live.values() if p.created <= t and pred(p)]

    def _node(self, i: int) -> Node:
        a, b = 16 + (i * 7) % 48, 10 + (i * 37) % 240
        return Node(f"ip-10-0-{a}-{b}.ec2.internal", f"10.0.{a}.{b}", self.ids.instance_id(), i)

    # -- Kubernetes audit ------------------------------------------------------------------

    def audit(
        self,
        t: float,
        verb: str,
        uri: str,
        username: str,
        ref: dict | None,
        code: int = 200,
        *,
        level: str = "Metadata",
        user_agent: str = rec.KUBECTL_UA,
        source_ip: str = "10.0.5.21",
        extra: dict | None = None,
        request_object: dict | None = None,
        response_object: dict | None = None,
    ) -> None:
        audit_id = self.ids.uid()
        latency = self.rng.uniform(0.002, 0.04)
        user = rec.k8s_user(username, extra=extra)
        self.sink.add(
            "k8s_audit",
            t + latency,
            rec.audit_event(
                audit_id=audit_id,
                t_received=t,
                t_complete=t + latency,
                verb=verb,
                uri=uri,
                user=user,
                source_ip=source_ip,
                user_agent=user_agent,
                object_ref=ref,
                code=code,
                level=level,
                request_object=request_object,
                response_object=response_object,
            ),
        )
        if self.rng.random() < REQUEST_RECEIVED_SHARE:
            self.sink.add(
                "k8s_audit",
                t,
                rec.audit_event(
                    audit_id=audit_id,
                    t_received=t,
                    t_complete=t,
                    verb=verb,
                    uri=uri,
                    user=user,
                    source_ip=source_ip,
                    user_agent=user_agent,
                    object_ref=ref,
                    code=None,
                    level=level,
                    stage="RequestReceived",
                    request_object=request_object,
                ),
            )

    def create_pod(
        self,
        t: float,
        ns: Namespace,
        *,
        scenario: str,
        image: str,
        container: str,
        service_account: str,
        creator: str,
        binary: str,
        args: str,
        name: str | None = None,
        owner: tuple[str, str, str] | None = None,
        workload: tuple[str, str] | None = None,
        labels: dict[str, str] | None = None,
        node: Node | None = None,
        user_agent: str | None = None,
    ) -> Pod:
        """Create (audit), bind an IP (kubelet status patch) and start the main process.

        ``owner`` is ``(kind, name, uid)`` of the controlling object (ReplicaSet, Job, ...);
        its pods get a ``generateName`` name. ``workload`` is what Tetragon reports.
        """
        generate_name = None
        if name is None:
            assert owner is not None, "a pod without an owner needs a name"
            generate_name = f"{owner[1]}-"
            name = generate_name + self.ids.suffix(5)
        node = node or self.rng.choice(self.nodes)
        uid = self.ids.uid()
        labels = dict(labels or {})
        pod = Pod(
            namespace=ns,
            name=name,
            uid=uid,
            node=node,
            ip=node.alloc_ip(),
            container=container,
            container_id=self.ids.hex(64),
            image=image,
            service_account=service_account,
            labels=labels,
            created=t,
            workload_kind=workload[0] if workload else None,
            workload_name=workload[1] if workload else None,
            scenario=scenario,
            session=f"botocore-session-{self.ids.digits(10)}",
        )
        owner_ref = rec.owner_ref(*owner) if owner else None
        body = rec.pod_object(
            namespace=ns.name,
            name=name,
            generate_name=generate_name,
            uid=uid,
            labels=labels,
            owner=owner_ref,
            service_account=service_account,
            node=node.name,
            container=container,
            image=image,
            created=t,
        )
        ua = user_agent or (
            CONTROLLER_UA + creator if creator.startswith("system:") else rec.KUBECTL_UA
        )
        self.audit(
            t,
            "create",
            f"/api/v1/namespaces/{ns.name}/pods",
            creator,
            rec.object_ref("pods", ns.name, name),
            201,
            level="RequestResponse",
            user_agent=ua,
            response_object=body,
        )
        t_ip = t + self.rng.uniform(1.0, 4.0)
        self.audit(
            t_ip,
            "patch",
            f"/api/v1/namespaces/{ns.name}/pods/{name}/status",
            f"system:node:{node.name}",
            rec.object_ref("pods", ns.name, name, uid=uid, subresource="status"),
            level="Request",
            user_agent=KUBELET_UA,
            source_ip=node.ip,
            request_object={"status": {"podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}},
        )
        t_start = t_ip + self.rng.uniform(0.3, 2.0)
        pod.tetragon = rec.tetragon_pod(
            namespace=ns.name,
            name=name,
            container_id=pod.container_id,
            container=container,
            image=image,
            image_digest=self.ids.hex(64),
            started=t_start,
            labels=labels,
            workload=pod.workload_name,
            workload_kind=pod.workload_kind,
        )
        shim = {
            "exec_id": exec_id(node.name, int(t_start * 1e9) - 5_000_000, 1),
            "pid": 1000 + self.rng.randrange(50000),
            "uid": 0,
            "cwd": "/",
            "binary": "/usr/bin/containerd-shim-runc-v2",
            "arguments": f"-namespace k8s.io -id {pod.container_id}",
            "flags": "execve clone",
            "start_time": rec.rfc3339(t_start - 0.005, 9),
        }
        pod.main = self.exec_proc(t_start, pod, binary, args, parent=shim)
        self.live[uid] = pod
        self.pods.append(pod)
        self.count(scenario, "pods")
        return pod

    def delete_pod(self, t: float, pod: Pod, username: str, *, eviction: bool = False) -> None:
        """Delete (or evict) a pod: audit record, SIGTERM of its main process, owner notified."""
        if pod.deleted is not None or t < pod.created:
            return
        ns = pod.ns
        if eviction:
            self.audit(
                t,
                "create",
                f"/api/v1/namespaces/{ns}/pods/{pod.name}/eviction",
                username,
                rec.object_ref("pods", ns, pod.name, subresource="eviction"),
                201,
                user_agent=rec.KUBECTL_UA if "@" in username else CONTROLLER_UA + username,
            )
        else:
            ua = (
                CONTROLLER_UA + username
                if username.startswith("system:serviceaccount:kube-")
                else rec.KUBECTL_UA
            )
            self.audit(
                t,
                "delete",
                f"/api/v1/namespaces/{ns}/pods/{pod.name}",
                username,
                rec.object_ref("pods", ns, pod.name, uid=pod.uid),
                200,
                user_agent=ua,
            )
        pod.deleted = t
        if pod.main is not None and not pod.main_exited:
            self.exit_proc(t + self.rng.uniform(0.2, 2.0), pod, pod.main, status=143)
        del self.live[pod.uid]
        if pod.on_gone is not None:
            pod.on_gone(self, t, pod)

    def kube_exec(
        self,
        t: float,
        pod: Pod,
        username: str,
        command: list[str],
        user_agent: str = rec.KUBECTL_UA,
    ) -> Proc:
        """``kubectl exec -it``: audit (101 Switching Protocols), Falco shell, Tetragon exec."""
        query = "&".join(f"command={c.replace(' ', '+')}" for c in command)
        uri = (
            f"/api/v1/namespaces/{pod.ns}/pods/{pod.name}/exec?{query}"
            f"&container={pod.container}&stdin=true&stdout=true&tty=true"
        )
        self.audit(
            t,
            "create",
            uri,
            username,
            rec.object_ref("pods", pod.ns, pod.name, subresource="exec"),
            101,
            user_agent=user_agent,
        )
        binary = command[0] if command[0].startswith("/") else f"/bin/{command[0]}"
        t_exec = t + self.rng.uniform(0.1, 0.6)
        runc = {
            "exec_id": exec_id(pod.node.name, int(t_exec * 1e9) - 2_000_000, 2),
            "pid": 2000 + self.rng.randrange(60000),
            "uid": 0,
            "cwd": "/",
            "binary": "/usr/bin/runc",
            "flags": "execve clone",
            "start_time": rec.rfc3339(t_exec - 0.002, 9),
        }
        proc = self.exec_proc(t_exec, pod, binary, " ".join(command[1:]), parent=runc)
        name = binary.rsplit("/", 1)[-1]
        if name in ("sh", "bash", "ash"):
            self._falco(
                t_exec,
                pod,
                rule=rec.FALCO_SHELL_RULE,
                priority="Notice",
                proc_name=name,
                cmdline=" ".join([name, *command[1:]]),
                pname="runc",
                evt_type="execve",
            )
        return proc

    def _falco(self, t: float, pod: Pod, **fields: Any) -> None:
        """One Falco output line about a container of ``pod`` (its identity filled in)."""
        self.sink.add(
            "falco",
            t,
            rec.falco(
                t=t,
                hostname=pod.node.name,
                container_id=pod.container_id,
                image_repo=pod.image.rsplit(":", 1)[0],
                namespace=pod.ns,
                pod=pod.name,
                **fields,
            ),
        )

    def pod_api(
        self, t: float, pod: Pod, verb: str, resource: str, name: str | None = None, code: int = 200
    ) -> None:
        """A call the pod makes with its bound service-account token."""
        extra = {
            "authentication.kubernetes.io/pod-name": [pod.name],
            "authentication.kubernetes.io/pod-uid": [pod.uid],
        }
        path = f"/api/v1/namespaces/{pod.ns}/{resource}" + (f"/{name}" if name else "")
        self.audit(
            t,
            verb,
            path,
            pod.username,
            rec.object_ref(resource, pod.ns, name),
            code,
            user_agent="python-requests/2.31.0" if "python" in pod.image else "Go-http-client/2.0",
            source_ip=pod.ip,
            extra=extra,
        )

    # -- Tetragon and Falco ------------------------------------------------------------

    def exec_proc(
        self,
        t: float,
        pod: Pod,
        binary: str,
        args: str,
        parent: dict | Proc | None = None,
        cwd: str = "/",
    ) -> Proc:
        parent_body = parent.body if isinstance(parent, Proc) else parent
        pod.pids += self.rng.randrange(1, 40)
        ktime = int(t * 1e9)
        body = rec.tetragon_process(
            exec_id=exec_id(pod.node.name, ktime, pod.pids),
            pid=pod.pids,
            binary=binary,
            arguments=args,
            start=t,
            pod=pod.tetragon,
            parent_exec_id=parent_body["exec_id"] if parent_body else None,
            cwd=cwd,
        )
        event = {"process": body}
        if parent_body is not None:
            event["parent"] = parent_body
        self.sink.add("tetragon", t, rec.tetragon_event("process_exec", event, pod.node.name, t))
        return Proc(body, parent_body)

    def exit_proc(self, t: float, pod: Pod, proc: Proc, status: int = 0) -> None:
        event: dict[str, Any] = {"process": proc.body}
        if proc.parent is not None:
            event["parent"] = proc.parent
        if status == 143:
            event["signal"] = "SIGTERM"
        event["status"] = status
        event["time"] = rec.rfc3339(t, 9)
        self.sink.add("tetragon", t, rec.tetragon_event("process_exit", event, pod.node.name, t))
        if proc is pod.main:
            pod.main_exited = True

    def write_file(
        self,
        t: float,
        pod: Pod,
        proc: Proc,
        path: str,
        total: int,
        chunks: int = 3,
        falco_rule: bool = False,
    ) -> float:
        """A file opened for writing then written in ``chunks`` (Tetragon), optionally the
        Falco archive rule; returns when the last write happened."""
        self._kprobe(
            t,
            pod,
            proc,
            "security_file_permission",
            [{"file_arg": {"path": path}}, {"int_arg": 2}],
            "file-monitoring",
        )
        if falco_rule:
            binary = proc.body["binary"]
            self._falco(
                t,
                pod,
                rule=rec.FALCO_ARCHIVE_RULE,
                priority="Warning",
                proc_name=binary.rsplit("/", 1)[-1],
                cmdline=f"{binary.rsplit('/', 1)[-1]} {proc.body['arguments']}"[:200],
                pname="sh",
                evt_type="openat",
                fd_name=path,
            )
        per = max(1, total // chunks)
        for i in range(chunks):
            t += self.rng.uniform(0.5, 4.0)
            self._kprobe(
                t,
                pod,
                proc,
                "__x64_sys_write",
                [
                    {"file_arg": {"path": path}},
                    {"size_arg": per if i < chunks - 1 else total - per * (chunks - 1)},
                ],
                "file-monitoring",
            )
        return t

    def connect(self, t: float, pod: Pod, proc: Proc, daddr: str, dport: int) -> None:
        sock = {
            "family": "AF_INET",
            "type": "SOCK_STREAM",
            "protocol": "IPPROTO_TCP",
            "saddr": pod.ip,
            "daddr": daddr,
            "sport": self.rng.randrange(32768, 60999),
            "dport": dport,
        }
        self._kprobe(t, pod, proc, "tcp_connect", [{"sock_arg": sock}], "connect")

    def _kprobe(self, t: float, pod: Pod, proc: Proc, fn: str, args: list, policy: str) -> None:
        body = rec.kprobe_body(proc.body, proc.parent, fn, args, policy)
        self.sink.add("tetragon", t, rec.tetragon_event("process_kprobe", body, pod.node.name, t))

    # -- flows ----------------------------------------------------------------------------

    def flow(
        self,
        t: float,
        pod: Pod,
        dst: External | Pod,
        bytes_out: int,
        bytes_in: int,
        port: int | None = None,
    ) -> None:
        """One aggregated connection from ``pod``; some in-cluster ones as Hubble flows."""
        if isinstance(dst, Pod):
            dport = port or 8080
            if self.rng.random() < HUBBLE_SHARE:
                self.sink.add(
                    "flow",
                    t,
                    rec.hubble_flow(
                        t=t,
                        node=pod.node.name,
                        src_ip=pod.ip,
                        src_port=self.rng.randrange(32768, 60999),
                        src_endpoint=_endpoint(pod),
                        dst_ip=dst.ip,
                        dst_port=dport,
                        dst_endpoint=_endpoint(dst),
                        dst_names=None,
                    ),
                )
                return
            dst_rec: dict[str, Any] = {
                "ip": dst.ip,
                "port": dport,
                "namespace": dst.ns,
                "pod": dst.name,
            }
        else:
            dst_rec = {"ip": dst.ip, "port": port or dst.port}
            if dst.fqdn is not None:
                dst_rec["fqdn"] = dst.fqdn
        src = {"ip": pod.ip, "namespace": pod.ns, "pod": pod.name, "container_id": pod.container_id}
        self.sink.add(
            "flow",
            t,
            rec.generic_flow(t=t, src=src, dst=dst_rec, bytes_out=bytes_out, bytes_in=bytes_in),
        )

    # -- CloudTrail -----------------------------------------------------------------------

    def aws(
        self,
        t: float,
        identity: dict,
        source_ip: str,
        user_agent: str,
        source: str,
        name: str,
        request: dict | None,
        response: dict | None = None,
        *,
        read_only: bool = False,
        data_event: bool = False,
        resources: list[dict] | None = None,
        additional: dict | None = None,
    ) -> None:
        self.sink.add(
            "cloudtrail",
            t,
            rec.cloudtrail(
                t=t,
                event_id=self.ids.uid(),
                source=source,
                name=name,
                identity=identity,
                source_ip=source_ip,
                user_agent=user_agent,
                request=request,
                response=response,
                read_only=read_only,
                data_event=data_event,
                resources=resources,
                additional=additional,
            ),
        )

    def pod_identity(self, pod: Pod) -> dict:
        """The pod's IRSA web-identity session (role ``<namespace>-<serviceaccount>``)."""
        role = f"{pod.ns}-{pod.service_account}"
        return rec.assumed_role(role, pod.session, "AROA" + _stable_id(role))

    def s3_call(self, t: float, pod: Pod, name: str, bucket: str, key: str, size: int = 0) -> None:
        """An S3 object data event from the pod (source IP = pod IP, its IRSA role)."""
        req = {"bucketName": bucket, "Host": f"{bucket}.s3.{REGION}.amazonaws.com", "key": key}
        reads = name == "GetObject"
        self.aws(
            t,
            self.pod_identity(pod),
            pod.ip,
            rec.BOTO_UA,
            "s3.amazonaws.com",
            name,
            req,
            None if reads else {"x-amz-server-side-encryption": "AES256"},
            read_only=reads,
            data_event=True,
            resources=rec.s3_object_resources(bucket, key),
            additional={"bytesTransferredOut" if reads else "bytesTransferredIn": size},
        )

    def run_instances(
        self,
        t: float,
        identity: dict,
        source_ip: str,
        user_agent: str,
        count: int,
        scenario: str,
        instance_type: str = "m6i.large",
        spot: bool = False,
    ) -> list[Instance]:
        made = [
            Instance(
                self.ids.instance_id(),
                f"10.0.{self.rng.randrange(16, 64)}.{self.rng.randrange(2, 254)}",
                t,
                scenario,
            )
            for _ in range(count)
        ]
        request: dict[str, Any] = {
            "instancesSet": {
                "items": [
                    {"imageId": "ami-0c7217cdde317cfec", "minCount": count, "maxCount": count}
                ]
            },
            "instanceType": instance_type,
            "subnetId": "subnet-0a1b2c3d4e5f60718",
        }
        if spot:
            request["instanceMarketOptions"] = {"marketType": "spot"}
        response = {
            "reservationId": "r-" + self.ids.hex(17),
            "ownerId": ACCOUNT,
            "instancesSet": {
                "items": [
                    {
                        "instanceId": i.instance_id,
                        "imageId": "ami-0c7217cdde317cfec",
                        "instanceState": {"code": 0, "name": "pending"},
                        "privateIpAddress": i.private_ip,
                        "instanceType": instance_type,
                    }
                    for i in made
                ]
            },
        }
        self.aws(
            t,
            identity,
            source_ip,
            user_agent,
            "ec2.amazonaws.com",
            "RunInstances",
            request,
            response,
        )
        self.instances.extend(made)
        self.count(scenario, "instances", count)
        return made

    def terminate_instances(
        self, t: float, identity: dict, source_ip: str, user_agent: str, instances: list[Instance]
    ) -> None:
        live = [i for i in instances if i.terminated is None]
        if not live:
            return
        request = {"instancesSet": {"items": [{"instanceId": i.instance_id} for i in live]}}
        response = {
            "instancesSet": {
                "items": [
                    {
                        "instanceId": i.instance_id,
                        "currentState": {"code": 32, "name": "shutting-down"},
                        "previousState": {"code": 16, "name": "running"},
                    }
                    for i in live
                ]
            }
        }
        self.aws(
            t,
            identity,
            source_ip,
            user_agent,
            "ec2.amazonaws.com",
            "TerminateInstances",
            request,
            response,
        )
        for i in live:
            i.terminated = t

    def instance_identity(self, instance: Instance, role: str = "eks-node-role") -> dict:
        """An EC2 instance-profile session: the session name is the instance id."""
        return rec.assumed_role(role, instance.instance_id, "AROA" + _stable_id(role))

    # -- labels -----------------------------------------------------------------------------

    def label_pod(self, pod: Pod, technique: str, scenario: str, start: float, end: float) -> None:
        pod.malicious = True
        self.labels.append(
            Label("pod", pod.ns, pod.name, None, technique, scenario, start, min(end, self.end))
        )

    def label_instance(
        self, inst: Instance, technique: str, scenario: str, start: float, end: float
    ) -> None:
        inst.malicious = True
        self.labels.append(
            Label(
                "instance",
                None,
                None,
                inst.instance_id,
                technique,
                scenario,
                start,
                min(end, self.end),
            )
        )


def _endpoint(pod: Pod) -> dict:
    """A Hubble endpoint block for a pod."""
    labels = [f"k8s:{k}={v}" for k, v in pod.labels.items()]
    labels.append(f"k8s:io.kubernetes.pod.namespace={pod.ns}")
    ep: dict[str, Any] = {"namespace": pod.ns, "pod_name": pod.name, "labels": labels}
    if pod.workload_name:
        ep["workloads"] = [{"name": pod.workload_name, "kind": pod.workload_kind}]
    return ep


def _stable_id(text: str) -> str:
    """A 17-character principal-id tail derived from a name (same role, same id)."""
    h = 0
    for ch in text:
        h = (h * 131 + ord(ch)) % (36**17)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    out = []
    for _ in range(17):
        h, r = divmod(h, 32)
        out.append(alphabet[r])
    return "".join(out)


def diurnal(t: float, peak_hour: float = 15.0) -> float:
    """0..1 load curve over the day (UTC), peaking at ``peak_hour``."""
    hour = (t % 86400.0) / 3600.0
    return 0.5 + 0.5 * math.cos(2 * math.pi * (hour - peak_hour) / 24.0)
