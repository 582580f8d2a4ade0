"""Repartition by entity: unkeyed input on any partitioning gives the alert ids of replay.

The same records are produced unkeyed (round-robin, as Fluent Bit, Vector or a CloudTrail
pipeline write them) onto 1, 4 or 8 partitions and served with ``kafka.repartition`` on by
1, 2 or 3 consumers, one joining and one SIGKILLed mid-stream; every run must publish
exactly the ids ``churnguard replay`` raises on the same records, each once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from helpers import alert_ids, replayed_alert_ids
from standin import standin_pipeline
from telemetry import T0, audit, pod_stream, simulated_day

from churnguard.offline.replay import replay_files
from churnguard.service.kafka import default_pipeline_factory
from churnguard.service.producing import produce_records

pytestmark = pytest.mark.integration


def _unkeyed(settings, topic: str, values: list[bytes]) -> None:
    produce_records(settings.kafka, topic, ((None, v) for v in values))


def _pods(pods: int, namespaces: int) -> list[bytes]:
    """A pod stream plus one late create per namespace that closes every window."""
    end = T0 + pods * 2.0 + 86_400.0
    stream = [r for _, r in pod_stream(pods, namespaces)]
    return stream + [orjson.dumps(audit("create", f"ns-{i}", "sentinel", end, "x"))
                     for i in range(namespaces)]  # fmt: skip


def _replayed(settings, records: list[bytes], tmp_path: Path) -> set[str]:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    replay = replay_files([str(path)], settings, pipeline=standin_pipeline(settings))
    return {a.alert_id for a in replay.alerts}


def _wait(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    assert condition(), "timed out"


def _assert_once(settings, expected: set[str]) -> None:
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == [], "an alert id was published twice"
    assert set(ids) == expected, (sorted(set(ids) - expected), sorted(expected - set(ids)))


def test_unkeyed_input_without_repartition_splits_pods(make_settings, start_service, tmp_path):
    """The problem: round-robin records on 4 partitions put a pod's create and delete in
    different shards, and the alerts are not those of replay."""
    settings = make_settings(partitions=4)
    records = _pods(80, namespaces=4)
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), records)
    running = start_service(settings, standin_pipeline)
    running.wait_caught_up()
    running.close()
    assert set(alert_ids(settings)) != _replayed(settings, records, tmp_path)


@pytest.mark.parametrize("partitions", [1, 4])
def test_one_consumer_routes_unkeyed_input_to_replay_ids(
    make_settings, start_service, tmp_path, partitions
):
    settings = make_settings(partitions=partitions, repartition=True)
    records = _pods(80, namespaces=4)
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), records)
    running = start_service(settings, standin_pipeline)
    running.wait_caught_up()
    running.close()
    _assert_once(settings, _replayed(settings, records, tmp_path))
    _assert_routed(running, len(records))


def _assert_routed(running, records: int) -> None:
    """Every record routed once by this service, none under the fallback scope."""
    sample = running.service.metrics.registry.get_sample_value
    topic = next(iter(running.service.kafka.input_topics))
    assert sample("churnguard_routed_records_total", {"topic": topic}) == records
    assert all(sample("churnguard_route_fallback_total", {"cap": cap}) is None
               for cap in ("age", "count"))  # fmt: skip


def _produce_day(settings, day) -> None:
    """The simulated day's topics unkeyed (round-robin), sentinels last."""
    for topic, rows in day.topics.items():
        _unkeyed(settings, topic, [orjson.dumps(row) for _, row in rows])
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), day.sentinels)


def test_real_pipeline_two_consumers_on_four_unkeyed_partitions_equal_replay(
    make_settings, start_service, tmp_path
):
    settings = make_settings(partitions=4, repartition=True, checkpoint_interval_s=30.0)
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    day = simulated_day(tmp_path, audit_topic, runtime_topic)
    _produce_day(settings, day)
    a = start_service(settings, default_pipeline_factory)
    b = start_service(settings, default_pipeline_factory)
    a.wait_caught_up(timeout_s=180)
    b.wait_caught_up(timeout_s=180)
    a.close()
    b.close()
    _assert_once(settings, replayed_alert_ids(day.files, settings))
