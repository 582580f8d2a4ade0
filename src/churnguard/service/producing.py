"""Loading telemetry into Kafka: the partition key of a record, and acked produce.

Used by ``churnguard produce``, the demo and the tests; the service itself never keys input.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaProducer

from churnguard.config import KafkaSettings
from churnguard.ingest import AdapterContext, parse_record
from churnguard.service.clients import client_config, compression


def namespace_key(
    raw: bytes, pinned: str | None = None, ctx: AdapterContext | None = None
) -> bytes | None:
    """The partition key of a telemetry record: its namespace (instance id for instances).

    Uses the real adapters, so the key is exactly the namespace the pipeline will see. None
    (round-robin) for records that name neither, e.g. CloudTrail calls known only by a pod
    IP: those are attributed only if they land in the shard that knows the IP.
    """
    for ev in parse_record(raw, None, pinned, ctx).events:
        if ev.namespace:
            return ev.namespace.encode()
        if ev.instance_id:
            return ev.instance_id.encode()
    return None


def produce_records(
    kafka: KafkaSettings, topic: str, items: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Produce ``(key, value)`` pairs to a topic and wait until the broker has acked them all.

    Batches are compressed with ``kafka.compression_type``.
    """
    producer = KafkaProducer(
        **client_config(kafka), acks="all", linger_ms=20, compression_type=compression(kafka)
    )
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in items]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
    return len(futures)
