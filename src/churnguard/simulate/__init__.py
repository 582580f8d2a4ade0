"""Labelled cluster telemetry in the real formats: benign Kubernetes churn plus attacks.

``generate(SimParams(...))`` runs the scenarios on one seeded event-time simulation and
returns every record per format (sorted by event time), the labels (one row per malicious
entity, docs/contracts.md) and a summary; ``write(result, out_dir)`` puts them on disk as
``k8s_audit.jsonl``, ``cloudtrail.jsonl``, ``falco.jsonl``, ``tetragon.jsonl``,
``flows.jsonl``, ``labels.jsonl``, ``benign.jsonl`` (each benign entity's kind) and
``summary.json``. Same seed, same bytes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from churnguard.errors import ConfigError
from churnguard.simulate import adaptive, attacks, benign, lookalikes
from churnguard.simulate.cluster import Cluster
from churnguard.simulate.params import DEFAULT_START, SimParams, plan_namespaces
from churnguard.simulate.world import FILES, parse_start

__all__ = [
    "DEFAULT_START",
    "FILES",
    "MIXES",
    "SCENARIOS",
    "Scenario",
    "SimParams",
    "SimResult",
    "generate",
    "write",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    kind: str  # "benign" | "attack"
    technique: str | None  # ATT&CK id(s) of the attack's labels
    setup: Callable[[Cluster, SimParams], None]
    summary: str
    mix: str = "default"  # "default": every mix; "hard": only in the hard mix (issue 13)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "deployments",
        "benign",
        None,
        benign.setup_deployments,
        "Deployments with HPA on a diurnal curve and rolling deploys; StatefulSets, "
        "DaemonSets; periodic flows",
    ),
    Scenario(
        "cronjobs",
        "benign",
        None,
        benign.setup_cronjobs,
        "CronJobs every 5-120 min (one compacts logs with Python gzip), TTL/GC clean-up",
    ),
    Scenario(
        "ci-runners",
        "benign",
        None,
        benign.setup_ci,
        "CI runner pods living seconds to minutes: exec by the runner, heavy pulls, "
        "tar czf artifacts, deleted by the runner's service account",
    ),
    Scenario(
        "backups",
        "benign",
        None,
        benign.setup_backups,
        "backup CronJobs: tar czf then hundreds of MB uploaded to S3",
    ),
    Scenario(
        "new-workloads",
        "benign",
        None,
        benign.setup_new_workloads,
        "new Deployments mid-run with new images, owners and external destinations",
    ),
    Scenario(
        "node-drains",
        "benign",
        None,
        benign.setup_drains,
        "node drains: every pod on a node evicted by a person or the cluster-autoscaler",
    ),
    Scenario(
        "ec2-autoscaling",
        "benign",
        None,
        benign.setup_ec2,
        "an autoscaling group on a diurnal curve and spot instances reclaimed in minutes",
    ),
    Scenario(
        "admin-debug",
        "benign",
        None,
        benign.setup_admin,
        "admins exec into and delete stuck pods; a person's test instance for hours",
    ),
    Scenario(
        "attack-pod-evasion",
        "attack",
        attacks.T_EVASION,
        attacks.setup_pod_evasion,
        "bare pod or exec into a running one, payload, deleted minutes later by the "
        "person or a stolen service account",
    ),
    Scenario(
        "attack-instance-evasion",
        "attack",
        attacks.T_EVASION,
        attacks.setup_instance_evasion,
        "one non-autoscaler identity runs an instance, reads S3 from it, terminates it",
    ),
    Scenario(
        "attack-collection",
        "attack",
        attacks.T_COLLECTION,
        attacks.setup_collection,
        "secret reads and hundreds of distinct S3 objects from a web/api/worker pod",
    ),
    Scenario(
        "attack-archive-exfil",
        "attack",
        attacks.T_ARCHIVE,
        attacks.setup_archive_exfil,
        "archive via Python tarfile/zipfile/bz2/gzip or tar czf, then upload to a new host",
    ),
    Scenario(
        "attack-c2-beacon",
        "attack",
        attacks.T_C2,
        attacks.setup_c2,
        "small periodic low-jitter connections to a rare external address for hours",
    ),
    Scenario(
        "attack-low-and-slow",
        "attack",
        f"{attacks.T_COLLECTION}|{attacks.T_C2}",
        attacks.setup_low_and_slow,
        "collection spread over hours, or a 30-minute beacon",
    ),
    Scenario(
        "attack-lookalike",
        "attack",
        f"{attacks.T_ARCHIVE}|{attacks.T_EVASION}",
        attacks.setup_lookalike,
        "a manual backup Job shipping its archive to a new host; a CI-runner-named pod "
        "exec'd into and deleted by a person",
    ),
    Scenario(
        "attack-container-escape",
        "attack",
        attacks.T_DEPLOY_CONTAINER,
        attacks.setup_container_escape,
        "a person's pod nsenters into its node and runs a container there with ctr run; "
        "the container, which no pod accounts for, uploads to the attacker",
    ),
    Scenario(
        "sre-debug",
        "benign",
        None,
        lookalikes.setup_sre_debug,
        "three SREs each kubectl-run a netshoot pod about twice a day, exec, DNS/HTTP checks,"
        " delete it minutes later",
        "hard",
    ),
    Scenario(
        "notebooks",
        "benign",
        None,
        lookalikes.setup_notebooks,
        "JupyterHub single-user pods: pip installs, datasets read from S3, Python zipfile/"
        "tarfile exports uploaded, culled by the hub",
        "hard",
    ),
    Scenario(
        "log-archivers",
        "benign",
        None,
        lookalikes.setup_log_archivers,
        "hourly Python tarfile of the logs uploaded to the organisation's log bucket",
        "hard",
    ),
    Scenario(
        "dev-instances",
        "benign",
        None,
        lookalikes.setup_dev_instances,
        "a developer's SSO session runs a test instance, uses it, terminates it in 30-90 min",
        "hard",
    ),
    Scenario(
        "node-scale-down",
        "benign",
        None,
        lookalikes.setup_node_scale_down,
        "nodes removed minutes after launch by the cluster-autoscaler's role or a spot reclaim",
        "hard",
    ),
    Scenario(
        "ci-exec",
        "benign",
        None,
        lookalikes.setup_ci_exec,
        "a CI deployer service account creates test pods, execs the suite into them, deletes",
        "hard",
    ),
    Scenario(
        "image-builds",
        "benign",
        None,
        lookalikes.setup_image_builds,
        "Packer under a CI role runs a builder instance and terminates it within minutes",
        "hard",
    ),
    Scenario(
        "gitops-polling",
        "benign",
        None,
        lookalikes.setup_gitops_polling,
        "Argo CD / dashboards polling one external endpoint every 3-60 min for days",
        "hard",
    ),
    Scenario(
        "attack-sharded-exfil",
        "attack",
        attacks.T_ARCHIVE,
        adaptive.setup_sharded_exfil,
        "a parallel Job: 6-14 short pods each archive a slice and send it to one rare host",
        "hard",
    ),
    Scenario(
        "attack-deployment-collection",
        "attack",
        attacks.T_COLLECTION,
        adaptive.setup_deployment_collection,
        "a one-replica Deployment whose pod reads secrets and hundreds of bucket objects",
        "hard",
    ),
    Scenario(
        "attack-ci-role-instance",
        "attack",
        attacks.T_EVASION,
        adaptive.setup_ci_role_instance,
        "stolen CI-role keys run an instance like Packer, use the role from it, terminate it",
        "hard",
    ),
    Scenario(
        "attack-sre-imitation",
        "attack",
        attacks.T_EVASION,
        adaptive.setup_sre_imitation,
        "the SREs' netshoot pod, name and commands by a non-SRE identity, payload, deleted",
        "hard",
    ),
    Scenario(
        "attack-slow-beacon",
        "attack",
        attacks.T_C2,
        adaptive.setup_slow_beacon,
        "a beacon every 40-60 min with 10-30 min of jitter for 8-16 h",
        "hard",
    ),
    Scenario(
        "attack-learning-period",
        "attack",
        attacks.T_ARCHIVE,
        adaptive.setup_learning_period,
        "a new Deployment whose pods archive and ship data from their first minutes",
        "hard",
    ),
)
_BY_NAME = {s.name: s for s in SCENARIOS}
MIXES = ("default", "hard")


@dataclass(frozen=True, slots=True)
class SimResult:
    """Everything a run produced, in memory: records per format, labels, summary."""

    records: dict[str, list[dict]]  # format (k8s_audit, cloudtrail, falco, tetragon, flow)
    labels: list[dict]
    summary: dict
    benign: dict[str, str] = field(default_factory=dict)  # benign entity key -> its kind


def select(names: tuple[str, ...] | list[str], mix: str = "default") -> list[Scenario]:
    """The scenarios to run in registry order; empty = all of the mix (``default``: the
    original scenarios; ``hard``: also the look-alikes and adaptive attacks). Unknown names
    or mixes are an error."""
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(_BY_NAME)}")
    if mix not in MIXES:
        raise ConfigError(f"unknown mix {mix!r}; known: {', '.join(MIXES)}")
    if names:
        return [s for s in SCENARIOS if s.name in names]
    return [s for s in SCENARIOS if mix == "hard" or s.mix == "default"]


def generate(params: SimParams, on_time: Callable[[float], None] | None = None) -> SimResult:
    """Run the selected scenarios on one seeded cluster and collect the telemetry.

    ``on_time`` hears how many simulated seconds are done, for a progress bar.
    """
    if params.hours <= 0 or params.namespaces < 1:
        raise ConfigError("hours must be > 0 and namespaces >= 1")
    scenarios = select(params.scenarios, params.mix)
    try:
        start = parse_start(params.start)
    except ValueError as exc:
        raise ConfigError(f"--start {params.start!r}: {exc}") from exc
    if start + params.hours * 3600 > time.time():  # the pipeline takes no future event time
        raise ConfigError(
            f"--start {params.start!r} with --hours {params.hours:g} ends ahead of the wall"
            " clock: the pipeline dead-letters events dated ahead of it (max_future_seconds)"
        )
    rng = random.Random(params.seed)
    nodes = max(3, (params.namespaces + 1) // 2)
    cl = Cluster(rng, start, params.hours, plan_namespaces(params.namespaces), nodes)
    benign.setup_control_plane(cl)
    for scenario in scenarios:
        scenario.setup(cl, params)
    cl.run(on_time)
    records = {fmt: cl.sink.sorted_records(fmt) for fmt in FILES}
    labels = [lab.as_dict() for lab in sorted(cl.labels, key=lambda x: (x.start, x.scenario))]
    kinds = benign_kinds(cl)
    summary = _summary(cl, params, scenarios, records, labels)
    summary["benign_kinds"] = dict(sorted(Counter(kinds.values()).items()))
    return SimResult(records, labels, summary, kinds)


def benign_kinds(cl: Cluster) -> dict[str, str]:
    """Each benign entity's key (as ``EntityRef.key()``) and kind (the scenario behind it)."""
    out = {f"{p.ns}/{p.name}": p.kind for p in cl.pods if not p.malicious}
    out.update({f"instance/{i.instance_id}": i.kind for i in cl.instances if not i.malicious})
    return out


def _summary(
    cl: Cluster,
    params: SimParams,
    scenarios: list[Scenario],
    records: dict[str, list[dict]],
    labels: list[dict],
) -> dict:
    pods, instances = len(cl.pods), len(cl.instances)
    malicious = sum(p.malicious for p in cl.pods) + sum(i.malicious for i in cl.instances)
    techniques: dict[str, int] = {}
    for lab in labels:
        techniques[lab["technique"]] = techniques.get(lab["technique"], 0) + 1
    return {
        "seed": params.seed,
        "hours": params.hours,
        "start": params.start,
        "params": params.as_dict(),
        "namespaces": {ns.name: ns.personality for ns in cl.namespaces},
        "scenarios": {s.name: dict(sorted(cl.counts.get(s.name, {}).items())) for s in scenarios},
        "entities": {"pod": pods, "instance": instances},
        "benign_entities": pods + instances - malicious,
        "malicious_entities": malicious,
        "labels": len(labels),
        "techniques": dict(sorted(techniques.items())),
        "records": {fmt: len(rows) for fmt, rows in records.items()},
    }


def write(result: SimResult, out_dir: str | Path) -> dict[str, Path]:
    """Write one JSONL file per format plus labels.jsonl and summary.json; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt, filename in FILES.items():
        paths[fmt] = out / filename
        _write_jsonl(paths[fmt], result.records[fmt])
    paths["labels"] = out / "labels.jsonl"
    _write_jsonl(paths["labels"], result.labels)
    paths["benign"] = out / "benign.jsonl"
    _write_jsonl(paths["benign"], [{"entity": k, "kind": v} for k, v in result.benign.items()])
    paths["summary"] = out / "summary.json"
    paths["summary"].write_bytes(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2) + b"\n")
    return paths


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("wb") as fh:
        for i in range(0, len(rows), 4096):
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in rows[i : i + 4096]))
