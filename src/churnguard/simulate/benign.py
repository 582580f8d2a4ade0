"""Benign churn: the everyday cluster behaviour that trips static rules.

Each scenario is ``setup(cluster, params)``: it schedules its own actions on the cluster's
event-time queue. Long-running workloads (Deployments, StatefulSets, DaemonSets) live in
:class:`Workload`, which also replaces pods that someone else deleted or evicted.

Over 400 lines on purpose: one short ``setup`` function per benign scenario, each
independent; the catalogue reads best as one list (splitting by theme would scatter it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from churnguard.simulate.cluster import (
    CLUSTER_AUTOSCALER,
    CONTROLLERS,
    GC_CONTROLLER,
    PEOPLE,
    RUNNER_UA,
    TTL_CONTROLLER,
    Cluster,
    Instance,
    Namespace,
    Pod,
    diurnal,
)
from churnguard.simulate.params import SimParams
from churnguard.simulate.records import assumed_role
from churnguard.simulate.world import (
    DEBIAN,
    DOCKER_HUB,
    ECR,
    GHCR,
    GITHUB,
    GRAFANA,
    PYPI,
    S3,
    SQS,
    STRIPE,
    External,
)

TICK = 300.0  # long-running pods report a flow window every 5 minutes
AUTOSCALER = assumed_role(
    "AWSServiceRoleForAutoScaling",
    "AutoScaling",
    "AROAASGSERVICEROLE01",
    invoked_by="autoscaling.amazonaws.com",
)
SPOT_SERVICE = assumed_role(
    "AWSServiceRoleForEC2Spot", "EC2Spot", "AROAEC2SPOTSERVICE01", invoked_by="ec2.amazonaws.com"
)
MB = 1_000_000


def poisson_times(
    cl: Cluster,
    per_hour: float,
    rate_at: Callable[[float], float] | None = None,
    begin: float | None = None,
) -> list[float]:
    """Arrival times of a (thinned, if ``rate_at`` gives 0..1) Poisson process over the run."""
    out: list[float] = []
    if per_hour <= 0:
        return out
    t = cl.start if begin is None else begin
    while True:
        t += cl.rng.expovariate(per_hour / 3600.0)
        if t >= cl.end:
            return out
        if rate_at is None or cl.rng.random() < rate_at(t):
            out.append(t)


def in_namespaces(cl: Cluster, *personalities: str) -> list[Namespace]:
    return [ns for ns in cl.namespaces if ns.personality in personalities]


# -- traffic of long-running pods ----------------------------------------------------------


def _peer(cl: Cluster, pod: Pod) -> Pod | None:
    """Another live long-running pod in the namespace (the service it talks to)."""
    peers = [
        p
        for p in cl.live.values()
        if p.namespace is pod.namespace and p is not pod and p.traffic is not None
    ]
    return cl.rng.choice(peers) if peers else None


def web_traffic(cl: Cluster, t: float, pod: Pod) -> None:
    peer = _peer(cl, pod)
    if peer is not None:
        cl.flow(
            t,
            pod,
            peer,
            cl.rng.randrange(20_000, 2 * MB),
            cl.rng.randrange(50_000, 5 * MB),
            port=6379 if peer.workload_name == "redis" else 8080,
        )


def api_traffic(cl: Cluster, t: float, pod: Pod) -> None:
    web_traffic(cl, t, pod)
    if cl.rng.random() < 0.3:
        cl.flow(
            t + 1.0, pod, STRIPE, cl.rng.randrange(2_000, 40_000), cl.rng.randrange(2_000, 90_000)
        )
    if cl.rng.random() < 0.3:
        cl.flow(t + 2.0, pod, SQS, cl.rng.randrange(1_000, 30_000), cl.rng.randrange(500, 9_000))


def worker_traffic(cl: Cluster, t: float, pod: Pod) -> None:
    cl.flow(t, pod, SQS, cl.rng.randrange(5_000, 60_000), cl.rng.randrange(20_000, 400_000))
    if cl.rng.random() < 0.4:
        key = f"thumbs/{cl.ids.hex(8)}.webp"
        size = cl.rng.randrange(20_000, 400_000)
        cl.s3_call(t + 3.0, pod, "PutObject", f"{pod.ns}-assets", key, size)
        cl.flow(t + 3.0, pod, S3, size + 2_000, 1_500)


def monitoring_traffic(cl: Cluster, t: float, pod: Pod) -> None:
    if pod.workload_name == "prometheus":
        cl.pod_api(t, pod, "list", "pods")
        targets = [p for p in cl.live.values() if p.traffic is not None and p is not pod]
        for target in cl.rng.sample(targets, min(3, len(targets))):
            cl.flow(
                t + cl.rng.uniform(0, 30),
                pod,
                target,
                600,
                cl.rng.randrange(20_000, 300_000),
                port=9100,
            )
    elif pod.workload_name == "grafana-agent":
        cl.flow(t, pod, GRAFANA, cl.rng.randrange(200_000, 3 * MB), cl.rng.randrange(1_000, 9_000))
    else:
        web_traffic(cl, t, pod)


def data_traffic(cl: Cluster, t: float, pod: Pod) -> None:
    """Notebook servers: people reading a handful of objects now and then."""
    for _ in range(cl.rng.randrange(0, 4)):
        size = cl.rng.randrange(100_000, 20 * MB)
        cl.s3_call(
            t + cl.rng.uniform(0, 200),
            pod,
            "GetObject",
            "corp-datalake",
            f"curated/events/dt=2026-02-{cl.rng.randrange(1, 28):02d}/part-"
            f"{cl.rng.randrange(0, 400):05d}.parquet",
            size,
        )
        cl.flow(t + 200, pod, S3, 3_000, size)


TRAFFIC = {
    "web": web_traffic,
    "api": api_traffic,
    "worker": worker_traffic,
    "monitoring": monitoring_traffic,
    "data": data_traffic,
}


def traffic_tick(t: float, cl: Cluster) -> None:
    for pod in list(cl.live.values()):
        if pod.traffic is not None and pod.created < t:
            pod.traffic(cl, t + cl.rng.uniform(0, TICK), pod)
    cl.at(t + TICK, traffic_tick, cl)


# -- long-running workloads --------------------------------------------------------------


@dataclass(eq=False)
class Workload:
    """A Deployment (via ReplicaSets), StatefulSet or DaemonSet and its live pods."""

    kind: str
    name: str
    ns: Namespace
    image: str
    binary: str
    args: str
    base: int
    peak: int
    scenario: str
    traffic: Callable[[Cluster, float, Pod], None] | None
    service_account: str = "default"
    pods: list[Pod] = field(default_factory=list)
    rs_hash: str = ""
    rs_uid: str = ""
    version: int = 1
    rolling: bool = False

    def owner(self) -> tuple[str, str, str]:
        if self.kind == "Deployment":
            return ("ReplicaSet", f"{self.name}-{self.rs_hash}", self.rs_uid)
        return (self.kind, self.name, self.rs_uid)

    def spawn(self, cl: Cluster, t: float, node_index: int | None = None) -> Pod:
        controller = CONTROLLERS["ReplicaSet" if self.kind == "Deployment" else self.kind]
        name = None
        if self.kind == "StatefulSet":
            taken = {p.name for p in self.pods}
            name = next(
                f"{self.name}-{i}"
                for i in range(len(self.pods) + 1)
                if f"{self.name}-{i}" not in taken
            )
        labels = {"app.kubernetes.io/name": self.name}
        if self.kind == "Deployment":
            labels["pod-template-hash"] = self.rs_hash
        pod = cl.create_pod(
            t,
            self.ns,
            scenario=self.scenario,
            image=f"{self.image}:v1.{self.version}",
            container=self.name,
            service_account=self.service_account,
            creator=controller,
            binary=self.binary,
            args=self.args,
            name=name,
            owner=self.owner(),
            workload=(self.kind, self.name),
            labels=labels,
            node=cl.nodes[node_index] if node_index is not None else None,
        )
        pod.traffic = self.traffic
        pod.on_gone = self._gone
        self.pods.append(pod)
        if cl.rng.random() < 0.5:  # read its config (and sometimes a secret) at start
            cl.pod_api(t + 8.0, pod, "get", "configmaps", f"{self.name}-config")
            if cl.rng.random() < 0.5:
                cl.pod_api(t + 8.5, pod, "get", "secrets", f"{self.name}-credentials")
        return pod

    def new_revision(self, cl: Cluster) -> None:
        self.rs_hash = cl.ids.suffix(9 if cl.rng.random() < 0.5 else 10)
        self.rs_uid = cl.ids.uid()

    def _gone(self, cl: Cluster, t: float, pod: Pod) -> None:
        """Deleted by someone else (eviction, admin, attacker): the controller replaces it."""
        if pod in self.pods:
            self.pods.remove(pod)
            node = pod.node.index if self.kind == "DaemonSet" else None
            cl.at(t + cl.rng.uniform(0.5, 3.0), lambda t2: self.spawn(cl, t2, node))

    def scale(self, t: float, cl: Cluster) -> None:
        """HPA on a diurnal curve: scale up by creating, down by deleting the newest pods."""
        if not self.rolling:
            want = self.base + round(
                (self.peak - self.base) * diurnal(t) + cl.rng.uniform(-0.6, 0.6)
            )
            want = max(self.base, min(self.peak, want))
            while len(self.pods) < want:
                self.spawn(cl, t + cl.rng.uniform(0, 20))
            while len(self.pods) > want:
                victim = self.pods.pop()
                cl.delete_pod(t + cl.rng.uniform(0, 20), victim, CONTROLLERS["ReplicaSet"])
        cl.at(t + TICK, self.scale, cl)

    def roll(self, t: float, cl: Cluster) -> None:
        """Rolling deploy: one new pod up, one old pod deleted by the replicaset-controller."""
        old = list(self.pods)
        self.version += 1
        self.new_revision(cl)
        self.rolling = True
        step = t
        for pod in old:
            step += cl.rng.uniform(15, 40)
            self.spawn(cl, step)
            if pod in self.pods:
                self.pods.remove(pod)
                cl.at(step + cl.rng.uniform(10, 25), _delete_by, cl, pod, CONTROLLERS["ReplicaSet"])
        cl.at(step + 30, self._done_rolling)
        cl.count(self.scenario, "rollouts")

    def _done_rolling(self, t: float) -> None:
        self.rolling = False


def _delete_by(t: float, cl: Cluster, pod: Pod, who: str, eviction: bool = False) -> None:
    cl.delete_pod(t, pod, who, eviction=eviction)


# (kind, name, image, binary, args, base, peak, service account)
_LONG_RUNNING = {
    "web": [
        (
            "Deployment",
            "web",
            "ghcr.io/corp/storefront-web",
            "/usr/local/bin/node",
            "server.js",
            3,
            8,
            "web",
        ),
        (
            "StatefulSet",
            "redis",
            "docker.io/library/redis",
            "/usr/local/bin/redis-server",
            "/etc/redis/redis.conf",
            1,
            1,
            "default",
        ),
    ],
    "api": [
        (
            "Deployment",
            "api",
            "ghcr.io/corp/api",
            "/usr/local/bin/gunicorn",
            "app:wsgi -w 4 -b 0.0.0.0:8080",
            3,
            9,
            "api",
        ),
        (
            "StatefulSet",
            "postgres",
            "docker.io/library/postgres",
            "/usr/lib/postgresql/16/bin/postgres",
            "-D /var/lib/postgresql/data",
            1,
            1,
            "default",
        ),
    ],
    "worker": [
        (
            "Deployment",
            "worker",
            "ghcr.io/corp/worker",
            "/usr/local/bin/python3",
            "-m worker --queue jobs",
            2,
            6,
            "worker",
        )
    ],
    "batch": [
        (
            "Deployment",
            "scheduler-ui",
            "ghcr.io/corp/scheduler-ui",
            "/app/scheduler-ui",
            "--port 8080",
            1,
            1,
            "default",
        )
    ],
    "ci": [
        (
            "Deployment",
            "gitlab-runner",
            "registry.gitlab.com/gitlab-org/gitlab-runner",
            "/usr/bin/gitlab-runner",
            "run --user=gitlab-runner",
            1,
            1,
            "gitlab-runner",
        )
    ],
    "backups": [
        (
            "Deployment",
            "restic-rest",
            "docker.io/restic/rest-server",
            "/usr/bin/rest-server",
            "--path /data",
            1,
            1,
            "default",
        )
    ],
    "data": [
        (
            "Deployment",
            "jupyterhub",
            "quay.io/jupyterhub/k8s-hub",
            "/usr/local/bin/python3",
            "-m jupyterhub",
            1,
            2,
            "hub",
        )
    ],
    "monitoring": [
        (
            "StatefulSet",
            "prometheus",
            "quay.io/prometheus/prometheus",
            "/bin/prometheus",
            "--config.file=/etc/prometheus/prometheus.yml",
            1,
            1,
            "prometheus",
        ),
        (
            "Deployment",
            "grafana-agent",
            "docker.io/grafana/agent",
            "/bin/grafana-agent",
            "--config.file=/etc/agent/agent.yaml",
            1,
            2,
            "grafana-agent",
        ),
        (
            "DaemonSet",
            "node-exporter",
            "quay.io/prometheus/node-exporter",
            "/bin/node_exporter",
            "--path.rootfs=/host",
            0,
            0,
            "node-exporter",
        ),
    ],
}


def _start_workload(t: float, cl: Cluster, wl: Workload) -> None:
    wl.new_revision(cl)
    if wl.kind == "DaemonSet":
        for node in cl.nodes:
            wl.spawn(cl, t + cl.rng.uniform(0, 60), node.index)
        return
    for _ in range(wl.base):
        wl.spawn(cl, t + cl.rng.uniform(0, 60))
    if wl.kind == "Deployment":
        if wl.peak > wl.base:
            cl.at(t + TICK, wl.scale, cl)
        for when in poisson_times(cl, 1 / 10.0, begin=t + 1800):
            cl.at(when, wl.roll, cl)


def setup_deployments(cl: Cluster, params: SimParams) -> None:
    """Deployments (HPA on a diurnal curve, rolling deploys), StatefulSets and DaemonSets."""
    for ns in cl.namespaces:
        for kind, name, image, binary, args, base, peak, sa in _LONG_RUNNING[ns.personality]:
            wl = Workload(
                kind,
                name,
                ns,
                image,
                binary,
                args,
                base,
                peak,
                "deployments",
                TRAFFIC.get(ns.personality, web_traffic),
                sa,
            )
            # the run starts with a fresh rollout so every pod's creation is on record
            cl.at(cl.start + cl.rng.uniform(0, 600), _start_workload, cl, wl)
    cl.at(cl.start + 660, traffic_tick, cl)


_NEW_APPS = (
    ("recommendations", External("api.segment.io", "52.34.77.14")),
    ("geoip", External("download.maxmind.com", "104.16.38.47")),
    ("pdf-render", External("fonts.gstatic.com", "142.250.72.99")),
    ("feature-flags", External("sdk.launchdarkly.com", "52.12.21.139")),
    ("audit-shipper", External("http-intake.logs.datadoghq.com", "3.233.158.48")),
)


def setup_new_workloads(cl: Cluster, params: SimParams) -> None:
    """New Deployments appear mid-run: new images, owners and external destinations."""
    targets = in_namespaces(cl, "web", "api", "worker", "data")
    if not targets:
        return
    for i, when in enumerate(poisson_times(cl, 3 / 24.0 * params.cluster_scale)):
        app, dest = _NEW_APPS[i % len(_NEW_APPS)]
        ns = cl.rng.choice(targets)
        base_traffic = TRAFFIC.get(ns.personality, web_traffic)

        def traffic(
            c: Cluster, t: float, pod: Pod, dest: External = dest, base: Callable = base_traffic
        ) -> None:
            base(c, t, pod)
            if c.rng.random() < 0.5:
                c.flow(
                    t + 5, pod, dest, c.rng.randrange(2_000, 80_000), c.rng.randrange(5_000, 2 * MB)
                )

        wl = Workload(
            "Deployment",
            app,
            ns,
            f"ghcr.io/corp/{app}",
            "/app/server",
            "--listen :8080",
            cl.rng.randrange(1, 3),
            3,
            "new-workloads",
            traffic,
            app,
        )
        person = cl.rng.choice(PEOPLE)
        cl.audit(
            when,
            "create",
            f"/apis/apps/v1/namespaces/{ns.name}/deployments",
            person,
            {
                "resource": "deployments",
                "namespace": ns.name,
                "name": app,
                "apiGroup": "apps",
                "apiVersion": "apps/v1",
            },
            201,
        )
        cl.at(when + 1.0, _start_workload, cl, wl)
        cl.count("new-workloads", "workloads")


# -- CronJobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CronSpec:
    name: str
    every_min: float
    image: str
    runtime: tuple[float, float]
    work: Callable[[Cluster, float, Pod, float], None]  # (cluster, start, pod, end)


def _job_pod(t: float, cl: Cluster, ns: Namespace, spec: CronSpec, scenario: str) -> None:
    job = f"{spec.name}-{int(t // 60)}"
    pod = cl.create_pod(
        t,
        ns,
        scenario=scenario,
        image=spec.image,
        container=spec.name,
        service_account=spec.name,
        creator=CONTROLLERS["Job"],
        binary="/bin/sh",
        args=f"-c /app/{spec.name}.sh",
        owner=("Job", job, cl.ids.uid()),
        workload=("CronJob", spec.name),
        labels={
            "batch.kubernetes.io/job-name": job,
            "batch.kubernetes.io/controller-uid": cl.ids.uid(),
        },
    )
    begin = t + 6.0
    done = begin + cl.rng.uniform(*spec.runtime)
    spec.work(cl, begin, pod, done)
    pod.busy_until = done
    assert pod.main is not None
    cl.at(done, lambda t2: cl.exit_proc(t2, pod, pod.main, 0) if pod.deleted is None else None)
    r = cl.rng.random()
    who = TTL_CONTROLLER if r < 0.5 else CONTROLLERS["Job"] if r < 0.75 else GC_CONTROLLER
    cl.at(done + cl.rng.uniform(30, 300), _delete_by, cl, pod, who)


def _schedule_cron(cl: Cluster, ns: Namespace, spec: CronSpec, scale: float, scenario: str) -> None:
    period = max(60.0, spec.every_min * 60.0 / max(scale, 1e-6))
    t = cl.start - (cl.start % period) + period
    while t < cl.end:
        cl.at(t + cl.rng.uniform(0.5, 3.0), _job_pod, cl, ns, spec, scenario)
        t += period
    cl.count(scenario, "cronjobs")


def _work_report(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    proc = cl.exec_proc(t, pod, "/usr/local/bin/python3", "/app/report.py --since 15m", pod.main)
    cl.pod_api(t + 1, pod, "get", "configmaps", "report-settings")
    cl.flow(t + 2, pod, SQS, 4_000, 30_000)
    key = f"reports/{int(t)}.csv"
    cl.s3_call(end - 2, pod, "PutObject", f"{pod.ns}-reports", key, cl.rng.randrange(10_000, MB))
    cl.flow(end - 2, pod, S3, cl.rng.randrange(10_000, MB), 2_000)
    cl.exit_proc(end - 1, pod, proc)


def _work_logs_compact(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    """Log compaction with Python's gzip module: an archive written by a library, benignly."""
    proc = cl.exec_proc(
        t,
        pod,
        "/usr/local/bin/python3",
        "-c import gzip, shutil, glob; [shutil.copyfileobj(open(p, 'rb'), "
        "gzip.open(p + '.gz', 'wb')) for p in glob.glob('/var/log/app/*.log')]",
        pod.main,
    )
    size = cl.rng.randrange(2 * MB, 60 * MB)
    w = cl.write_file(t + 1, pod, proc, f"/var/log/app/app-{int(t // 60)}.log.gz", size, 2)
    cl.s3_call(w + 1, pod, "PutObject", f"{pod.ns}-logs", f"compacted/{int(t)}.log.gz", size)
    cl.flow(w + 1, pod, S3, size + 10_000, 4_000)
    cl.exit_proc(min(end - 1, w + 3), pod, proc)


def _work_sync(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    proc = cl.exec_proc(t, pod, "/usr/local/bin/python3", "/app/sync.py", pod.main)
    cl.flow(t + 1, pod, STRIPE, cl.rng.randrange(3_000, 30_000), cl.rng.randrange(20_000, 500_000))
    cl.exit_proc(end - 1, pod, proc)


def _work_cleanup(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    proc = cl.exec_proc(t, pod, "/usr/bin/find", "/tmp -mtime +1 -delete", pod.main)
    cl.exit_proc(end - 1, pod, proc)


def _tar_and_upload(cl: Cluster, t: float, pod: Pod, end: float, src: str, bucket: str) -> None:
    """tar czf + aws s3 cp: what backup jobs legitimately do every hour."""
    path = f"/backup/{src.strip('/').replace('/', '-')}-{int(t // 60)}.tar.gz"
    tar = cl.exec_proc(t, pod, "/bin/tar", f"czf {path} {src}", pod.main)
    size = cl.rng.randrange(100 * MB, 900 * MB)
    w = cl.write_file(t + 2, pod, tar, path, size, cl.rng.randrange(3, 7), falco_rule=True)
    cl.exit_proc(w + 1, pod, tar)
    cp = cl.exec_proc(w + 2, pod, "/usr/local/bin/aws", f"s3 cp {path} s3://{bucket}/", pod.main)
    key = path.rsplit("/", 1)[-1]
    cl.s3_call(w + 3, pod, "PutObject", bucket, key, size)
    cl.flow(min(end - 2, w + 60), pod, S3, size + size // 50, 200_000)
    cl.exit_proc(min(end - 1, w + 65), pod, cp)


def _work_pg_backup(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    dump = cl.exec_proc(t, pod, "/usr/bin/pg_dump", "-h postgres.payments-api -Fc appdb", pod.main)
    cl.exit_proc(t + 20, pod, dump)
    _tar_and_upload(cl, t + 21, pod, end, "/backup/dump", f"corp-backups-{pod.ns}")


def _work_volume_backup(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    _tar_and_upload(cl, t, pod, end, "/data", f"corp-backups-{pod.ns}")


def _work_etl(cl: Cluster, t: float, pod: Pod, end: float) -> None:
    """Data jobs read thousands of distinct S3 objects: normal for this workload."""
    proc = cl.exec_proc(t, pod, "/usr/local/bin/python3", "-m etl.run --date yesterday", pod.main)
    n = cl.rng.randrange(300, 2500)
    span = max(10.0, end - t - 30)
    total = 0
    for i in range(n):
        size = cl.rng.randrange(50_000, 8 * MB)
        total += size
        cl.s3_call(
            t + 5 + span * i / n,
            pod,
            "GetObject",
            "corp-datalake",
            f"raw/events/dt=2026-03-01/hour={i % 24:02d}/part-{i:05d}.json.gz",
            size,
        )
    cl.flow(t + 5 + span / 2, pod, S3, n * 900, total)
    cl.s3_call(
        end - 5, pod, "PutObject", "corp-datalake", f"curated/events/{int(t)}.parquet", total // 20
    )
    cl.flow(end - 5, pod, S3, total // 20, 5_000)
    cl.exit_proc(end - 2, pod, proc)


_CRONJOBS = {
    "batch": (
        CronSpec("report-gen", 15, "ghcr.io/corp/reports:v3.2", (20, 120), _work_report),
        CronSpec("logs-compact", 30, "ghcr.io/corp/ops-tools:v1.4", (30, 180), _work_logs_compact),
        CronSpec("sync-inventory", 5, "ghcr.io/corp/sync:v2.0", (10, 60), _work_sync),
        CronSpec("tmp-cleanup", 10, "docker.io/library/busybox:1.36", (2, 10), _work_cleanup),
    ),
    "backups": (
        CronSpec("pg-backup", 60, "ghcr.io/corp/pg-backup:v16", (120, 600), _work_pg_backup),
        CronSpec(
            "volume-backup", 240, "ghcr.io/corp/volume-backup:v2", (180, 900), _work_volume_backup
        ),
    ),
    "data": (CronSpec("etl-hourly", 120, "ghcr.io/corp/etl:v5.1", (300, 1500), _work_etl),),
    "monitoring": (
        CronSpec("alert-digest", 60, "ghcr.io/corp/ops-tools:v1.4", (5, 30), _work_sync),
    ),
}
BACKUP_CRONJOBS = {spec.name for spec in _CRONJOBS["backups"]}


def setup_cronjobs(cl: Cluster, params: SimParams) -> None:
    """CronJobs in batch, data and monitoring namespaces; TTL/GC clean-up minutes later."""
    for ns in in_namespaces(cl, "batch", "data", "monitoring"):
        for spec in _CRONJOBS[ns.personality]:
            _schedule_cron(cl, ns, spec, params.churn_scale, "cronjobs")


def setup_backups(cl: Cluster, params: SimParams) -> None:
    """Backup CronJobs: tar czf, then hundreds of MB uploaded to S3 (PutObject + egress)."""
    for ns in in_namespaces(cl, "backups"):
        for spec in _CRONJOBS["backups"]:
            _schedule_cron(cl, ns, spec, 1.0, "backups")


# -- CI runners ----------------------------------------------------------------------------

_CI_IMAGES = (
    ("docker.io/library/golang:1.22", "go build -o dist/ ./...", GITHUB),
    ("docker.io/library/node:20", "npm ci && npm run build", DOCKER_HUB),
    ("docker.io/library/python:3.12", "pip install -r requirements.txt && pytest", PYPI),
    ("docker.io/library/debian:12", "apt-get update && make", DEBIAN),
)


def _runner_pod(t: float, cl: Cluster, ns: Namespace) -> None:
    image, build, mirror = cl.rng.choice(_CI_IMAGES)
    sa = f"system:serviceaccount:{ns.name}:gitlab-runner"
    name = (
        f"runner-{cl.ids.suffix(8)}-project-{cl.rng.randrange(10, 900)}-concurrent-"
        f"{cl.rng.randrange(0, 8)}-{cl.ids.suffix(5)}"
    )
    pod = cl.create_pod(
        t,
        ns,
        scenario="ci-runners",
        image=image,
        container="build",
        service_account="default",
        creator=sa,
        binary="/bin/sh",
        args="-c while true; do sleep 1; done",
        name=name,
        labels={"job.runner.gitlab.com/pod": name[:40]},
        user_agent=RUNNER_UA,
    )
    # the runner drives the build through exec, then deletes the pod itself
    sh = cl.kube_exec(
        t + 5,
        pod,
        sa,
        [
            "sh",
            "-c",
            "if [ -x /usr/local/bin/bash ]; then exec /usr/local/bin/bash; else exec sh; fi",
        ],
        RUNNER_UA,
    )
    s = t + 7
    git = cl.exec_proc(
        s, pod, "/usr/bin/git", "clone --depth 20 https://github.com/corp/app.git", sh
    )
    cl.flow(
        s + 1, pod, GITHUB, cl.rng.randrange(50_000, 500_000), cl.rng.randrange(5 * MB, 80 * MB)
    )
    cl.exit_proc(s + 6, pod, git)
    duration = cl.rng.uniform(20, 900)
    step = cl.exec_proc(s + 7, pod, "/bin/sh", f"-c {build}", sh)
    cl.flow(
        s + 9, pod, mirror, cl.rng.randrange(100_000, 3 * MB), cl.rng.randrange(50 * MB, 800 * MB)
    )
    end = s + 7 + duration
    cl.exit_proc(end, pod, step)
    if cl.rng.random() < 0.7:
        tar = cl.exec_proc(end + 1, pod, "/bin/tar", "czf /builds/artifacts.tgz dist/", sh)
        size = cl.rng.randrange(5 * MB, 300 * MB)
        w = cl.write_file(
            end + 1.5, pod, tar, "/builds/artifacts.tgz", size, 2, falco_rule=cl.rng.random() < 0.5
        )
        cl.exit_proc(w + 0.5, pod, tar)
        cl.flow(w + 2, pod, cl.rng.choice((ECR, GHCR)), size + MB, 400_000)
        end = w + 10
    pod.busy_until = end + 15
    cl.at(end + cl.rng.uniform(2, 15), _delete_by, cl, pod, sa)


def setup_ci(cl: Cluster, params: SimParams) -> None:
    """CI runner pods living seconds to minutes: heavy pulls, tarballs, deleted by the runner."""
    per_hour = 10.0 * params.churn_scale
    for ns in in_namespaces(cl, "ci"):
        for when in poisson_times(cl, per_hour * 1.8, lambda t: 0.25 + 0.75 * diurnal(t, 14.0)):
            cl.at(when, _runner_pod, cl, ns)


# -- node drains, admins -------------------------------------------------------------------


def _drain(t: float, cl: Cluster) -> None:
    node = cl.rng.choice(cl.nodes)
    who = cl.rng.choice((CLUSTER_AUTOSCALER, cl.rng.choice(PEOPLE)))
    victims = [
        p
        for p in cl.live.values()
        if p.node is node and p.workload_kind != "DaemonSet" and p.busy_until < t
    ]
    at = t
    for pod in victims:
        pod.touched_by = "node-drains"
        at += cl.rng.uniform(0.2, 2.0)
        cl.at(at, _delete_by, cl, pod, who, True)
    cl.count("node-drains", "drains")
    cl.count("node-drains", "evictions", len(victims))


def setup_drains(cl: Cluster, params: SimParams) -> None:
    """Node drains: many pods evicted at once by a person or the cluster-autoscaler."""
    for when in poisson_times(cl, 3 / 24.0 * params.cluster_scale):
        cl.at(when, _drain, cl)


_ADMIN_COMMANDS = (["sh"], ["bash"], ["sh", "-c", "ps aux"], ["cat", "/etc/resolv.conf"])


def _debug(t: float, cl: Cluster) -> None:
    """An admin looks at a stuck pod (sometimes exec first) and deletes it."""
    pods = cl.live_pods(t, lambda p: p.busy_until < t and not p.malicious)
    if not pods:
        return
    pod = cl.rng.choice(pods)
    pod.touched_by = "admin-debug"
    person = cl.rng.choice(PEOPLE)
    delay = cl.rng.uniform(20, 300)
    if cl.rng.random() < 0.6:
        sh = cl.kube_exec(t, pod, person, cl.rng.choice(_ADMIN_COMMANDS))
        for i, (binary, args) in enumerate(
            (
                ("/bin/ps", "aux"),
                ("/bin/cat", "/etc/resolv.conf"),
                ("/usr/bin/curl", "-s localhost:8080/healthz"),
            )
        ):
            cl.exec_proc(t + 5 + i * 7, pod, binary, args, sh)
        delay += cl.rng.uniform(30, 1200)
        cl.count("admin-debug", "execs")
    cl.at(t + delay, _delete_by, cl, pod, person)
    cl.count("admin-debug", "deletes")


def _bastion(t: float, cl: Cluster) -> None:
    person = cl.rng.choice(PEOPLE)
    ident = assumed_role("AWSReservedSSO_PlatformAdmin_4f2a9c1e7d", person, "AROASSOPLATFORMADM1")
    made = cl.run_instances(
        t, ident, "198.51.100.23", "aws-cli/2.15.30", 1, "admin-debug", "t3.micro"
    )
    cl.at(
        t + cl.rng.uniform(3600, 5 * 3600),
        lambda t2: cl.terminate_instances(t2, ident, "198.51.100.23", "aws-cli/2.15.30", made),
    )


def setup_admin(cl: Cluster, params: SimParams) -> None:
    """Admins exec into and delete stuck pods; now and then a test instance for hours."""
    for when in poisson_times(cl, 10 / 24.0 * params.cluster_scale):
        cl.at(when, _debug, cl)
    for when in poisson_times(cl, 1 / 24.0 * params.cluster_scale):
        cl.at(when, _bastion, cl)


# -- EC2 autoscaling and spot ---------------------------------------------------------------


def _node_boot_calls(t: float, cl: Cluster, inst: Instance) -> None:
    if inst.terminated is not None:
        return
    ident = cl.instance_identity(inst)
    cl.aws(
        t,
        ident,
        inst.private_ip,
        "aws-sdk-go-v2/1.25.0",
        "ecr.amazonaws.com",
        "GetAuthorizationToken",
        None,
        None,
        read_only=True,
    )
    cl.aws(
        t + 2,
        ident,
        inst.private_ip,
        "aws-sdk-go-v2/1.25.0",
        "ec2.amazonaws.com",
        "DescribeInstances",
        {"instancesSet": {"items": [{"instanceId": inst.instance_id}]}},
        None,
        read_only=True,
    )
    cl.at(t + 3600, _node_boot_calls, cl, inst)


def _asg_step(t: float, cl: Cluster, group: list[Instance], peak: int) -> None:
    want = round(peak * diurnal(t) + cl.rng.uniform(-0.7, 0.7))
    want = max(0, min(peak, want))
    live = [i for i in group if i.terminated is None]
    if want > len(live):
        made = cl.run_instances(
            t,
            AUTOSCALER,
            "autoscaling.amazonaws.com",
            "autoscaling.amazonaws.com",
            want - len(live),
            "ec2-autoscaling",
        )
        group.extend(made)
        for inst in made:
            cl.at(t + cl.rng.uniform(60, 120), _node_boot_calls, cl, inst)
    elif want < len(live):
        cl.terminate_instances(
            t,
            AUTOSCALER,
            "autoscaling.amazonaws.com",
            "autoscaling.amazonaws.com",
            live[: len(live) - want],
        )
    cl.at(t + 900, _asg_step, cl, group, peak)


def _spot(t: float, cl: Cluster) -> None:
    (inst,) = cl.run_instances(
        t,
        AUTOSCALER,
        "autoscaling.amazonaws.com",
        "autoscaling.amazonaws.com",
        1,
        "ec2-autoscaling",
        "c6i.xlarge",
        spot=True,
    )
    cl.at(t + cl.rng.uniform(60, 120), _node_boot_calls, cl, inst)
    life = math.exp(cl.rng.uniform(math.log(180), math.log(3 * 3600)))
    cl.at(
        t + life,
        lambda t2: cl.terminate_instances(
            t2, SPOT_SERVICE, "ec2.amazonaws.com", "ec2.amazonaws.com", [inst]
        ),
    )


def setup_ec2(cl: Cluster, params: SimParams) -> None:
    """An autoscaling group on a diurnal curve plus spot instances reclaimed minutes later."""
    peak = max(1, round(6 * params.cluster_scale))
    cl.at(cl.start + 300, _asg_step, cl, [], peak)
    for when in poisson_times(cl, 2.0 * params.cluster_scale):
        cl.at(when, _spot, cl)


# -- control-plane noise (always on) -----------------------------------------------------------


def _control_plane(t: float, cl: Cluster) -> None:
    """Lease renewals, controller watches and gets, health probes: what adapters must skip."""
    node = cl.rng.choice(cl.nodes)
    cl.audit(
        t,
        "update",
        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}",
        f"system:node:{node.name}",
        {
            "resource": "leases",
            "namespace": "kube-node-lease",
            "name": node.name,
            "apiGroup": "coordination.k8s.io",
            "apiVersion": "coordination.k8s.io/v1",
        },
        user_agent="kubelet/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        source_ip=node.ip,
    )
    roll = cl.rng.random()
    if roll < 0.3:
        ns = cl.rng.choice(cl.namespaces).name
        who = CONTROLLERS["ReplicaSet"]
        cl.audit(
            t + 1.5,
            "watch",
            f"/apis/apps/v1/namespaces/{ns}/replicasets?watch=true",
            who,
            {
                "resource": "replicasets",
                "namespace": ns,
                "apiGroup": "apps",
                "apiVersion": "apps/v1",
            },
            user_agent="kube-controller-manager/v1.29.2 (linux/amd64) kubernetes/4b8e819/" + who,
        )
    elif roll < 0.6:
        ns = cl.rng.choice(cl.namespaces).name
        cl.audit(
            t + 2.5,
            "get",
            f"/api/v1/namespaces/{ns}/serviceaccounts/default",
            "system:kube-controller-manager",
            {"resource": "serviceaccounts", "namespace": ns, "name": "default", "apiVersion": "v1"},
        )
    elif roll < 0.7:
        cl.audit(t + 3.5, "get", "/livez", "system:anonymous", None, user_agent="kube-probe/1.29")
    cl.at(t + 60.0 * cl.rng.uniform(0.5, 1.5), _control_plane, cl)


def setup_control_plane(cl: Cluster) -> None:
    """Background API-server traffic every run has (not a selectable scenario)."""
    cl.at(cl.start + cl.rng.uniform(0, 30), _control_plane, cl)
