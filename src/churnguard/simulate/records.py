"""Record shapes, one builder per format: the exact JSON the real exporters write.

Pure functions of their arguments (no rng, no state) so the shapes live in one place and
the scenarios only decide *what* happens. Field names follow the public schemas the
adapters in ``churnguard.ingest`` parse: Kubernetes ``audit.k8s.io/v1`` Event, CloudTrail
record, Falco JSON output, Tetragon JSON export, Hubble flow JSON and the generic flow.

Over 400 lines on purpose: one pure builder per record shape of six formats; each is
short and they share the constants at the top.
"""

from __future__ import annotations

from typing import Any

from churnguard.simulate.world import ACCOUNT, REGION, rfc3339

KUBECTL_UA = "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819"
BOTO_UA = (
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.215 md/arch#x86_64 "
    "lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69"
)
_ALLOW = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
_GROUPS_SA = ["system:serviceaccounts", "system:authenticated"]
# people's groups in the identity provider: the platform team (admins, SREs) operates the
# cluster; developers (the attacks' phished account is one) are in their own group
PLATFORM_GROUP = "oidc:platform-engineers"
DEVELOPERS_GROUP = "oidc:developers"
DEVELOPER_USERS = frozenset(
    {
        "erin@corp.example",
        "frank@corp.example",
        "grace@corp.example",
        "heidi@corp.example",
        "ivan@corp.example",
    }
)


def k8s_user(username: str, uid: str | None = None, extra: dict | None = None) -> dict:
    """The audit ``user`` block with the groups the API server adds for that kind of user."""
    if username.startswith("system:serviceaccount:"):
        ns = username.split(":")[2]
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    elif username.startswith("system:node:"):
        groups = ["system:nodes", "system:authenticated"]
    elif username.startswith("system:"):
        groups = ["system:authenticated"]
    else:
        team = DEVELOPERS_GROUP if username in DEVELOPER_USERS else PLATFORM_GROUP
        groups = [team, "system:authenticated"]
    user: dict[str, Any] = {"username": username}
    if uid is not None:
        user["uid"] = uid
    user["groups"] = groups
    if extra:
        user["extra"] = extra
    return user


def audit_event(
    *,
    audit_id: str,
    t_received: float,
    t_complete: float,
    verb: str,
    uri: str,
    user: dict,
    source_ip: str,
    user_agent: str,
    object_ref: dict | None,
    code: int | None,
    level: str = "Metadata",
    stage: str = "ResponseComplete",
    request_object: dict | None = None,
    response_object: dict | None = None,
) -> dict:
    """One ``audit.k8s.io/v1`` Event (``RequestReceived`` has no status or timestamp pair)."""
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": user,
        "sourceIPs": [source_ip],
        "userAgent": user_agent,
    }
    if object_ref is not None:
        ev["objectRef"] = object_ref
    if stage != "RequestReceived" and code is not None:
        ev["responseStatus"] = {"metadata": {}, "code": code}
    if request_object is not None:
        ev["requestObject"] = request_object
    if response_object is not None:
        ev["responseObject"] = response_object
    ev["requestReceivedTimestamp"] = rfc3339(t_received)
    ev["stageTimestamp"] = rfc3339(t_complete if stage != "RequestReceived" else t_received)
    ev["annotations"] = _ALLOW if stage != "RequestReceived" else {}
    return ev


def object_ref(
    resource: str,
    namespace: str | None,
    name: str | None,
    *,
    uid: str | None = None,
    subresource: str | None = None,
    api_group: str | None = None,
) -> dict:
    ref: dict[str, Any] = {"resource": resource}
    if subresource is not None:
        ref["subresource"] = subresource
    if namespace is not None:
        ref["namespace"] = namespace
    if name is not None:
        ref["name"] = name
    if uid is not None:
        ref["uid"] = uid
    if api_group is not None:
        ref["apiGroup"] = api_group
    ref["apiVersion"] = "v1" if api_group is None else f"{api_group}/v1"
    return ref


def pod_object(
    *,
    namespace: str,
    name: str,
    generate_name: str | None,
    uid: str,
    labels: dict[str, str],
    owner: dict | None,
    service_account: str,
    node: str,
    container: str,
    image: str,
    created: float,
) -> dict:
    """The Pod as the API server returns it from ``create`` (scheduled, not yet running)."""
    meta: dict[str, Any] = {"name": name}
    if generate_name is not None:
        meta["generateName"] = generate_name
    meta.update(
        namespace=namespace,
        uid=uid,
        resourceVersion=str(int(created * 10) % 900_000_000 + 100_000_000),
        creationTimestamp=rfc3339(created, 0),
        labels=labels,
    )
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {
            "serviceAccountName": service_account,
            "nodeName": node,
            "restartPolicy": "Always" if owner and owner["kind"] != "Job" else "Never",
            "containers": [{"name": container, "image": image}],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def owner_ref(kind: str, name: str, uid: str) -> dict:
    api = "batch/v1" if kind == "Job" else "apps/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# -- CloudTrail ---------------------------------------------------------------------------


def assumed_role(role: str, session: str, role_id: str, *, invoked_by: str | None = None) -> dict:
    """``userIdentity`` of an assumed-role session (IRSA, instance profile, SSO, service)."""
    ui: dict[str, Any] = {
        "type": "AssumedRole",
        "principalId": f"{role_id}:{session}",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        "accountId": ACCOUNT,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "principalId": role_id,
                "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                "accountId": ACCOUNT,
                "userName": role,
            },
            "attributes": {"mfaAuthenticated": "false"},
        },
    }
    if invoked_by is not None:
        ui["invokedBy"] = invoked_by
    return ui


def iam_user(name: str, principal_id: str, access_key: str) -> dict:
    return {
        "type": "IAMUser",
        "principalId": principal_id,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "accountId": ACCOUNT,
        "accessKeyId": access_key,
        "userName": name,
    }


def cloudtrail(
    *,
    t: float,
    event_id: str,
    source: str,
    name: str,
    identity: dict,
    source_ip: str,
    user_agent: str,
    request: dict | None,
    response: dict | None,
    read_only: bool,
    data_event: bool = False,
    resources: list[dict] | None = None,
    additional: dict | None = None,
) -> dict:
    rec: dict[str, Any] = {
        "eventVersion": "1.09" if data_event else "1.08",
        "userIdentity": identity,
        "eventTime": rfc3339(t, 0),
        "eventSource": source,
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request,
        "responseElements": response,
        "requestID": event_id[:8].upper() + event_id[24:],
        "eventID": event_id,
        "readOnly": read_only,
    }
    if additional is not None:
        rec["additionalEventData"] = additional
    if resources is not None:
        rec["resources"] = resources
    rec.update(
        eventType="AwsApiCall",
        managementEvent=not data_event,
        recipientAccountId=ACCOUNT,
    )
    rec["eventCategory"] = "Data" if data_event else "Management"
    return rec


def s3_object_resources(bucket: str, key: str) -> list[dict]:
    return [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
        {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]


# -- Falco --------------------------------------------------------------------------------

FALCO_SHELL_RULE = "Terminal shell in container"
FALCO_ARCHIVE_RULE = "Write archive file in container"


def falco(
    *,
    t: float,
    rule: str,
    priority: str,
    hostname: str,
    container_id: str,
    image_repo: str,
    namespace: str,
    pod: str,
    proc_name: str,
    cmdline: str,
    pname: str,
    evt_type: str,
    fd_name: str | None = None,
) -> dict:
    """A Falco JSON output line; the ``output`` text follows the stock rules' templates."""
    cid = container_id[:12]
    if fd_name is None:
        text = (
            f"A shell was spawned in a container with an attached terminal (user=root "
            f"k8s.ns={namespace} k8s.pod={pod} container={cid} shell={proc_name} "
            f"parent={pname} cmdline={cmdline} terminal=34816)"
        )
    else:
        text = (
            f"Archive file written in container (user=root command={cmdline} "
            f"file={fd_name} k8s.ns={namespace} k8s.pod={pod} container={cid})"
        )
    stamp = rfc3339(t, 9)
    fields: dict[str, Any] = {
        "container.id": cid,
        "container.image.repository": image_repo,
        "evt.time": int(t * 1e9),
        "evt.type": evt_type,
        "k8s.ns.name": namespace,
        "k8s.pod.name": pod,
        "proc.cmdline": cmdline,
        "proc.name": proc_name,
        "proc.pname": pname,
        "user.name": "root",
    }
    if fd_name is not None:
        fields["fd.name"] = fd_name
        fields["evt.arg.flags"] = "O_WRONLY|O_CREAT|O_TRUNC"
    return {
        "output": f"{stamp[11:]}: {priority} {text}",
        "priority": priority,
        "rule": rule,
        "time": stamp,
        "source": "syscall",
        "hostname": hostname,
        "output_fields": fields,
    }


# -- Tetragon -----------------------------------------------------------------------------


def tetragon_process(
    *,
    exec_id: str,
    pid: int,
    binary: str,
    arguments: str,
    start: float,
    pod: dict | None,
    parent_exec_id: str | None,
    cwd: str = "/",
) -> dict:
    proc: dict[str, Any] = {
        "exec_id": exec_id,
        "pid": pid,
        "uid": 0,
        "cwd": cwd,
        "binary": binary,
        "arguments": arguments,
        "flags": "execve rootcwd clone",
        "start_time": rfc3339(start, 9),
    }
    if pod is not None:
        proc["pod"] = pod
        proc["docker"] = pod["container"]["id"][13:44]
    if parent_exec_id is not None:
        proc["parent_exec_id"] = parent_exec_id
    return proc


def tetragon_pod(
    *,
    namespace: str,
    name: str,
    container_id: str,
    container: str,
    image: str,
    image_digest: str,
    started: float,
    labels: dict[str, str],
    workload: str | None,
    workload_kind: str | None,
) -> dict:
    pod: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "container": {
            "id": f"containerd://{container_id}",
            "name": container,
            "image": {"id": f"{image.split(':')[0]}@sha256:{image_digest}", "name": image},
            "start_time": rfc3339(started, 0),
            "pid": 1,
        },
        "pod_labels": labels,
    }
    if workload is not None:
        pod["workload"] = workload
        pod["workload_kind"] = workload_kind
    return pod


def tetragon_event(kind: str, body: dict, node: str, t: float) -> dict:
    """``{"process_exec": body, "node_name", "time"}`` and the same for exit/kprobe."""
    return {kind: body, "node_name": node, "time": rfc3339(t, 9)}


def kprobe_body(process: dict, parent: dict | None, function: str, args: list, policy: str) -> dict:
    body: dict[str, Any] = {"process": process}
    if parent is not None:
        body["parent"] = parent
    body.update(
        function_name=function,
        args=args,
        action="KPROBE_ACTION_POST",
        policy_name=policy,
    )
    return body


# -- flows --------------------------------------------------------------------------------


def generic_flow(
    *,
    t: float,
    src: dict,
    dst: dict,
    bytes_out: int,
    bytes_in: int,
) -> dict:
    """The documented generic flow record (``../shared/DESIGN.md``): one aggregated connection."""
    return {
        "time": rfc3339(t, 6),
        "src": src,
        "dst": dst,
        "protocol": "TCP",
        "bytes_out": bytes_out,
        "bytes_in": bytes_in,
    }


def hubble_flow(
    *,
    t: float,
    node: str,
    src_ip: str,
    src_port: int,
    src_endpoint: dict,
    dst_ip: str,
    dst_port: int,
    dst_endpoint: dict,
    dst_names: list[str] | None,
) -> dict:
    """A Cilium Hubble flow (``hubble observe -o json``) for the connection's SYN."""
    flow: dict[str, Any] = {
        "time": rfc3339(t, 9),
        "verdict": "FORWARDED",
        "IP": {"source": src_ip, "destination": dst_ip, "ipVersion": "IPv4"},
        "l4": {
            "TCP": {"source_port": src_port, "destination_port": dst_port, "flags": {"SYN": True}}
        },
        "source": src_endpoint,
        "destination": dst_endpoint,
        "Type": "L3_L4",
        "node_name": node,
        "is_reply": False,
        "traffic_direction": "EGRESS",
    }
    if dst_names:
        flow["destination_names"] = dst_names
    return {"flow": flow, "node_name": node, "time": flow["time"]}
