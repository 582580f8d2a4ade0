"""The Kafka service against the raw consumer, on the same records in the same run.

Produces a simulated cluster (default 6 h, seed 11) into the demo's four input topics on the
embedded Tansu broker (or KAFKA_BOOTSTRAP_SERVERS), then consumes everything three ways:

  raw       a bare kafka-python consumer (group, poll until caught up): the floor
  raw+json  the same, decoding every value with orjson
  serve     churnguard's Service (adapters, entities, windows, scoring, alerts, checkpoints)

and prints records/s and each one's time as a multiple of the raw consumer's.

Usage:  .venv/bin/python benchmarks/bench_serve.py [--hours 6] [--seed 11] [--partitions 2]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from contextlib import nullcontext

import orjson
from kafka import KafkaConsumer

from churnguard.config import Settings
from churnguard.service.broker import EmbeddedBroker, create_topics
from churnguard.service.clients import client_config
from churnguard.service.kafka import Service
from churnguard.service.producing import namespace_key, produce_records
from churnguard.simulate import SimParams, SimResult, generate

TOPIC_OF = {"k8s_audit": "audit", "cloudtrail": "cloud", "falco": "runtime",
            "tetragon": "runtime", "flow": "flows"}  # fmt: skip


def serve_settings(bootstrap: str, prefix: str) -> Settings:
    s = Settings()
    k = s.kafka
    k.bootstrap_servers = bootstrap
    k.group_id = f"{prefix}-serve"
    k.input_topics = {f"{prefix}-{t}": "auto" for t in dict.fromkeys(TOPIC_OF.values())}
    k.alerts_topic, k.dead_letter_topic = f"{prefix}-alerts", f"{prefix}-dlq"
    k.checkpoint_topic = f"{prefix}-checkpoints"
    k.max_poll_interval_ms, k.session_timeout_ms = 3000, 6000
    s.metrics.port = 0
    return s


def raw_consume(settings: Settings, total: int, decode: bool) -> float:
    consumer = KafkaConsumer(
        *settings.kafka.input_topics,
        **client_config(settings.kafka),
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=3000,
        session_timeout_ms=6000,
    )
    seen, start = 0, None
    try:
        while seen < total:
            batch = consumer.poll(timeout_ms=200, max_records=2000)
            for records in batch.values():
                if start is None:
                    start = time.perf_counter()  # after the group join, like serve below
                for rec in records:
                    if decode:
                        orjson.loads(rec.value)
                seen += len(records)
        return time.perf_counter() - (start or time.perf_counter())
    finally:
        consumer.close()


def serve_consume(settings: Settings, total: int) -> float:
    service = Service(settings, stop_event=threading.Event())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    start = None
    while sum(service.stats.records.values()) < total:
        if start is None and service.stats.records:
            start = time.perf_counter()
        time.sleep(0.01)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    service.stop_event.set()
    thread.join(timeout=60)
    print(f"serve: {service.stats.alerts} alerts, {service.stats.dead_letters} dead letters")
    return elapsed


def produce_simulated(
    settings: Settings, prefix: str, sim: SimResult, *, keyed: bool = True
) -> int:
    """Write a simulation's records to the benchmark's input topics; returns how many."""
    total = 0
    for fmt, rows in sim.records.items():
        raw = [orjson.dumps(r) for r in rows]
        topic = f"{prefix}-{TOPIC_OF[fmt]}"
        keys = (namespace_key(v, None) if keyed else None for v in raw)
        total += produce_records(settings.kafka, topic, zip(keys, raw, strict=True))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--partitions", type=int, default=2)
    args = ap.parse_args()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with nullcontext(None) if external else EmbeddedBroker() as broker:
        bootstrap = external or broker.bootstrap
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        settings = serve_settings(bootstrap, prefix)
        k = settings.kafka
        create_topics(bootstrap, [*k.input_topics, k.alerts_topic], args.partitions)
        create_topics(bootstrap, [k.dead_letter_topic, k.checkpoint_topic], 1,
                      compacted=[k.checkpoint_topic])  # fmt: skip
        total = produce_simulated(
            settings, prefix, generate(SimParams(seed=args.seed, hours=args.hours))
        )
        print(f"{total:,} records in {len(k.input_topics)} topics x {args.partitions} partitions")
        rows = [
            ("raw", raw_consume(settings, total, decode=False)),
            ("raw+json", raw_consume(settings, total, decode=True)),
            ("serve", serve_consume(settings, total)),
        ]
    base = rows[0][1]
    print(f"{'consumer':<10}{'seconds':>9}{'records/s':>12}{'x raw':>8}")
    for name, seconds in rows:
        print(f"{name:<10}{seconds:>9.2f}{total / seconds:>12,.0f}{seconds / base:>8.1f}")


if __name__ == "__main__":
    main()
