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

from pathlib import Path

import orjson
import pytest
from helpers import alert_ids, replayed_alert_ids
from telemetry import simulated_day

from churnguard.service.kafka import default_pipeline_factory
from churnguard.service.producing import namespace_key, produce_records

pytestmark = pytest.mark.integration


def test_served_alerts_equal_replayed_alerts_with_the_real_pipeline(
    make_settings, start_service, tmp_path: Path
) -> None:
    # periodic checkpoints of the real scorer's state are large; at the tests' 1 s interval
    # they can outlast the 3 s poll interval and force rebalances, which test_serve.py's
    # crash tests cover. This test is about serve and replay agreeing.
    settings = make_settings(partitions=1, checkpoint_interval_s=30.0)
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    day = simulated_day(tmp_path, audit_topic, runtime_topic)
    for topic, rows in day.topics.items():
        values = [orjson.dumps(row) for _, row in rows]
        produce_records(settings.kafka, topic, ((namespace_key(v), v) for v in values))
    produce_records(settings.kafka, audit_topic, ((None, v) for v in day.sentinels))

    running = start_service(settings, default_pipeline_factory)
    running.wait_caught_up(timeout_s=120)
    running.close()
    served = alert_ids(settings)

    replayed = replayed_alert_ids(day.files, settings)
    assert len(served) == len(set(served)), "an alert id was published twice"
    only_served, only_replayed = sorted(set(served) - replayed), sorted(replayed - set(served))
    assert not only_served and not only_replayed, (only_served, only_replayed)
