"""End to end on this machine: embedded broker, a simulated cluster day, the real service.

Starts Tansu on a loopback port, creates the input, alerts, dead-letter and checkpoint
topics, simulates a labelled cluster day (benign churn plus attacks), produces it into the
input topics keyed by namespace, runs the real ``serve`` loop in a thread until it has
caught up (lag 0 and idle), stops it gracefully (flush, checkpoint, commit), reads the
alerts topic back and prints the alerts as a table. The default 24 simulated hours run well
under two minutes on two cores.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import sys
import threading
import time
from collections.abc import Iterable

import msgspec
import orjson

from churnguard.config import Settings, load_settings
from churnguard.ingest.common import parse_time
from churnguard.service.broker import EmbeddedBroker
from churnguard.service.checkpoints import read_partitions
from churnguard.service.clients import client_config
from churnguard.service.kafka import Service
from churnguard.service.producing import namespace_key, produce_records
from churnguard.simulate import SimParams, SimResult, generate, write

log = logging.getLogger("churnguard.demo")

# simulator format -> demo input topic (runtime carries both Falco and Tetragon: "auto")
TOPIC_OF = {
    "k8s_audit": "k8s-audit",
    "cloudtrail": "cloudtrail",
    "falco": "runtime",
    "tetragon": "runtime",
    "flow": "flows",
}
# One partition per topic, one consumer. CloudTrail calls known only by a pod IP cannot be
# keyed by namespace at the producer; with several partitions they land in other shards than
# their pod (measured on this demo day: 2 partitions raise false alerts from 32 to ~140).
# Production deployments key them through `pipeline.role_map` (docs/operations.md).
PARTITIONS = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", help="churnguard TOML config (scoring, thresholds)")
    parser.add_argument("--keep-dir", help="also write the simulated telemetry and labels here")


def run(args: argparse.Namespace) -> int:
    from churnguard.alerts.alert import render_table

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the client's connection chatter while the embedded broker starts is not news here
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    started = time.monotonic()
    sim = generate(SimParams(seed=args.seed, hours=args.hours))
    if args.keep_dir:
        write(sim, args.keep_dir)
    with EmbeddedBroker() as broker:
        settings = _settings(load_settings(args.config), broker.bootstrap)
        k = settings.kafka
        broker.create_topics([*k.input_topics, k.alerts_topic], PARTITIONS)
        broker.create_topics([k.dead_letter_topic, k.checkpoint_topic], 1,
                             compacted=[k.checkpoint_topic])  # fmt: skip
        produced = _produce(settings, sim.records)
        say(f"simulated {args.hours:g}h (seed {args.seed}): produced {produced:,} records "
            f"into {PARTITIONS} partitions of {', '.join(k.input_topics)}")  # fmt: skip
        service = Service(settings, stop_event=threading.Event())
        thread = threading.Thread(target=service.run, name="serve", daemon=True)
        thread.start()
        _wait_caught_up(service, thread)
        service.stop_event.set()
        thread.join(timeout=60)
        alerts = _read_alerts(settings)
    stats = service.stats
    say(f"served {sum(stats.records.values()):,} records: {stats.alerts} alerts, "
        f"{stats.dead_letters} dead letters, {stats.checkpoints} shard checkpoints")  # fmt: skip
    print(render_table(alerts) if alerts else "no alerts")
    print(_evaluation_summary(sim, alerts))
    say(f"labelled malicious entities: {len(sim.labels)}; "
        f"demo wall time {time.monotonic() - started:.1f}s")  # fmt: skip
    return 0


def _evaluation_summary(sim: SimResult, alerts: list) -> str:
    """The served alerts against the simulation's labels: what the table above caught."""
    from churnguard.offline.evaluate import CHURNGUARD, evaluate, format_reports

    report = evaluate(sim.labels, alerts, benign_entities=sim.summary["benign_entities"])
    return "evaluation against the labels:\n" + format_reports({CHURNGUARD: report})


def say(line: str) -> None:
    print(line, file=sys.stderr)


def _settings(base: Settings, bootstrap: str) -> Settings:
    k = base.kafka
    k.bootstrap_servers = bootstrap
    k.group_id = "churnguard-demo"
    k.input_topics = {t: ("auto" if t in ("runtime", "flows") else t.replace("-", "_"))
                      for t in dict.fromkeys(TOPIC_OF.values())}  # fmt: skip
    k.max_poll_interval_ms = 3000  # tansu completes a group join after the rebalance timeout
    k.session_timeout_ms = 6000
    k.checkpoint_interval_s = 5.0
    base.metrics.port = 0
    base.alerts.format = "json"  # the table reads the typed alerts back from the topic
    return base


def _produce(settings: Settings, records: dict[str, list[dict]]) -> int:
    """Each topic in event-time order, as a cluster's shippers would write it.

    Two formats share the runtime topic (Falco and Tetragon); appending one format's day
    after the other's put the second one behind the watermark whenever the other topics
    were consumed first: 1,164 Falco records dropped as late and 82 alerts instead of 33
    in about one demo run in three.
    """
    by_topic: dict[str, list[tuple[str, list[dict]]]] = {}
    for fmt, rows in records.items():
        by_topic.setdefault(TOPIC_OF[fmt], []).append((fmt, rows))
    total = 0
    for topic, streams in by_topic.items():
        pinned = settings.kafka.input_topics[topic]
        merged: Iterable[dict] = streams[0][1]
        if len(streams) > 1:  # each stream is sorted: merge them by event time
            timed = [
                [(parse_time(raw.get("time"), fmt), raw) for raw in rows] for fmt, rows in streams
            ]
            merged = (raw for _, raw in heapq.merge(*timed, key=lambda pair: pair[0]))
        items = ((namespace_key(raw, pinned), raw) for raw in map(orjson.dumps, merged))
        total += produce_records(settings.kafka, topic, items)
    return total


def _wait_caught_up(service: Service, thread: threading.Thread, idle_s: float = 1.0) -> None:
    """Until every assigned partition has lag 0 for ``idle_s`` (or the service died)."""
    since: float | None = None
    while thread.is_alive():
        if service.caught_up:
            since = since or time.monotonic()
            if time.monotonic() - since >= idle_s:
                return
        else:
            since = None
        time.sleep(0.1)


def _read_alerts(settings: Settings) -> list:
    from kafka import KafkaConsumer, TopicPartition

    from churnguard.alerts.alert import Alert

    topic = settings.kafka.alerts_topic
    consumer = KafkaConsumer(**client_config(settings.kafka), enable_auto_commit=False)
    try:
        starts = {TopicPartition(topic, p): 0 for p in consumer.partitions_for_topic(topic) or ()}
        decoder = msgspec.json.Decoder(Alert)
        return [decoder.decode(r.value) for r in read_partitions(consumer, starts, 30.0)]
    finally:
        consumer.close()
