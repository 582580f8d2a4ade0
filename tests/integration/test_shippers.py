"""A simulated cluster delivered the way shippers deliver it raises the plain records' alerts.

Every record reaches Kafka wrapped by the shipper docs/operations.md ("Connecting your
telemetry") configures for its source, written by librdkafka (the client inside Fluent Bit
and Vector) in lz4 batches, as they would be:

- Kubernetes audit: the webhook backend's ``EventList`` batches, forwarded as posted;
- CloudTrail: Logstash's ``cloudtrail`` codec (``eventTime`` moved to ``@timestamp``);
- Falco: its stdout tailed by Fluent Bit (the line a JSON string under ``log``);
- Tetragon: its export tailed by Vector's ``kubernetes_logs`` (a string under ``message``);
- flows: Fluent Bit with ``Merge_Log On`` (the record merged into the top level).

The envelope shapes come from each shipper's documentation (see churnguard.simulate.shippers).
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import orjson
import pytest
from helpers import alert_ids, read_topic, replayed_alert_ids
from telemetry import simulated_day

from churnguard.ingest import parse_record
from churnguard.service.kafka import default_pipeline_factory
from churnguard.service.producing import namespace_key
from churnguard.simulate import shippers

pytestmark = pytest.mark.integration
AUDIT_BATCH = 25  # audit events per webhook POST (the backend's batch size is configurable)


def _shipped(rows: list[tuple[str, dict]]) -> list[bytes]:
    """Wrap each record as its shipper would; consecutive audit events go in one batch."""
    out: list[bytes] = []
    for fmt, run in groupby(rows, key=lambda item: item[0]):
        records = [row for _, row in run]
        if fmt == "k8s_audit":
            for i in range(0, len(records), AUDIT_BATCH):
                batch = shippers.audit_webhook_batch(records[i : i + AUDIT_BATCH])
                out.append(orjson.dumps(batch))
        else:
            out += [orjson.dumps(_wrap(fmt, row)) for row in records]
    return out


def _wrap(fmt: str, row: dict) -> dict:
    if fmt == "cloudtrail":
        return shippers.logstash_cloudtrail(row)
    t = parse_record(orjson.dumps(row)).events[0].time  # when the exporter wrote the line
    if fmt == "falco":
        return shippers.fluent_bit(row, t)
    if fmt == "tetragon":
        return shippers.vector(row, t)
    return shippers.fluent_bit(row, t, pod="flow-exporter-q2w3e", merge=True)


def test_shipped_records_raise_the_alerts_of_the_plain_records(
    make_settings, start_service, librdkafka, tmp_path: Path
) -> None:
    settings = make_settings(partitions=1, checkpoint_interval_s=30.0)
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    day = simulated_day(tmp_path, audit_topic, runtime_topic)
    for topic, rows in day.topics.items():
        values = _shipped(rows)
        librdkafka(topic, [(namespace_key(v), v) for v in values], compression="lz4")
    librdkafka(audit_topic, [(None, v) for v in day.sentinels], compression="lz4")

    running = start_service(settings, default_pipeline_factory)
    running.wait_caught_up(timeout_s=120)
    running.close()

    assert not read_topic(settings, settings.kafka.dead_letter_topic)
    served = alert_ids(settings)
    replayed = replayed_alert_ids(day.files, settings)
    assert len(served) == len(set(served)), "an alert id was published twice"
    only_served, only_replayed = sorted(set(served) - replayed), sorted(replayed - set(served))
    assert not only_served and not only_replayed, (only_served, only_replayed)
