"""One run, one table: the service against the raw consumer, 1 and 2 consumers, replay,
scoring per detector and memory per tracked entity, on the same simulated records.

Measured in this order, in one process (the two-consumer run in two child processes):

  raw          a bare kafka-python consumer of the input topics (the floor on this machine)
  serve x1     one churnguard Service in a child process (production pipeline, checkpoints)
  serve x2     two Services in two processes, one consumer group (rebalance included)
  replay       the same records from files (``churnguard replay``)
  score <det>  the scorer alone over the first --score-rows rows of the profile batches
               replay produced (its tick batches, as the service scores them), per detector
               (oif = the default online isolation forest, hst = river HalfSpaceTrees,
               iforest = scikit-learn IsolationForest), no model bundle; then oif over all
               of the day's rows in their order, 1,000 to a batch (what a tick of a cluster
               with ~100x the entities holds: the cost that is per row, not per batch)
  memory       bytes held per tracked live pod (tracemalloc; entity state, no scoring)
  latency      event-to-alert p50/p99 with the records produced at half the serve x1 rate:
               the alert's timestamp on the alerts topic minus that of the input record
               whose processing emitted it (both CreateTime stamped by the producers on
               this machine; an alert emitted because its partitions went idle counts from
               the last record processed). Simulated event time runs ~1000x faster than
               wall time there, so event-time windows add almost nothing: this is the
               service's queueing and processing latency.

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
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from bench_serve import bench_topics, event_ordered, produce_simulated, raw_consume

from churnguard import logs
from churnguard.config import Settings
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.scoring.scorer import Scorer
from churnguard.service.broker import bootstrap_servers
from churnguard.simulate import SimParams, generate, write
from churnguard.wiring import make_pipeline, make_scorer

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_scale:begin -->", "<!-- bench_scale:end -->"
DETECTORS = ("oif", "hst", "iforest")
MEMORY_PODS = 20_000
BIG_BATCH = 1000  # rows per batch of the second oif scoring run (the day's ticks hold ~12)


def first_batches(batches: list[list[Profile]], rows: int) -> list[list[Profile]]:
    """The leading batches holding about ``rows`` rows (all detectors score the same ones)."""
    out, n = [], 0
    for batch in batches:
        if n >= rows:
            break
        out.append(batch)
        n += len(batch)
    return out


def rebatched(batches: list[list[Profile]], size: int) -> list[list[Profile]]:
    """The same rows in the same order, ``size`` to a batch: a bigger cluster's ticks."""
    rows = [p for batch in batches for p in batch]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _child_serve(settings_json: bytes, counter, stop) -> None:
    """A consumer-group member in its own process, reporting records processed."""
    import msgspec

    from churnguard.service.kafka import Service

    logs.configure("WARNING")  # a failed session says why
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


class _TracingService:
    """Mixin for Service: notes, for every alert published, the input record behind it."""

    triggers: list[tuple[str, int, int]]
    last: tuple[str, int, int] | None = None

    def _process(self, shard, raw, origin, pinned):  # type: ignore[no-untyped-def]
        before = self.stats.alerts  # type: ignore[attr-defined]
        super()._process(shard, raw, origin, pinned)  # type: ignore[misc]
        self.last = (origin.source, origin.partition, origin.offset)
        self.triggers += [self.last] * (self.stats.alerts - before)  # type: ignore[attr-defined]

    def _update_lag(self) -> None:
        before = self.stats.alerts  # type: ignore[attr-defined]
        super()._update_lag()  # type: ignore[misc]
        if self.last is not None:
            self.triggers += [self.last] * (self.stats.alerts - before)  # type: ignore[attr-defined]


def _child_traced(settings_json: bytes, counter, stop, out: str) -> None:
    """One traced consumer in its own process; writes its triggers to ``out`` at the end."""
    import msgspec

    from churnguard.service.kafka import Service

    class Traced(_TracingService, Service):
        pass

    logs.configure("WARNING")
    settings = msgspec.json.decode(settings_json, type=Settings)
    service = Traced(settings, stop_event=threading.Event())
    service.triggers = []
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    while not stop.is_set():
        counter.value = sum(service.stats.records.values())
        time.sleep(0.02)
    service.stop_event.set()
    thread.join(timeout=60)
    Path(out).write_bytes(orjson.dumps(service.triggers))


def latency(bootstrap: str, sim, rate: float, partitions: int) -> tuple[float, float, int]:
    """p50 and p99 seconds from input record to alert, records produced at ``rate``/s."""
    import msgspec

    from churnguard.service.clients import KafkaClients
    from churnguard.service.producing import namespace_key

    prefix = f"lat{uuid.uuid4().hex[:6]}"
    settings = bench_topics(bootstrap, prefix, partitions, alert_partitions=1)
    k = settings.kafka
    records = event_ordered(prefix, sim)
    ctx = mp.get_context("spawn")
    counter, stop = ctx.Value("q", 0), ctx.Event()
    out = tempfile.mktemp(suffix=".json")
    child = ctx.Process(
        target=_child_traced, args=(msgspec.json.encode(settings), counter, stop, out)
    )
    child.start()
    producer = KafkaClients(k).producer()
    try:
        time.sleep(8.0)  # the group join (tansu completes it after the rebalance timeout)
        start = time.perf_counter()
        for i, (topic, raw) in enumerate(records):
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            producer.send(topic, key=namespace_key(raw, None), value=raw)
        producer.flush()
        deadline = time.monotonic() + 120
        while counter.value < len(records) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # let the last idle emission go out
    finally:
        producer.close()
        stop.set()
        child.join(timeout=60)
    triggers = [tuple(t) for t in orjson.loads(Path(out).read_bytes())]
    stamp = {}
    for topic in k.input_topics:
        for rec in read_all(settings, topic):
            stamp[(rec.topic, rec.partition, rec.offset)] = rec.timestamp
    alerts = read_all(settings, k.alerts_topic)
    waits = sorted((a.timestamp - stamp[t]) / 1000 for a, t in zip(alerts, triggers, strict=False))
    if not waits:
        return float("nan"), float("nan"), 0
    return waits[len(waits) // 2], waits[min(len(waits) - 1, int(0.99 * len(waits)))], len(waits)


def read_all(settings: Settings, topic: str) -> list:
    from kafka import KafkaConsumer, TopicPartition

    from churnguard.service.checkpoints import read_partitions
    from churnguard.service.clients import client_config

    consumer = KafkaConsumer(**client_config(settings.kafka), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return list(read_partitions(consumer, {TopicPartition(topic, p): 0 for p in parts}, 30))
    finally:
        consumer.close()


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


def memory_per_entity(pods: int) -> tuple[int, float]:
    """Bytes held per live pod (tracemalloc: Python objects and numpy buffers).

    ``pods`` creations within 20 minutes, none ended yet; those in the last allowed-lateness
    minute are still queued, not yet tracked.
    """
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
    tracemalloc.start()
    for doc in docs:
        pipe.process(doc)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracked = len(pipe.table.states)
    return tracked, held / max(tracked, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--score-rows", type=int, default=2000, help="rows each detector scores")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()

    sim = generate(SimParams(seed=args.seed, hours=args.hours))
    data = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    write(sim, data)
    paths = sorted(str(p) for p in data.glob("*.jsonl") if p.name != "labels.jsonl")
    rows: list[tuple[str, float, int, str]] = []  # name, seconds, items, note
    with bootstrap_servers() as bootstrap:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        settings = bench_topics(bootstrap, prefix, args.partitions)
        total = produce_simulated(settings, prefix, sim)
        rows.append(("raw kafka-python consumer", raw_consume(settings, total, False), total, ""))
        for n in (1, 2):
            settings.kafka.group_id = f"{prefix}-group{n}"
            seconds = serve_group(settings, total, n)
            note = "rebalance included" if n > 1 else ""
            rows.append((f"serve, {n} consumer process(es)", seconds, total, note))
        half = total / rows[1][1] / 2
        p50, p99, n_alerts = latency(bootstrap, sim, half, args.partitions)
    seconds, alerts, batches = captured_batches(paths, Settings())
    rows.append(("replay (files, same records)", seconds, total, f"{alerts} alerts"))
    first = first_batches(batches, args.score_rows)
    for det in DETECTORS:
        seconds, n_rows, det_alerts = score_alone(first, det)
        rows.append((f"scoring alone: {det}", seconds, n_rows, f"rows/s; {det_alerts} alerts"))
    seconds, n_rows, det_alerts = score_alone(rebatched(batches, BIG_BATCH), "oif")
    rows.append(
        (
            f"scoring alone: oif, all rows {BIG_BATCH:,} to a batch",
            seconds,
            n_rows,
            f"rows/s; {det_alerts} alerts; the per-batch cost spread over more rows",
        )
    )
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
        f"| memory per tracked live pod | | | | {per_entity / 1024:.2f} KiB held"
        f" ({tracked:,} pods, entity state only, tracemalloc) |"
    )
    lines.append(
        f"| event-to-alert latency at {half:,.0f} records/s (half of serve x1) | | | |"
        f" p50 {p50:.2f} s, p99 {p99:.2f} s over {n_alerts} alerts |"
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
