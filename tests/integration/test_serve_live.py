"""A live stream: inputs caught up between deliveries, as a running cluster's are.

The other serve tests produce a backlog and then start the service, so an input is caught
up only once nothing more will come to it. Live, every input is caught up most of the
time, and CloudTrail arrives in files, every ~5 minutes, their events 5-15 minutes old.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import orjson
import pytest
from helpers import read_topic
from telemetry import T0, pod_stream

from churnguard.service.kafka import default_pipeline_factory
from churnguard.service.producing import produce_records

pytestmark = pytest.mark.integration

BOB = "arn:aws:iam::123456789012:user/bob"


def cloudtrail(name: str, t: float, instance: str) -> bytes:
    """A person's EC2 call as CloudTrail delivers it; Run/Terminate name ``instance``."""
    items = {"items": [{"instanceId": instance, "privateIpAddress": "10.0.9.9"}]}
    record = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "arn": BOB, "userName": "bob"},
        "eventTime": datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "requestParameters": {"instancesSet": items} if name == "TerminateInstances" else {},
        "responseElements": {"instancesSet": items} if name == "RunInstances" else None,
        "eventID": f"{name}-{t}",
    }
    return orjson.dumps(record)


def test_a_cloudtrail_file_after_its_topic_was_caught_up_is_not_late(
    make_settings, start_service
) -> None:
    settings = make_settings(partitions=1)
    audit_topic, trail_topic = list(settings.kafka.input_topics)
    running = start_service(settings, default_pipeline_factory)
    # the first CloudTrail file, then 24 minutes of the cluster's audit log
    produce_records(settings.kafka, trail_topic, [(None, cloudtrail("RunInstances", T0, "i-a"))])
    produce_records(settings.kafka, audit_topic, [(ns.encode(), v) for ns, v in pod_stream(600)])
    running.wait_caught_up(timeout_s=60)  # both topics read to their end: caught up
    # the next file: bob's instance, run and terminated 10-13 minutes before the audit
    # log's newest record (inside CloudTrail's 900 s lateness)
    newest = T0 + 599 * 2.0 + 240.0
    produce_records(
        settings.kafka,
        trail_topic,
        [
            (None, cloudtrail("RunInstances", newest - 780, "i-0run")),
            (None, cloudtrail("TerminateInstances", newest - 600, "i-0run")),
        ],
    )
    running.wait_caught_up(timeout_s=60)
    running.close()

    dead = [
        msgspec.json.decode(r.value) for r in read_topic(settings, settings.kafka.dead_letter_topic)
    ]
    assert [d for d in dead if d.get("reason") == "late"] == []
    (pipeline,) = running.pipelines
    assert pipeline.stats["late_events"] == 0
    assert pipeline.stats["events.cloudtrail"] >= 3
