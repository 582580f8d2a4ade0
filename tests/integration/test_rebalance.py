"""A consumer joining mid-stream: the leaving shards are checkpointed on revoke and resumed
exactly where they stopped, so no record is processed twice and no alert id is repeated."""

from __future__ import annotations

import threading
import time
from collections import Counter

import orjson
import pytest
from helpers import alert_ids, expected_alert_ids
from standin import slowed, standin_pipeline
from telemetry import T0, audit, pod_stream

from churnguard.service.producing import produce_records

pytestmark = pytest.mark.integration


def test_a_joining_consumer_resumes_from_the_revoke_checkpoint(make_settings, start_service):
    # no periodic checkpoint during the test: only the revoke can carry the state over
    settings = make_settings(partitions=2, checkpoint_interval_s=3600.0, max_poll_records=50)
    stream = pod_stream(800, namespaces=6)
    end = T0 + 800 * 2.0 + 86_400.0
    stream += [
        (f"ns-{i}", orjson.dumps(audit("create", f"ns-{i}", "sentinel", end, "x")))
        for i in range(6)
    ]
    topic = next(iter(settings.kafka.input_topics))
    produce_records(settings.kafka, topic, ((ns.encode(), r) for ns, r in stream))

    first = start_service(settings, slowed(0.002))  # ~3 s for the stream alone
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(first.service.stats.records.values()) < 300:
        time.sleep(0.05)
    assert sum(first.service.stats.records.values()) < len(stream), "joined too late"
    second = start_service(settings, slowed(0.002))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (first.service.shards and second.service.shards):
        time.sleep(0.05)
    assert first.service.shards and second.service.shards, "the group never split"
    first.wait_caught_up(timeout_s=60)
    second.wait_caught_up(timeout_s=60)
    first.close()
    second.close()

    processed = sum(first.service.stats.records.values()) + sum(
        second.service.stats.records.values()
    )
    assert processed == len(stream)  # resumed at the revoke point: nothing re-read, nothing lost
    assert first.service.stats.checkpoints > 2  # the fresh shards' and the revoke's
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)


def test_a_consumer_joins_and_another_leaves_while_alerts_are_published(
    make_settings, start_service
):
    """Two rebalances while alerts flow (one per pod): a join, then a leave.

    The stream arrives in chunks, as live traffic does: a backlog produced up front holds
    alerts back until it is drained (a shard's watermark waits for its empty runtime
    partition's high watermark, which kafka-python reports only after the backlog).
    """
    settings = make_settings(partitions=2, checkpoint_interval_s=0.5, max_poll_records=50)
    chunks, size, namespaces = 8, 500, 6
    topic = next(iter(settings.kafka.input_topics))
    sent: list[tuple[str, bytes]] = []

    def produce(part: list[tuple[str, bytes]]) -> None:
        produce_records(settings.kafka, topic, ((ns.encode(), r) for ns, r in part))
        sent.extend(part)

    def chunk(k: int) -> list[tuple[str, bytes]]:  # each after the last one's deletions
        return pod_stream(size, namespaces, start=T0 + k * 600.0, first=k * size)

    def the_rest() -> None:
        for k in range(1, chunks):
            produce(chunk(k))
            time.sleep(1.5)
        end = T0 + chunks * (600.0 + size * 2.0) + 86_400.0
        produce([(f"ns-{i}", orjson.dumps(audit("create", f"ns-{i}", "sentinel", end, "x")))
                 for i in range(namespaces)])  # fmt: skip

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + 60
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def published() -> int:
        return first.service.stats.alerts + (second.service.stats.alerts if second else 0)

    produce(chunk(0))
    second = None
    first = start_service(settings, slowed(0.002))
    wait(lambda: first.service.stats.alerts > 0, "the first alerts")
    producer = threading.Thread(target=the_rest)
    producer.start()
    second = start_service(settings, slowed(0.002))
    wait(lambda: first.service.shards and second.service.shards, "the group to split")
    alerts_at_join = published()
    wait(lambda: published() > alerts_at_join, "alerts after the join")
    alerts_at_leave = published()
    assert producer.is_alive(), "the stream ended before the leave"
    first.close()  # leaves the group: its shards are checkpointed and handed over
    wait(lambda: len(second.service.shards) == 2, "the leaver's shard to move")
    producer.join(timeout=60)
    second.wait_caught_up(timeout_s=90)
    second.close()

    processed = sum(r.service.stats.records.total() for r in (first, second))
    assert processed == len(sent)  # each record once, across both moves
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)
    assert 0 < alerts_at_join < alerts_at_leave < len(ids)  # alerts flowed in every phase
    assert len(ids) == chunks * size  # one alert per pod deleted by a person
