"""One run, one table: the service against the raw consumer, 1 and 2 consumers, replay,
scoring per detector and memory per tracked entity, on the same simulated records.

Measured in this order, in one process (the two-consumer run in two child processes):

  raw          a bare kafka-python consumer of the input topics (the floor on this machine)
  serve x1     one churnguard Service in a child process (production pipeline, checkpoints)
  serve x2     two Services in two processes, one consumer group (rebalance included)
  replay       the same records from files (``churnguard replay``)
  score <det>  the scorer alone over the profile batches replay produced, per detector
               (oif = the default online isolation forest, hst = river HalfSpaceTrees,
               iforest = scikit-learn IsolationForest), no model bundle
  memory       resident bytes per tracked live pod (entity state, no scoring)

``--write`` puts the table, the command and the machine into docs/benchmarks.md between
the ``bench_scale`` markers. Every ratio compares numbers from this one run.

Usage:  .venv/bin/python benchmarks/bench_scale.py [--hours 6] [--seed 11] [--partitions 2]
                                                   [--write]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import orjson
from bench_serve import produce_simulated, raw_consume, serve_settings

from churnguard.config import Settings
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.scoring.scorer import Scorer
from churnguard.service.broker import EmbeddedBroker, create_topics
from churnguard.simulate import SimParams, generate, write
from churnguard.wiring import make_pipeline, make_scorer

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_scale:begin -->", "<!-- bench_scale:end -->"
DETECTORS = ("oif", "hst", "iforest")
MEMORY_PODS = 20_000


def _child_serve(settings_json: bytes, counter, stop) -> None:
    """A consumer-group member in its own process, reporting records processed."""
    import msgspec

    from churnguard.service.kafka import Service

    settings = msgspec.json.decode(settings_json, type=Settings)
    service = Service(settings, stop_event=threading.Event())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    done = 0
    while not stop.is_set():
        now = sum(service.stats.records.values())
        with counter.get_lock():
            counter.value += now - done
        done = now
        time.sleep(0.02)
    service.stop_event.set()
    thread.join(timeout=60)


def serve_group(settings: Settings, total: int, consumers: int) -> float:
    """Seconds from the first record processed to ``total``, by ``consumers`` processes."""
    import msgspec

    ctx = mp.get_context("spawn")
    counter, stop = ctx.Value("q", 0), ctx.Event()
    blob = msgspec.json.encode(settings)
    procs = [ctx.Process(target=_child_serve, args=(blob, counter, stop)) for _ in range(consumers)]
    for p in procs:
        p.start()
    start = None
    try:
        while counter.value < total:
            if start is None and counter.value:
                start = time.perf_counter()
            time.sleep(0.01)
        return time.perf_counter() - (start or time.perf_counter())
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=60)


def captured_batches(paths: list[str], settings: Settings) -> tuple[float, int, list]:
    """Replay the files once; returns seconds, alerts and the scorer's input batches."""
    batches: list[list[Profile]] = []
    scorer = make_scorer(settings, make_pipeline(settings).spec)
    original = scorer.score

    def recording(profiles: list[Profile]):
        batches.append(list(profiles))
        return original(profiles)

    scorer.score = recording  # type: ignore[method-assign]
    pipe = Pipeline(settings, scorer=scorer, spec=scorer.spec)
    start = time.perf_counter()
    alerts = len(replay_files(paths, settings, pipeline=pipe).alerts)
    return time.perf_counter() - start, alerts, batches


def score_alone(batches: list[list[Profile]], detector: str) -> tuple[float, int, int]:
    """Seconds, rows and alerts of a fresh scorer (no bundle) over the captured batches."""
    settings = Settings()
    settings.scoring.detector = detector
    pipe = make_pipeline(settings, use_bundle=False)
    scorer: Scorer = pipe.scorer  # type: ignore[assignment]
    rows = alerts = 0
    start = time.perf_counter()
    for batch in batches:
        alerts += sum(s.alert is not None for s in scorer.score(batch))
        rows += len(batch)
    return time.perf_counter() - start, rows, alerts


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_entity(pods: int) -> tuple[int, float]:
    """Resident bytes per live pod: ``pods`` creations within 20 minutes, none ended yet
    (those in the last allowed-lateness minute are still queued, not yet tracked)."""
    settings = Settings()
    pipe = Pipeline(settings)
    t0 = 1_715_680_800.0
    docs = []
    for i in range(pods):
        ns, name = f"ns-{i % 50}", f"app{i % 40}-{i}"
        docs.append(
            orjson.dumps(
                {
                    "kind": "Event",
                    "apiVersion": "audit.k8s.io/v1",
                    "auditID": f"c-{i}",
                    "stage": "ResponseComplete",
                    "verb": "create",
                    "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "objectRef": {"resource": "pods", "namespace": ns, "apiVersion": "v1"},
                    "responseStatus": {"code": 201},
                    "stageTimestamp": datetime.fromtimestamp(t0 + i * 1200 / pods, UTC).isoformat(),
                    "responseObject": {
                        "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns, "uid": f"u-{i}"},
                    },
                }
            )
        )
    before = _rss()
    for doc in docs:
        pipe.process(doc)
    tracked = len(pipe.table.states)
    return tracked, (_rss() - before) / max(tracked, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()

    sim = generate(SimParams(seed=args.seed, hours=args.hours))
    data = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    write(sim, data)
    paths = sorted(str(p) for p in data.glob("*.jsonl") if p.name != "labels.jsonl")
    rows: list[tuple[str, float, int, str]] = []  # name, seconds, items, note
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with nullcontext(None) if external else EmbeddedBroker() as broker:
        bootstrap = external or broker.bootstrap
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        settings = serve_settings(bootstrap, prefix)
        k = settings.kafka
        create_topics(bootstrap, [*k.input_topics, k.alerts_topic], args.partitions)
        create_topics(bootstrap, [k.dead_letter_topic, k.checkpoint_topic], 1,
                      compacted=[k.checkpoint_topic])  # fmt: skip
        total = produce_simulated(settings, prefix, sim)
        rows.append(("raw kafka-python consumer", raw_consume(settings, total, False), total, ""))
        for n in (1, 2):
            settings.kafka.group_id = f"{prefix}-group{n}"
            seconds = serve_group(settings, total, n)
            rows.append((f"serve, {n} consumer process(es)", seconds, total, "join included"))
    seconds, alerts, batches = captured_batches(paths, Settings())
    rows.append(("replay (files, same records)", seconds, total, f"{alerts} alerts"))
    n_rows = sum(len(b) for b in batches)
    for det in DETECTORS:
        seconds, n_rows, det_alerts = score_alone(batches, det)
        rows.append((f"scoring alone: {det}", seconds, n_rows, f"{det_alerts} alerts, rows"))
    tracked, per_entity = memory_per_entity(MEMORY_PODS)

    raw = rows[0][1]
    lines = [
        f"`.venv/bin/python benchmarks/bench_scale.py --hours {args.hours:g} --seed {args.seed}"
        f" --partitions {args.partitions}` — {total:,} records, {args.partitions} partitions,"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}"
        f" ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "| what | seconds | items/s | x raw consumer time | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, secs, items, note in rows:
        ratio = f"{secs / raw:.1f}" if not name.startswith("scoring") else ""
        lines.append(f"| {name} | {secs:.2f} | {items / secs:,.0f} | {ratio} | {note} |")
    lines.append(
        f"| memory per tracked live pod | | | | {per_entity / 1024:.2f} KiB resident"
        f" ({tracked:,} pods, entity state only) |"
    )
    table = "\n".join(lines)
    print(table)
    if args.write:
        text = DOC.read_text()
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
