"""Attacks by someone who knows the baselines: the ``hard`` mix's attack scenarios (issue 13).

Each one imitates a benign class of :mod:`lookalikes` or hides in what a per-entity window
cannot see: exfiltration sharded over short pods each below its own bar, collection from a
pod a Deployment owns, a CI role used from an instance, a debug pod with the SREs' image
and habits, a beacon jittered by 10-30 minutes, and an attack repeated from a new
workload's first minutes (while its baseline is still learning). Labels as in
:mod:`attacks`: one row per malicious entity.
"""

from __future__ import annotations

from collections.abc import Callable

from churnguard.simulate.attacks import (
    ATTACKER_USER,
    SENSITIVE_BUCKETS,
    T_ARCHIVE,
    T_COLLECTION,
    T_EVASION,
    _archive_and_exfil,
    _attacker_host,
    _collect,
    _payload,
    _setup,
    _start_beacon,
    _victim,
)
from churnguard.simulate.benign import (
    MB,
    TRAFFIC,
    Workload,
    _delete_by,
    _start_workload,
    in_namespaces,
    web_traffic,
)
from churnguard.simulate.cluster import CONTROLLERS, TTL_CONTROLLER, Cluster, Instance, Pod
from churnguard.simulate.lookalikes import CI_PACKER_ROLE, DEBUG_IMAGE
from churnguard.simulate.records import BOTO_UA, assumed_role

Traffic = Callable[[Cluster, float, Pod], None]


def _first_tick(base: Traffic, until: float, act: Traffic) -> Traffic:
    """A workload's traffic that also runs ``act`` on each pod's first traffic tick, for pods
    created up to ``until``; later replicas are benign (kind ``new-workloads``)."""
    done: set[str] = set()

    def traffic(c: Cluster, at: float, pod: Pod) -> None:
        base(c, at, pod)
        if pod.uid in done:
            return
        done.add(pod.uid)
        if pod.created > until:
            pod.touched_by = "new-workloads"
            return
        act(c, at, pod)

    return traffic


# -- exfiltration sharded over many short pods -----------------------------------------------


def _sharded_exfil(t: float, cl: Cluster, tries: int) -> bool:
    """A parallel Job: 6-14 short pods, each archives a slice and sends it to one host."""
    spaces = in_namespaces(cl, "web", "api", "worker", "data", "batch")
    if not spaces:
        return False
    ns = cl.rng.choice(spaces)
    dest = _attacker_host(cl)
    job = f"cache-warmup-{cl.ids.suffix(5)}"
    owner = ("Job", job, cl.ids.uid())
    at = t
    for _ in range(cl.rng.randrange(6, 15)):
        pod = cl.create_pod(
            at,
            ns,
            scenario="attack-sharded-exfil",
            image="docker.io/library/python:3.12-slim",
            container="worker",
            service_account="default",
            creator=CONTROLLERS["Job"],
            binary="/bin/sh",
            args="-c /app/warm.sh",
            owner=owner,
            workload=("Job", job),
            labels={"batch.kubernetes.io/job-name": job},
        )
        proc = cl.exec_proc(
            at + 5,
            pod,
            "/usr/local/bin/python3",
            "-c import tarfile; t = tarfile.open('/tmp/part.tgz', 'w:gz'); t.add('/data');"
            " t.close()",
            pod.main,
        )
        size = cl.rng.randrange(5 * MB, 30 * MB)
        w = cl.write_file(at + 6, pod, proc, "/tmp/part.tgz", size, 1, falco_rule=False)
        cl.exit_proc(w + 1, pod, proc)
        cl.flow(w + 5, pod, dest, size + 8_000, 3_000)
        end = w + cl.rng.uniform(20, 90)
        pod.busy_until = end + 300
        cl.at(end + cl.rng.uniform(30, 120), _delete_by, cl, pod, TTL_CONTROLLER)
        cl.label_pod(pod, T_ARCHIVE, "attack-sharded-exfil", at, w + 5)
        at += cl.rng.uniform(60, 300)
    cl.count("attack-sharded-exfil", "attacks")
    return True


# -- collection from a pod a Deployment owns -----------------------------------------------------


def _deployment_collection(t: float, cl: Cluster, tries: int) -> bool:
    """A Deployment of one replica (it has an owner) whose pod reads secrets and a bucket."""
    spaces = in_namespaces(cl, "web", "api", "worker")
    if not spaces:
        return False
    ns = cl.rng.choice(spaces)
    name = cl.rng.choice(("metrics-exporter", "config-reloader", "cache-sidecar"))

    def collect(c: Cluster, at: float, pod: Pod) -> None:
        c.pod_api(at, pod, "list", "secrets")
        for i in range(c.rng.randrange(3, 15)):
            c.pod_api(at + 1 + i, pod, "get", "secrets", f"{c.ids.suffix(6)}-credentials")
        end = _collect(c, at + 20, pod, c.rng.randrange(100, 800), c.rng.uniform(300, 1500), None)
        pod.busy_until = end
        c.label_pod(pod, T_COLLECTION, "attack-deployment-collection", at, end)

    traffic = _first_tick(web_traffic, t + 3600, collect)
    wl = Workload(
        "Deployment", name, ns, f"ghcr.io/corp/{name}", "/app/run", "", 1, 1,
        "attack-deployment-collection", traffic, "default",
    )  # fmt: skip
    cl.at(t, _start_workload, cl, wl)
    cl.count("attack-deployment-collection", "attacks")
    return True


# -- an assumed CI role used from an instance ---------------------------------------------------


def _ci_role_instance(t: float, cl: Cluster, tries: int) -> bool:
    """Stolen CI-role keys: run an instance like Packer does, then use the CI role *from*
    the instance (secrets, a sensitive bucket) and terminate it."""
    ident = assumed_role(CI_PACKER_ROLE[0], f"gitlab-{cl.ids.digits(9)}", CI_PACKER_ROLE[1])
    ua = "aws-sdk-go/1.50.0 (go1.21.7; linux; amd64) packer/1.10.1"
    out = cl.ids.public_ip("45.137.21")
    (inst,) = cl.run_instances(t, ident, out, ua, 1, "attack-ci-role-instance", "t3.large")
    s = t + cl.rng.uniform(90, 180)
    for i in range(cl.rng.randrange(3, 12)):
        cl.aws(s + i * 3, ident, inst.private_ip, BOTO_UA, "secretsmanager.amazonaws.com",
               "GetSecretValue", {"secretId": f"prod/{cl.ids.suffix(6)}"}, None,
               read_only=True)  # fmt: skip
    bucket = cl.rng.choice(SENSITIVE_BUCKETS)
    for i in range(cl.rng.randrange(10, 60)):
        cl.aws(s + 60 + i, ident, inst.private_ip, BOTO_UA, "s3.amazonaws.com", "GetObject",
               {"bucketName": bucket, "key": f"exports/{cl.ids.hex(6)}.pdf"}, None,
               read_only=True, data_event=True)  # fmt: skip
    end = s + cl.rng.uniform(300, 1200)
    cl.at(end, _terminate, cl, ident, inst.private_ip, ua, inst)
    cl.label_instance(inst, T_EVASION, "attack-ci-role-instance", t, end)
    cl.count("attack-ci-role-instance", "attacks")
    return True


def _terminate(t: float, cl: Cluster, ident: dict, ip: str, ua: str, inst: Instance) -> None:
    cl.terminate_instances(t, ident, ip, ua, [inst])


# -- a debug pod that imitates the SREs --------------------------------------------------------


def _sre_imitation(t: float, cl: Cluster, tries: int) -> bool:
    """The SREs' netshoot image, name and commands, by an identity that is not an SRE."""
    ns = cl.rng.choice(cl.namespaces)
    ci = in_namespaces(cl, "ci")
    actor = ATTACKER_USER
    if ci and cl.rng.random() < 0.4:
        actor = f"system:serviceaccount:{cl.rng.choice(ci).name}:gitlab-runner"
    pod = cl.create_pod(
        t,
        ns,
        scenario="attack-sre-imitation",
        image=DEBUG_IMAGE,
        container="netshoot",
        service_account="default",
        creator=actor,
        binary="/bin/sleep",
        args="infinity",
        name=f"netshoot-maya-{cl.ids.suffix(5)}",
        labels={"run": "netshoot"},
    )
    sh = cl.kube_exec(t + cl.rng.uniform(5, 30), pod, actor, ["bash"])
    dig = cl.exec_proc(t + 40, pod, "/usr/bin/dig", f"+short kubernetes.default.svc.{ns.name}", sh)
    cl.exit_proc(t + 42, pod, dig)
    done = _payload(cl, t + 60, pod, sh, _attacker_host(cl))
    end = done + cl.rng.uniform(120, 900)
    pod.busy_until = end + 1
    cl.at(end, _delete_by, cl, pod, actor)
    cl.label_pod(pod, T_EVASION, "attack-sre-imitation", t, end)
    cl.count("attack-sre-imitation", "attacks")
    return True


# -- a slow beacon with 10-30 minutes of jitter ------------------------------------------------


def _slow_beacon(t: float, cl: Cluster, tries: int) -> bool:
    pod = _victim(cl, t, "web", "api", "worker", "monitoring", "data")
    if pod is None:
        return False
    every = cl.rng.uniform(2400.0, 3600.0)
    jitter = cl.rng.uniform(600.0, 1800.0) / every
    _start_beacon(cl, t, pod, every, jitter, cl.rng.uniform(8, 16), "attack-slow-beacon")
    cl.count("attack-slow-beacon", "attacks")
    return True


# -- an attack from a new workload's first minutes ---------------------------------------------


def _learning_period(t: float, cl: Cluster, tries: int) -> bool:
    """A new Deployment whose pods archive and ship data in their first minutes, again on
    every replica and rollout for three hours: while its own baseline is still learning."""
    spaces = in_namespaces(cl, "web", "api", "worker", "data")
    if not spaces:
        return False
    ns = cl.rng.choice(spaces)
    name = cl.rng.choice(("usage-reporter", "asset-sync", "search-indexer"))
    dest = _attacker_host(cl)
    base = TRAFFIC.get(ns.personality, web_traffic)

    def exfil(c: Cluster, at: float, pod: Pod) -> None:
        end = _archive_and_exfil(c, at, pod, pod.main, "/tmp/.cache", "/var/lib/app", dest)
        pod.busy_until = end
        c.label_pod(pod, T_ARCHIVE, "attack-learning-period", at, end)

    traffic = _first_tick(base, t + 3 * 3600, exfil)
    wl = Workload(
        "Deployment", name, ns, f"ghcr.io/corp/{name}", "/app/server", "--listen :8080",
        2, 2, "attack-learning-period", traffic, name,
    )  # fmt: skip
    cl.at(t, _start_workload, cl, wl)
    cl.count("attack-learning-period", "attacks")
    return True


setup_sharded_exfil = _setup(_sharded_exfil)
setup_deployment_collection = _setup(_deployment_collection)
setup_ci_role_instance = _setup(_ci_role_instance)
setup_sre_imitation = _setup(_sre_imitation)
setup_slow_beacon = _setup(_slow_beacon)
setup_learning_period = _setup(_learning_period)

__all__ = [
    "setup_ci_role_instance",
    "setup_deployment_collection",
    "setup_learning_period",
    "setup_sharded_exfil",
    "setup_slow_beacon",
    "setup_sre_imitation",
]
