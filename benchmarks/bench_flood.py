"""A telemetry flood of 10x the normal entity count, mixed into a simulated day with attacks.

Someone who can write audit records (a compromised controller, a noisy node) creates fake
pods in one namespace, ten for every real entity of the day, in one burst (30 min by
default) in the middle of the day.
Three replays of the same day through the shipped model, each in a fresh process so its
peak resident memory (``ru_maxrss``) is its own:

  clean        the simulated day alone
  flood        the day + the flood, default caps (max_entities 200,000)
  flood+cap    the day + the flood, max_entities set to --cap (the configured bound)

Printed per run: records in, entities profiled, evicted, alerts, telemetry-flood alerts,
labelled attacks detected, and peak RSS, checked against the memory bound (the container's
limit in deploy/k8s/deployment.yaml, 2 GiB). The attacks the clean run detects must still be
detected under the flood. The replay keeps every scored row for the report, so its RSS is
an upper bound on what ``serve`` holds for the same input.

Usage:  .venv/bin/python benchmarks/bench_flood.py [--hours 24] [--seed 7] [--factor 10]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from churnguard.config import PipelineSettings, Settings
from churnguard.ingest.events import EntityKind


def _template(audit_path: Path) -> dict:
    """A real-shaped pod create from the simulated audit log, to clone fakes from."""
    for line in audit_path.read_bytes().splitlines():
        rec = orjson.loads(line)
        ref = rec.get("objectRef", {})
        if (
            rec.get("verb") == "create"
            and ref.get("resource") == "pods"
            and "subresource" not in ref
        ):
            return rec
    raise SystemExit("no pod create in the simulated audit log")


def write_flood(audit_path: Path, out: Path, count: int, start: float, end: float) -> None:
    """``count`` fake pods created in namespace ``flood`` between ``start`` and ``end``."""
    template = _template(audit_path)
    with out.open("wb") as fh:
        for i in range(count):
            rec = copy.deepcopy(template)
            t = start + (end - start) * i / count
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
            name = f"decoy-7f9c{i % 10}d-{i:08d}"
            rec["auditID"] = str(uuid.UUID(int=i))
            rec["requestReceivedTimestamp"] = rec["stageTimestamp"] = stamp
            rec["requestURI"] = "/api/v1/namespaces/flood/pods"
            rec["objectRef"].update(namespace="flood", name=name)
            meta = rec["responseObject"]["metadata"]
            meta.update(name=name, namespace="flood", uid=str(uuid.UUID(int=10**12 + i)))
            meta["creationTimestamp"] = stamp[:19] + "Z"
            fh.write(orjson.dumps(rec) + b"\n")


def run(inputs: list[str], labels: list[dict], max_entities: int | None) -> dict:
    """One replay (in a child process): counts, detections and peak RSS."""
    from churnguard.offline.evaluate import evaluate
    from churnguard.offline.replay import replay_files
    from churnguard.wiring import make_pipeline

    settings = Settings()
    if max_entities is not None:
        settings = Settings(pipeline=PipelineSettings(max_entities=max_entities))
    started = time.perf_counter()
    result = replay_files(inputs, settings, pipeline=make_pipeline(settings))
    report = evaluate(labels, [a for a in result.alerts if a.entity.kind != "namespace"])
    floods = [a for a in result.alerts if "telemetry_flood" in a.rules]
    profiled = {s.profile.entity.key() for s in result.scored}
    return {
        "records": result.stats.get("records", 0),
        "entities": len(profiled),
        "evicted": result.stats.get("evicted", 0),
        "alerts": len(result.alerts) - len(floods),
        "flood_alerts": len(floods),
        "flood_namespaces": sorted({a.entity.namespace for a in floods}),
        "detected": report.detected,
        "labels": report.labels,
        "detected_keys": sorted(
            {a.entity.key() for a in result.alerts if a.entity.kind != "namespace"}
            & {_label_key(lab) for lab in labels}
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _label_key(label: dict) -> str:
    if label["kind"] == EntityKind.INSTANCE:
        return f"instance/{label['instance_id']}"
    return f"{label['namespace']}/{label['pod']}"


def in_child(*args: object) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(run, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--factor", type=float, default=10.0, help="fake entities per real one")
    ap.add_argument("--cap", type=int, default=1000, help="max_entities of the capped run")
    ap.add_argument("--burst-min", type=float, default=30.0, help="the flood's duration")
    ap.add_argument(
        "--memory-limit-mib", type=float, default=2048.0, help="the bound peak RSS must stay under"
    )
    args = ap.parse_args()

    from churnguard.simulate import SimParams, generate, write

    data = Path(tempfile.mkdtemp(prefix="cg-flood-"))
    sim = generate(SimParams(seed=args.seed, hours=args.hours))
    paths = write(sim, data)
    inputs = [str(p) for k, p in paths.items() if k not in ("labels", "summary")]
    labels = [dict(lab) for lab in sim.labels]

    clean = in_child(inputs, labels, None)
    fakes = int(clean["entities"] * args.factor)
    times = [
        orjson.loads(line).get("stageTimestamp")
        for line in Path(paths["k8s_audit"]).read_bytes().splitlines()[:: max(1, fakes // 50)]
    ]
    from churnguard.ingest.common import parse_time

    stamps = [parse_time(t, "t") for t in times if t]
    flood_file = data / "flood_audit.jsonl"
    middle = (min(stamps) + max(stamps)) / 2
    write_flood(Path(paths["k8s_audit"]), flood_file, fakes, middle, middle + args.burst_min * 60)
    flooded = in_child([*inputs, str(flood_file)], labels, None)
    capped = in_child([*inputs, str(flood_file)], labels, args.cap)

    print(f"simulated {args.hours:g} h, seed {args.seed}; flood: {fakes} fake pods")
    cols = ("records", "entities", "evicted", "alerts", "flood_alerts", "detected", "labels")
    print(f"{'run':<11}" + "".join(f"{c:>13}" for c in cols) + f"{'peak RSS MiB':>14}{'s':>7}")
    for name, r in (("clean", clean), ("flood", flooded), ("flood+cap", capped)):
        row = "".join(f"{r[c]:>13}" for c in cols)
        print(f"{name:<11}{row}{r['peak_rss_mib']:>14}{r['seconds']:>7}")
    print(
        f"flood alerts name: {capped['flood_namespaces']} (cap run), {flooded['flood_namespaces']}"
    )
    worst = max(r["peak_rss_mib"] for r in (clean, flooded, capped))
    verdict = "within" if worst <= args.memory_limit_mib else "OVER"
    print(f"peak RSS {worst} MiB: {verdict} the {args.memory_limit_mib:g} MiB bound")
    kept = set(clean["detected_keys"])
    for name, r in (("flood", flooded), ("flood+cap", capped)):
        lost = kept - set(r["detected_keys"])
        print(
            f"{name}: attacks detected in the clean run still detected: "
            f"{len(kept) - len(lost)}/{len(kept)}" + (f"; lost {sorted(lost)}" if lost else "")
        )


if __name__ == "__main__":
    main()
