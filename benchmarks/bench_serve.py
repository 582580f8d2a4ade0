"""The Kafka service against the raw consumer, on the same records in the same run.

Produces a simulated cluster (default 6 h, seed 11) into the demo's four input topics on the
embedded Tansu broker (or KAFKA_BOOTSTRAP_SERVERS), then consumes everything three ways:

  raw       a bare kafka-python consumer (group, poll until caught up): the floor
  raw+json  the same, decoding every value with orjson
  serve     churnguard's Service (adapters, entities, windows, scoring, alerts, checkpoints)

and prints records/s and each one's time as a multiple of the raw consumer's.

``--split`` also says where the serve loop's thread spends its CPU while the records flow
(``time.thread_time``, so load on other cores does not move it): the consumer's ``poll``
(fetch and decode), the records through their shard (``Pipeline.process`` and publishing
what it made), the per-poll lag, idle-input and metrics step, checkpoints, and the rest of
the loop. The service's own overhead over the pipeline is everything but the second part.

Usage:  .venv/bin/python benchmarks/bench_serve.py [--hours 6] [--seed 11] [--partitions 2]
                                                   [--split]
"""

from __future__ import annotations

import argparse
import heapq
import threading
import time
import uuid
from collections import Counter

import orjson
from kafka import KafkaConsumer

from churnguard.config import Settings
from churnguard.service.broker import bootstrap_servers, create_topics
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


class SplitService(Service):
    """The service, adding up its loop thread's CPU seconds by part while records flow."""

    def __init__(self, settings: Settings, total: int) -> None:
        super().__init__(settings, stop_event=threading.Event())
        self.total = total
        self.cpu: Counter[str] = Counter()
        self._polling = False

    def _flowing(self) -> bool:
        return bool(self.shards) and sum(self.stats.records.values()) < self.total

    def _timed(self, part: str, call, *args, **kwargs):  # type: ignore[no-untyped-def]
        counted, started = self._flowing(), time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            if counted:
                self.cpu[part] += time.thread_time() - started

    def _poll_once(self) -> None:
        self._polling = True
        try:
            self._timed("loop", super()._poll_once)
        finally:
            self._polling = False

    def _session_step(self, part: str, call, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A part that also runs between polls (a periodic checkpoint) counts in the loop."""
        started, counted = time.thread_time(), self._flowing()
        result = self._timed(part, call, *args, **kwargs)
        if counted and not self._polling:
            self.cpu["loop"] += time.thread_time() - started
        return result

    def _poll(self, timeout_ms):  # type: ignore[no-untyped-def]
        return self._timed("consumer poll (fetch, decode)", super()._poll, timeout_ms)

    def _process(self, shard, raw, origin, pinned):  # type: ignore[no-untyped-def]
        self._timed("records through their shard", super()._process, shard, raw, origin, pinned)

    def _update_lag(self) -> None:
        self._timed("lag, idle inputs, metrics", super()._update_lag)

    def checkpoint(self, shards, *, force=False):  # type: ignore[no-untyped-def]
        self._session_step("checkpoints", super().checkpoint, shards, force=force)

    def report(self) -> str:
        loop = self.cpu.pop("loop", 0.0)
        parts = [*self.cpu.items(), ("rest of the loop", loop - sum(self.cpu.values()))]
        return f"serve thread CPU {loop:.2f} s: " + ", ".join(
            f"{name} {sec:.2f} s ({sec / loop:.0%})" for name, sec in parts
        )


def serve_consume(settings: Settings, total: int, split: bool = False) -> float:
    service = (
        SplitService(settings, total) if split else Service(settings, stop_event=threading.Event())
    )
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
    if isinstance(service, SplitService):
        print(service.report())
    return elapsed


def event_ordered(prefix: str, sim) -> list[tuple[str, bytes]]:
    """Every record with its input topic, merged across formats by event time."""
    from churnguard.ingest import parse_record

    timed = []
    for fmt, rows in sim.records.items():
        stream, last = [], 0.0
        for row in rows:
            raw = orjson.dumps(row)
            events = parse_record(raw, None).events
            last = events[0].time if events else last
            stream.append((last, f"{prefix}-{TOPIC_OF[fmt]}", raw))
        timed.append(stream)
    return [(topic, raw) for _, topic, raw in heapq.merge(*timed, key=lambda r: r[0])]


def produce_simulated(settings: Settings, prefix: str, sim: SimResult) -> int:
    """Write a simulation's records to the benchmark's input topics, keyed by namespace.

    Each topic gets its records in event-time order (Falco and Tetragon merged on the
    runtime topic): appending one source's day after the other's would make it late.
    """
    by_topic: dict[str, list[bytes]] = {}
    for topic, raw in event_ordered(prefix, sim):
        by_topic.setdefault(topic, []).append(raw)
    return sum(
        produce_records(settings.kafka, topic, ((namespace_key(v, None), v) for v in values))
        for topic, values in by_topic.items()
    )


def bench_topics(
    bootstrap: str, prefix: str, partitions: int, alert_partitions: int | None = None
) -> Settings:
    """Create the benchmark's topics (inputs with ``partitions``) and return its settings."""
    settings = serve_settings(bootstrap, prefix)
    k = settings.kafka
    create_topics(bootstrap, list(k.input_topics), partitions)
    create_topics(bootstrap, [k.alerts_topic], alert_partitions or partitions)
    create_topics(bootstrap, [k.dead_letter_topic, k.checkpoint_topic], 1,
                  compacted=[k.checkpoint_topic])  # fmt: skip
    return settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--split", action="store_true", help="where the serve thread's CPU goes")
    args = ap.parse_args()
    with bootstrap_servers() as bootstrap:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        settings = bench_topics(bootstrap, prefix, args.partitions)
        total = produce_simulated(
            settings, prefix, generate(SimParams(seed=args.seed, hours=args.hours))
        )
        topics = len(settings.kafka.input_topics)
        print(f"{total:,} records in {topics} topics x {args.partitions} partitions")
        rows = [
            ("raw", raw_consume(settings, total, decode=False)),
            ("raw+json", raw_consume(settings, total, decode=True)),
            ("serve", serve_consume(settings, total, args.split)),
        ]
    base = rows[0][1]
    print(f"{'consumer':<10}{'seconds':>9}{'records/s':>12}{'x raw':>8}")
    for name, seconds in rows:
        print(f"{name:<10}{seconds:>9.2f}{total / seconds:>12,.0f}{seconds / base:>8.1f}")


if __name__ == "__main__":
    main()
