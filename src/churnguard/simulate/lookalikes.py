"""Benign look-alikes of the attacks: the ``hard`` mix's benign classes (issue 13).

Each class is made of the very actions an attack is made of — a person's bare pod exec'd
into and deleted minutes later, archives written by Python libraries and uploaded, an
instance run and terminated by one identity, periodic connections to one external host —
so only who does it, where, how often and to which destination tells it apart. Every
entity a class creates carries the class as its ``scenario``; ``evaluate`` reports false
alerts per class (its *benign kind*).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from churnguard.simulate.benign import (
    AUTOSCALER,
    MB,
    SPOT_SERVICE,
    CronSpec,
    Workload,
    _delete_by,
    _schedule_cron,
    _start_workload,
    in_namespaces,
    poisson_times,
)
from churnguard.simulate.cluster import Cluster, Instance, Namespace, Pod
from churnguard.simulate.params import SimParams
from churnguard.simulate.records import BOTO_UA, assumed_role
from churnguard.simulate.world import PYPI, S3, External

# a small set of SREs, each of whom debugs pods every week
SRES = ("maya.sre@corp.example", "tomas.sre@corp.example", "li.sre@corp.example")
DEBUG_IMAGE = "docker.io/nicolaka/netshoot:v0.12"
DEVELOPERS = ("frank@corp.example", "grace@corp.example", "heidi@corp.example", "ivan@corp.example")
DEVELOPER_ROLE = ("AWSReservedSSO_Developer_9c1e0b7a55", "AROADEVELOPERSSO001")
CI_PACKER_ROLE = ("ci-packer-builder", "AROACIPACKERBUILD01")
CI_NAT_IP = "198.51.100.77"  # the CI runners' egress address
ORG_LOG_BUCKET = "corp-log-archive"
POLLED = (
    External("api.github.com", "140.82.112.6"),
    External("hooks.slack.com", "34.226.36.50"),
    External("status.pagerduty.com", "18.67.76.12"),
    External("grafana.com", "34.120.177.200"),
)


# -- SRE debug pods ------------------------------------------------------------------------


def _sre_debug(t: float, cl: Cluster, sre: str) -> None:
    """``kubectl run`` a netshoot pod, exec into it, DNS/HTTP checks, deleted by the SRE."""
    ns = cl.rng.choice(cl.namespaces)
    pod = cl.create_pod(
        t,
        ns,
        scenario="sre-debug",
        image=DEBUG_IMAGE,
        container="netshoot",
        service_account="default",
        creator=sre,
        binary="/bin/sleep",
        args="infinity",
        name=f"netshoot-{sre.split('.', 1)[0]}-{cl.ids.suffix(5)}",
        labels={"run": "netshoot"},
    )
    sh = cl.kube_exec(t + cl.rng.uniform(5, 30), pod, sre, ["bash"])
    s = t + 40
    peers = [p for p in cl.live.values() if p.namespace is ns and p.traffic is not None]
    for i, (binary, args) in enumerate(
        (
            ("/usr/bin/dig", f"+short kubernetes.default.svc.{ns.name}"),
            ("/usr/bin/curl", "-sv http://web:8080/healthz"),
            ("/usr/bin/nslookup", "api.stripe.com"),
            ("/usr/sbin/tcpdump", "-c 200 -i eth0 port 53"),
        )[: cl.rng.randrange(2, 5)]
    ):
        proc = cl.exec_proc(s + i * 20, pod, binary, args, sh)
        if peers:
            cl.flow(s + i * 20 + 1, pod, cl.rng.choice(peers), 2_000, 6_000)
        cl.exit_proc(s + i * 20 + 5, pod, proc)
    end = s + cl.rng.uniform(120, 1200)
    pod.busy_until = end + 1
    cl.at(end, _delete_by, cl, pod, sre)
    cl.count("sre-debug", "sessions")


def setup_sre_debug(cl: Cluster, params: SimParams) -> None:
    """Each SRE debugs a pod about twice a day per 20 namespaces, mostly in working hours."""
    for sre in SRES:
        for when in poisson_times(cl, 3 / 24.0 * params.cluster_scale, _working_hours):
            cl.at(when, _sre_debug, cl, sre)


def _working_hours(t: float) -> float:
    hour = (t % 86400) / 3600
    return 1.0 if 7 <= hour < 19 else 0.1


# -- JupyterHub notebooks --------------------------------------------------------------------


def _notebook(t: float, cl: Cluster, ns: Namespace) -> None:
    """A single-user server spawned by the hub, datasets read, archives written, culled."""
    user = cl.rng.choice(DEVELOPERS).split("@", 1)[0]
    hub = f"system:serviceaccount:{ns.name}:jupyterhub"
    pod = cl.create_pod(
        t,
        ns,
        scenario="notebooks",
        image="quay.io/jupyter/scipy-notebook:2024-03-14",
        container="notebook",
        service_account="notebook",
        creator=hub,
        binary="/opt/conda/bin/python3",
        args="/opt/conda/bin/jupyterhub-singleuser --ip=0.0.0.0",
        name=f"jupyter-{user}-{cl.ids.suffix(4)}",
        labels={"component": "singleuser-server", "hub.jupyter.org/username": user},
    )
    life = cl.rng.uniform(1800, 6 * 3600)
    s = t + 60
    pip = cl.exec_proc(s, pod, "/opt/conda/bin/pip", "install -q lightgbm shap", pod.main)
    pulled = cl.rng.randrange(20 * MB, 200 * MB)
    cl.flow(s + 1, pod, PYPI, cl.rng.randrange(50_000, 400_000), pulled)
    cl.exit_proc(s + 40, pod, pip)
    for k in range(cl.rng.randrange(1, 4)):
        at = s + 120 + k * life / 4
        for _ in range(cl.rng.randrange(5, 60)):
            size = cl.rng.randrange(200_000, 30 * MB)
            cl.s3_call(
                at + cl.rng.uniform(0, 300),
                pod,
                "GetObject",
                "corp-datalake",
                f"curated/features/v{cl.rng.randrange(1, 9)}/part-{cl.rng.randrange(0, 999):05d}"
                ".parquet",
                size,
            )
        cl.flow(at + 300, pod, S3, 40_000, cl.rng.randrange(20 * MB, 300 * MB))
        if cl.rng.random() < 0.6:
            lib = cl.rng.choice(("zipfile", "tarfile"))
            ext = ".zip" if lib == "zipfile" else ".tar.gz"
            path = f"/home/jovyan/results-{cl.ids.suffix(4)}{ext}"
            proc = cl.exec_proc(
                at + 320,
                pod,
                "/opt/conda/bin/python3",
                f"-c import {lib}; ... # export {path}",
                pod.main,
            )
            size = cl.rng.randrange(MB, 80 * MB)
            w = cl.write_file(at + 321, pod, proc, path, size, 2, falco_rule=cl.rng.random() < 0.5)
            cl.exit_proc(w + 1, pod, proc)
            cl.s3_call(w + 3, pod, "PutObject", "corp-datalake", f"scratch/{user}{ext}", size)
            cl.flow(w + 4, pod, S3, size + 20_000, 3_000)
    pod.busy_until = t + life
    cl.at(t + life, _delete_by, cl, pod, hub)  # culled after idling
    cl.count("notebooks", "servers")


def setup_notebooks(cl: Cluster, params: SimParams) -> None:
    for ns in in_namespaces(cl, "data"):
        for when in poisson_times(cl, 0.6, _working_hours):
            cl.at(when, _notebook, cl, ns)


# -- log archivers ---------------------------------------------------------------------------


def _work_log_archive(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    """Python tarfile of the hour's logs, uploaded to the organisation's log bucket."""
    path = f"/var/log/archive/logs-{int(t // 3600)}.tar.gz"
    proc = cl.exec_proc(
        t,
        pod,
        "/usr/local/bin/python3",
        f"-c import tarfile; t = tarfile.open('{path}', 'w:gz'); t.add('/var/log/pods'); t.close()",
        pod.main,
    )
    size = cl.rng.randrange(30 * MB, 400 * MB)
    w = cl.write_file(t + 2, pod, proc, path, size, cl.rng.randrange(2, 5), falco_rule=True)
    cl.exit_proc(w + 1, pod, proc)
    key = f"{pod.ns}/{path.rsplit('/', 1)[-1]}"
    cl.s3_call(w + 3, pod, "PutObject", ORG_LOG_BUCKET, key, size)
    cl.flow(min(end - 2, w + 40), pod, S3, size + size // 60, 90_000)


_LOG_ARCHIVER = CronSpec(
    "log-archiver", 60, "ghcr.io/corp/log-archiver:v0.9", (90, 400), _work_log_archive
)


def setup_log_archivers(cl: Cluster, params: SimParams) -> None:
    for ns in in_namespaces(cl, "monitoring", "backups", "batch"):
        _schedule_cron(cl, ns, _LOG_ARCHIVER, 1.0, "log-archivers")


# -- developers' test instances --------------------------------------------------------------


def _dev_instance(t: float, cl: Cluster) -> None:
    """SSO developer runs a test instance, uses it, terminates it within 30-90 minutes."""
    person = cl.rng.choice(DEVELOPERS)
    ident = assumed_role(DEVELOPER_ROLE[0], person, DEVELOPER_ROLE[1])
    office = f"203.0.113.{cl.rng.randrange(10, 60)}"
    (inst,) = cl.run_instances(t, ident, office, "aws-cli/2.15.30", 1, "dev-instances", "t3.medium")
    role = cl.instance_identity(inst, "dev-sandbox-role")
    s = t + cl.rng.uniform(90, 240)
    cl.aws(s, role, inst.private_ip, BOTO_UA, "sts.amazonaws.com", "GetCallerIdentity", None,
           None, read_only=True)  # fmt: skip
    for i in range(cl.rng.randrange(0, 6)):
        cl.aws(
            s + 30 + i * 40,
            role,
            inst.private_ip,
            BOTO_UA,
            "s3.amazonaws.com",
            "GetObject",
            {"bucketName": "corp-dev-fixtures", "key": f"fixtures/{cl.ids.hex(6)}.json"},
            None,
            read_only=True,
            data_event=True,
        )
    end = t + cl.rng.uniform(1800, 5400)
    cl.at(end, _terminate, cl, ident, office, inst)


def _terminate(t: float, cl: Cluster, ident: dict, ip: str, inst: Instance) -> None:
    cl.terminate_instances(t, ident, ip, "aws-cli/2.15.30", [inst])


def setup_dev_instances(cl: Cluster, params: SimParams) -> None:
    for when in poisson_times(cl, 8 / 24.0 * params.cluster_scale, _working_hours):
        cl.at(when, _dev_instance, cl)


# -- spot interruptions and cluster-autoscaler scale-down --------------------------------------


def _scale_down_node(t: float, cl: Cluster) -> None:
    """A node the ASG added, removed by the cluster-autoscaler (IRSA) or a spot reclaim."""
    (inst,) = cl.run_instances(
        t,
        AUTOSCALER,
        "autoscaling.amazonaws.com",
        "autoscaling.amazonaws.com",
        1,
        "node-scale-down",
        cl.rng.choice(("m6i.xlarge", "c6i.2xlarge")),
        spot=cl.rng.random() < 0.5,
    )
    boot = cl.instance_identity(inst)
    cl.aws(t + cl.rng.uniform(60, 120), boot, inst.private_ip, "aws-sdk-go-v2/1.25.0",
           "ecr.amazonaws.com", "GetAuthorizationToken", None, None, read_only=True)  # fmt: skip
    life = math.exp(cl.rng.uniform(math.log(300), math.log(5400)))
    if cl.rng.random() < 0.5:
        ca = assumed_role(
            "eks-cluster-autoscaler", f"botocore-session-{cl.ids.digits(10)}", "AROACLUSTERAUTOSC1"
        )
        ip = f"10.{100 + cl.rng.randrange(0, len(cl.nodes))}.0.{cl.rng.randrange(2, 200)}"
        cl.at(t + life, _terminate_as, cl, ca, ip, "aws-sdk-go/1.44 cluster-autoscaler", inst)
    else:
        cl.at(t + life, _terminate_as, cl, SPOT_SERVICE, "ec2.amazonaws.com", "ec2.amazonaws.com",
              inst)  # fmt: skip


def _terminate_as(t: float, cl: Cluster, ident: dict, ip: str, ua: str, inst: Instance) -> None:
    cl.terminate_instances(t, ident, ip, ua, [inst])


def setup_node_scale_down(cl: Cluster, params: SimParams) -> None:
    for when in poisson_times(cl, 1.5 * params.cluster_scale):
        cl.at(when, _scale_down_node, cl)


# -- CI jobs that exec into test pods ----------------------------------------------------------


def _ci_test_pod(t: float, cl: Cluster, ns: Namespace) -> None:
    """The CI deployer creates a test pod, execs the suite into it, deletes it."""
    sa = f"system:serviceaccount:{ns.name}:ci-deployer"
    pod = cl.create_pod(
        t,
        ns,
        scenario="ci-exec",
        image=f"ghcr.io/corp/app:{cl.ids.hex(7)}",
        container="app",
        service_account="default",
        creator=sa,
        binary="/app/server",
        args="--listen :8080",
        name=f"e2e-{cl.ids.suffix(6)}",
        labels={"ci": "e2e"},
    )
    s = t + cl.rng.uniform(15, 40)
    for k in range(cl.rng.randrange(1, 4)):
        sh = cl.kube_exec(s + k * 60, pod, sa, ["sh", "-c", "pytest -q tests/e2e"])
        proc = cl.exec_proc(s + k * 60 + 1, pod, "/usr/local/bin/pytest", "-q tests/e2e", sh)
        cl.exit_proc(s + k * 60 + 40, pod, proc)
    end = s + cl.rng.uniform(120, 600)
    pod.busy_until = end + 1
    cl.at(end, _delete_by, cl, pod, sa)
    cl.count("ci-exec", "test-pods")


def setup_ci_exec(cl: Cluster, params: SimParams) -> None:
    for ns in in_namespaces(cl, "ci"):
        for when in poisson_times(cl, 3.0 * params.churn_scale, _working_hours):
            cl.at(when, _ci_test_pod, cl, ns)


# -- Packer image builds under a CI role -------------------------------------------------------


def _packer(t: float, cl: Cluster) -> None:
    """Packer (from CI) runs a builder instance under the CI role and terminates it."""
    ident = assumed_role(CI_PACKER_ROLE[0], f"gitlab-{cl.ids.digits(9)}", CI_PACKER_ROLE[1])
    ua = "aws-sdk-go/1.50.0 (go1.21.7; linux; amd64) packer/1.10.1"
    (inst,) = cl.run_instances(t, ident, CI_NAT_IP, ua, 1, "image-builds", "t3.large")
    role = cl.instance_identity(inst, "packer-builder-role")
    s = t + cl.rng.uniform(60, 120)
    for i in range(cl.rng.randrange(2, 8)):
        cl.aws(s + i * 10, role, inst.private_ip, BOTO_UA, "s3.amazonaws.com", "GetObject",
               {"bucketName": "corp-build-artifacts", "key": f"pkgs/{cl.ids.hex(6)}.deb"}, None,
               read_only=True, data_event=True)  # fmt: skip
    built = s + cl.rng.uniform(240, 900)
    cl.aws(built, ident, CI_NAT_IP, ua, "ec2.amazonaws.com", "CreateImage",
           {"instanceId": inst.instance_id, "name": f"base-{cl.ids.digits(8)}"}, None)  # fmt: skip
    cl.at(built + cl.rng.uniform(60, 240), _terminate_as, cl, ident, CI_NAT_IP, ua, inst)


def setup_image_builds(cl: Cluster, params: SimParams) -> None:
    for when in poisson_times(cl, 8 / 24.0 * params.cluster_scale, _working_hours):
        cl.at(when, _packer, cl)


# -- GitOps and dashboards polling external endpoints -----------------------------------------


def _poller(period: float, dest: External) -> Callable[[Cluster, float, Pod], None]:
    """Traffic of a polling workload: each pod polls ``dest`` every ``period`` on its own
    clock (a scheduler tick: ~1% jitter) from its first traffic tick until it is deleted."""
    started: set[str] = set()

    def poll(t: float, c: Cluster, pod: Pod) -> None:
        if pod.deleted is not None or t >= c.end:
            return
        c.flow(t, pod, dest, c.rng.randrange(400, 2_000), c.rng.randrange(2_000, 60_000))
        c.at(t + period * (1 + c.rng.uniform(-0.01, 0.01)), poll, c, pod)

    def traffic(c: Cluster, t: float, pod: Pod) -> None:
        if pod.uid not in started:
            started.add(pod.uid)
            c.at(t, poll, c, pod)

    return traffic


def setup_gitops_polling(cl: Cluster, params: SimParams) -> None:
    """Argo CD / dashboards: one or more replicas poll one external endpoint on a period."""
    for i, ns in enumerate(in_namespaces(cl, "monitoring", "web", "api")):
        dest = POLLED[i % len(POLLED)]
        name = ("argocd-repo-server", "grafana", "status-poller", "slack-notifier")[i % 4]
        wl = Workload(
            "Deployment",
            name,
            ns,
            f"ghcr.io/corp/{name}",
            "/usr/local/bin/poller",
            "--interval 3m",
            replicas := cl.rng.randrange(1, 3),
            replicas,  # no autoscaling: a fixed number of pollers
            "gitops-polling",
            _poller(cl.rng.choice((180.0, 300.0, 900.0, 3600.0)), dest),
            name,
        )
        cl.at(cl.start + cl.rng.uniform(30, 500), _start_workload, cl, wl)
        cl.count("gitops-polling", "workloads")
