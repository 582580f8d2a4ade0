"""The production pipeline (real scorer, shipped bundle) served from Kafka agrees with replay.

The stand-in scorer of test_serve.py checks the delivery guarantees; this test runs what
`churnguard serve` runs on a simulated cluster spread over two topics, and asserts exactly
the alerts `churnguard replay` raises on the same files. Kafka hands the two topics over at
different speeds from run to run, so this also checks that the order in which records
arrive does not matter. (It once did, in 8 of 16 runs here: a deletion read ahead of the
watermark was folded into a pod that event time had already expired; see
tests/unit/test_arrival_order.py.)
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from helpers import alert_ids, read_topic
from telemetry import sentinels as sentinel_records

from churnguard.ingest import parse_record
from churnguard.offline.replay import replay_files
from churnguard.service.clients import KafkaClients
from churnguard.service.kafka import default_pipeline_factory
from churnguard.service.producing import namespace_key, produce_records
from churnguard.simulate import SimParams, SimResult, generate, write
from churnguard.simulate.delivery import shuffled_within

pytestmark = pytest.mark.integration


def _simulated_cluster(tmp_path: Path) -> tuple[SimResult, list[bytes]]:
    """Three simulated hours written to ``tmp_path``, with a sentinel per namespace two
    hours later (written too) that closes every window."""
    sim = generate(SimParams(seed=5, hours=3.0))
    write(sim, tmp_path)
    namespaces = {r["objectRef"]["namespace"] for r in sim.records["k8s_audit"]
                  if r.get("objectRef", {}).get("namespace")}  # fmt: skip
    sentinels = [orjson.dumps(s) for s in sentinel_records(sim, namespaces)]
    (tmp_path / "sentinels.jsonl").write_bytes(b"\n".join(sentinels) + b"\n")
    return sim, sentinels


def _replayed(tmp_path: Path, settings) -> set[str]:
    """The alert ids ``replay`` raises on the files in ``tmp_path``, sentinels' aside."""
    files = [str(p) for p in sorted(tmp_path.glob("*.jsonl")) if p.name != "labels.jsonl"]
    replay = replay_files(files, settings, pipeline=default_pipeline_factory(settings))
    return {a.alert_id for a in replay.alerts if a.entity.pod != "sentinel"}


def test_served_alerts_equal_replayed_alerts_with_the_real_pipeline(
    make_settings, start_service, tmp_path: Path
) -> None:
    # periodic checkpoints of the real scorer's state are large; at the tests' 1 s interval
    # they can outlast the 3 s poll interval and force rebalances, which test_serve.py's
    # crash tests cover. This test is about serve and replay agreeing.
    settings = make_settings(partitions=1, checkpoint_interval_s=30.0)
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    sim, sentinels = _simulated_cluster(tmp_path)

    # each topic carries several exporters' records, interleaved in time as they would be
    by_topic: dict[str, list[tuple[float, bytes]]] = {audit_topic: [], runtime_topic: []}
    for fmt, rows in sim.records.items():
        topic = audit_topic if fmt in ("k8s_audit", "cloudtrail") else runtime_topic
        for value in map(orjson.dumps, rows):
            events = parse_record(value).events
            by_topic[topic].append((events[0].time if events else 0.0, value))
    for topic, items in by_topic.items():
        items.sort(key=lambda item: item[0])
        produce_records(settings.kafka, topic, ((namespace_key(v), v) for _, v in items))
    produce_records(settings.kafka, audit_topic, ((None, v) for v in sentinels))

    running = start_service(settings, default_pipeline_factory)
    running.wait_caught_up(timeout_s=120)
    running.close()
    served = alert_ids(settings)

    replayed = _replayed(tmp_path, settings)
    assert replayed, "the simulated attacks should raise alerts"
    assert len(served) == len(set(served)), "an alert id was published twice"
    only_served, only_replayed = sorted(set(served) - replayed), sorted(replayed - set(served))
    assert not only_served and not only_replayed, (only_served, only_replayed)


def test_served_in_delivery_order_equals_replay_with_no_late_drops(
    make_settings, start_service, tmp_path: Path
) -> None:
    """Records produced as pipelines deliver them: every source shuffled within 10 minutes.

    That needs an allowed lateness of at least 10 minutes on every topic; it is set here
    per topic (``pipeline.lateness_seconds`` takes topic names as well as source kinds).
    """
    settings = make_settings(partitions=1, checkpoint_interval_s=30.0)
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    settings.pipeline.lateness_seconds = {audit_topic: 660.0, runtime_topic: 660.0}
    sim, sentinels = _simulated_cluster(tmp_path)

    delivered = shuffled_within(sim.records, 600.0, seed=2)
    for topic, formats in ((audit_topic, ("k8s_audit", "cloudtrail")),
                           (runtime_topic, ("falco", "tetragon", "flow"))):  # fmt: skip
        mine = {id(r) for f in formats for r in sim.records[f]}
        values = [orjson.dumps(r) for r in delivered if id(r) in mine]
        produce_records(settings.kafka, topic, ((namespace_key(v), v) for v in values))
    produce_records(settings.kafka, audit_topic, ((None, v) for v in sentinels))

    running = start_service(settings, default_pipeline_factory)
    running.wait_caught_up(timeout_s=120)
    served = alert_ids(settings)
    dead = [orjson.loads(r.value) for r in read_topic(settings, settings.kafka.dead_letter_topic)]
    assert [d for d in dead if d["reason"] == "late"] == [] and not running.service.stats.late

    # one record hours behind everything, about a pod long gone: a counted dead letter
    straggler = dict(orjson.loads(sentinels[0]), auditID="straggler")
    straggler["objectRef"] = dict(straggler["objectRef"], name="gone")
    straggler["stageTimestamp"] = straggler["requestReceivedTimestamp"] = min(
        r["stageTimestamp"] for r in sim.records["k8s_audit"]
    )
    produce_records(settings.kafka, audit_topic, [(None, orjson.dumps(straggler))])
    running.wait_caught_up(timeout_s=60)
    running.close()
    dead = [orjson.loads(r.value) for r in read_topic(settings, settings.kafka.dead_letter_topic)]
    assert [d["reason"] for d in dead] == ["late"] and '"pod":"gone"' in dead[0]["record"]
    assert running.service.stats.late == {"audit.dead_letter": 1}
    metric = running.service.metrics.registry.get_sample_value(
        "churnguard_late_events_total", {"source": "audit", "outcome": "dead_letter"}
    )
    assert metric == 1

    replayed = _replayed(tmp_path, settings)
    assert replayed, "the simulated attacks should raise alerts"
    assert sorted(served) == sorted(replayed)


def test_served_live_equals_replay_with_no_late_drops(
    make_settings, start_service, tmp_path: Path
) -> None:
    """Records produced while the service reads, paced by their event time at 300x wall
    time, so every input is caught up between deliveries, as a running cluster's are.

    The compression is the point to watch: a caught-up input's next records arrive up to a
    fetch wait (0.1 s) later, 30 s of event time here; the lateness (300 s) keeps the margin
    production has at 1x (docs/benchmarks.md, "The latency run's compressed event time").
    """
    settings = make_settings(partitions=1, checkpoint_interval_s=30.0)
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    settings.pipeline.lateness_seconds = {audit_topic: 300.0, runtime_topic: 300.0}
    sim, sentinels = _simulated_cluster(tmp_path)
    timed = []
    for fmt, rows in sim.records.items():
        topic = audit_topic if fmt in ("k8s_audit", "cloudtrail") else runtime_topic
        for value in map(orjson.dumps, rows):
            events = parse_record(value).events
            timed.append((events[0].time if events else 0.0, topic, value))
    timed.sort(key=lambda item: item[0])

    running = start_service(settings, default_pipeline_factory)
    running.wait_caught_up(timeout_s=120)  # the member holds its (empty) partitions
    producer = KafkaClients(settings.kafka).producer()
    first = min(t for t, _, _ in timed if t > 0)  # a record without events sorts first, at 0
    started = time.monotonic()
    for t, topic, value in timed:
        if (ahead := started + max(0.0, t - first) / 300.0 - time.monotonic()) > 0:
            time.sleep(ahead)
        producer.send(topic, key=namespace_key(value), value=value)
    producer.flush()
    running.wait_caught_up(timeout_s=120)
    # two hours of event time later (sent at once, they would be a 2 h jump in no time)
    for value in sentinels:
        producer.send(audit_topic, value=value)
    producer.flush()
    producer.close()
    running.wait_caught_up(timeout_s=120)
    running.close()

    served = alert_ids(settings)
    dead = [orjson.loads(r.value) for r in read_topic(settings, settings.kafka.dead_letter_topic)]
    assert [d for d in dead if d["reason"] == "late"] == [] and not running.service.stats.late
    replayed = _replayed(tmp_path, settings)
    assert replayed, "the simulated attacks should raise alerts"
    assert sorted(served) == sorted(replayed)
