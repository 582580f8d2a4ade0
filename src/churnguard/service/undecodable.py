"""Batches the Kafka client cannot decode, found and set aside so the rest is still served.

A batch in a codec the client lacks, or one that fails its CRC, makes ``poll()`` raise
(``UnsupportedCodecError``, ``CorruptRecordError``) on every call, whoever polls: tearing
the session down and reconnecting fetches the same batch and fails the same way, and the
service would serve nothing at all. The exception does not say which partition it came
from, so :func:`locate` reads each candidate partition alone, from the consumer's
position, with a group-less reader; the one that raises is the culprit. The loop then
pauses that partition (its records stay on the broker, unread and uncommitted, until a
restart with the fix), dead-letters the batch's coordinates and reports it in a metric
and in readiness (:mod:`churnguard.service.kafka`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError

UNDECODABLE = (UnsupportedCodecError, CorruptRecordError)
LOCATE_TIMEOUT_S = 10.0  # for all candidates together; a fetch answers in milliseconds
PROBE_POLL_MS = 200


@dataclass(frozen=True)
class Undecodable:
    """Where the batch is that the client cannot decode, and why."""

    topic: str
    partition: int
    offset: int
    reason: str

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def locate(
    reader: KafkaConsumer,
    positions: Mapping[TopicPartition, int],
    timeout_s: float = LOCATE_TIMEOUT_S,
) -> Undecodable | None:
    """The first partition whose next batch does not decode, read from ``positions``.

    None when every candidate decodes (the failure did not repeat) or time ran out.
    """
    deadline = time.monotonic() + timeout_s
    for tp, offset in sorted(positions.items()):
        reader.assign([tp])
        reader.seek(tp, offset)
        while time.monotonic() < deadline:
            try:
                got = reader.poll(timeout_ms=PROBE_POLL_MS, max_records=1)
            except UNDECODABLE as exc:
                return Undecodable(tp.topic, tp.partition, offset, f"{type(exc).__name__}: {exc}")
            high = reader.highwater(tp)
            if got or (high is not None and reader.position(tp) >= high):
                break  # this one decodes (or has nothing to read)
    return None
