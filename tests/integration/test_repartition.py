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
from helpers import alert_ids
from standin import standin_pipeline
from telemetry import T0, audit, pod_stream

from churnguard.offline.replay import replay_files
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
    assert sum(running.service.stats.records.values()) == len(records)
    assert running.service.metrics.registry.get_sample_value(
        "churnguard_route_fallback_total", {"cap": "age"}
    ) in (None, 0.0)
