"""Repartition by entity on the demo day: the alerts and the rate cost of the route stage.

The demo's day (``churnguard simulate --seed 7``, 24 h) is served by one consumer with the
production pipeline, in one process, four ways:

  keyed x1          keyed by namespace on 1 partition (the reference: what replay raises)
  unkeyed x2        unkeyed (round-robin) on 2 partitions, repartition off (the problem)
  unkeyed x2 route  the same topics, ``kafka.repartition = true`` (2 shards)
  route, 1 shard    the same, ``repartition_partitions = 1``: the route stage alone changes
                    nothing, so this must equal the reference exactly

For each: alerts, whether the alert-id set equals the reference's, seconds and records/s
from the first record to caught up. The route stage's cost is the rate of "unkeyed x2
route" against "keyed x1" (same machine, same run).

Usage:  nice -n 5 .venv/bin/python benchmarks/bench_repartition.py [--hours 24] [--seed 7]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import orjson
from bench_scale import read_all
from bench_serve import bench_topics, event_ordered

from churnguard import logs
from churnguard.config import Settings
from churnguard.service.broker import bootstrap_servers
from churnguard.service.kafka import Service, default_pipeline_factory
from churnguard.service.producing import namespace_key, produce_records
from churnguard.simulate import SimParams, generate


def produce(settings: Settings, records: list[tuple[str, bytes]], keyed: bool) -> int:
    """Each topic's records in event-time order, keyed by namespace or not at all."""
    prefix = settings.kafka.group_id.removesuffix("-serve")
    by_topic: dict[str, list[bytes]] = {}
    for topic, raw in records:  # topics named "x-<input>": this run's prefix instead
        by_topic.setdefault(f"{prefix}-{topic.split('-', 1)[1]}", []).append(raw)
    key: Callable[[bytes], bytes | None] = namespace_key if keyed else (lambda _: None)
    return sum(
        produce_records(settings.kafka, topic, ((key(v), v) for v in values))
        for topic, values in by_topic.items()
    )


def serve_until_caught_up(settings: Settings, idle_s: float = 2.0) -> float:
    """Seconds from the first record consumed to caught up (and still so ``idle_s`` later)."""
    stop = threading.Event()
    service = Service(settings, stop_event=stop, pipeline_factory=default_pipeline_factory)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    start = since = None
    try:
        while thread.is_alive():
            if start is None and sum(service.stats.records.values()):
                start = time.perf_counter()
            if service.caught_up:
                since = since or time.perf_counter()
                if time.perf_counter() - since >= idle_s:
                    break
            else:
                since = None
            time.sleep(0.05)
        return (since or time.perf_counter()) - (start or time.perf_counter())
    finally:
        stop.set()
        thread.join(timeout=120)


def run(bootstrap: str, records, name: str, partitions: int, keyed: bool, **kafka) -> dict:
    prefix = f"rp{uuid.uuid4().hex[:6]}"
    settings = bench_topics(bootstrap, prefix, partitions)
    k = settings.kafka
    k.repartition_topic, k.bindings_topic = f"{prefix}-repartition", f"{prefix}-bindings"
    k.checkpoint_interval_s = 30.0
    # bench_serve's 3 s poll interval (for quick joins on the embedded broker) is shorter
    # than one production-pipeline cycle of this day on 2 cores once the route stage polls
    # on its own thread: every member was evicted again and again (24 evictions in one run)
    k.max_poll_interval_ms, k.session_timeout_ms = 15_000, 30_000
    for field, value in kafka.items():
        setattr(k, field, value)
    total = produce(settings, records, keyed)
    seconds = serve_until_caught_up(settings)
    alert_ids = [orjson.loads(r.value)["alert_id"] for r in read_all(settings, k.alerts_topic)]
    dead = Counter(orjson.loads(r.value)["reason"] for r in read_all(settings, k.dead_letter_topic))
    return {"name": name, "records": total, "seconds": seconds, "alerts": alert_ids,
            "dead": dict(dead)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    logs.configure("WARNING")
    sim = generate(SimParams(seed=args.seed, hours=args.hours))
    records = event_ordered("x", sim)
    with bootstrap_servers() as bootstrap:
        runs = [
            run(bootstrap, records, "keyed x1", 1, True),
            run(bootstrap, records, "unkeyed x2", 2, False),
            run(bootstrap, records, "unkeyed x2 route", 2, False, repartition=True),
            run(
                bootstrap,
                records,
                "route, 1 shard",
                2,
                False,
                repartition=True,
                repartition_partitions=1,
            ),
        ]
    reference = set(runs[0]["alerts"])
    print(f"demo day: seed {args.seed}, {args.hours:g} h, {runs[0]['records']} records")
    print("| run | alerts | ids equal to keyed x1 | extra / missing | dead letters | s | rec/s |")
    print("| --- | ---: | --- | --- | --- | ---: | ---: |")
    for r in runs:
        got = set(r["alerts"])
        rate = r["records"] / r["seconds"] if r["seconds"] else float("nan")
        print(f"| {r['name']} | {len(r['alerts'])} | {'yes' if got == reference else 'no'} | "
              f"{len(got - reference)} / {len(reference - got)} | {r['dead'] or 'none'} | "
              f"{r['seconds']:.1f} | "
              f"{rate:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
