"""Reading topics back and computing what the pipeline alone would say, for assertions."""

from __future__ import annotations

import msgspec
from kafka import KafkaConsumer, TopicPartition

from churnguard.config import Settings
from churnguard.ingest.events import Origin
from churnguard.pipeline import Pipeline
from churnguard.service.checkpoints import read_partitions
from churnguard.service.clients import client_config


def read_topic(settings: Settings, topic: str) -> list:
    """Every record on every partition of a topic, now."""
    consumer = KafkaConsumer(**client_config(settings.kafka), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        starts = {TopicPartition(topic, p): 0 for p in parts}
        return list(read_partitions(consumer, starts, 30.0))
    finally:
        consumer.close()


def alert_ids(settings: Settings) -> list[str]:
    return [
        msgspec.json.decode(r.value)["alert_id"]
        for r in read_topic(settings, settings.kafka.alerts_topic)
    ]


def expected_alert_ids(settings: Settings, factory) -> set[str]:
    """What one pipeline per partition number says, fed each partition's records in order."""
    ids: set[str] = set()
    by_partition: dict[int, list] = {}
    for topic in settings.kafka.input_topics:
        for rec in read_topic(settings, topic):
            by_partition.setdefault(rec.partition, []).append(rec)
    for records in by_partition.values():
        pipe: Pipeline = factory(settings)
        for rec in records:
            origin = Origin(source=rec.topic, partition=rec.partition, offset=rec.offset)
            ids.update(a.alert_id for a in pipe.process(rec.value, origin).alerts)
    return ids


def alert_ids_of(settings: Settings, factory, topic: str, values: list[bytes]) -> set[str]:
    """What one pipeline says fed these values as one partition of ``topic``, in order."""
    pipe: Pipeline = factory(settings)
    return {
        alert.alert_id
        for offset, value in enumerate(values)
        for alert in pipe.process(value, Origin(source=topic, partition=0, offset=offset)).alerts
    }


def committed(settings: Settings) -> dict[tuple[str, int], int | None]:
    """The group's committed offsets of every input partition."""
    k = settings.kafka
    consumer = KafkaConsumer(**client_config(k), group_id=k.group_id, enable_auto_commit=False)
    try:
        out = {}
        for topic in k.input_topics:
            for p in consumer.partitions_for_topic(topic) or ():
                out[(topic, p)] = consumer.committed(TopicPartition(topic, p))
        return out
    finally:
        consumer.close()


def replayed_alert_ids(files: list[str], settings: Settings, shards: int = 1) -> set[str]:
    """What ``churnguard replay --shards`` raises on the files with the production pipeline."""
    from churnguard.offline.shards import replay_shards
    from churnguard.service.kafka import default_pipeline_factory

    replay = replay_shards(files, settings, shards, lambda: default_pipeline_factory(settings))
    replayed = {a.alert_id for a in replay.alerts if a.entity.pod != "sentinel"}
    assert replayed, "the simulated attacks should raise alerts"
    return replayed
