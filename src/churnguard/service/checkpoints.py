"""Shard checkpoints on a compacted Kafka topic: pipeline state + the offsets it stands for.

A checkpoint says "this pipeline state is the result of every record before these input
offsets, and every alert it produced is on the alerts topic before these alert offsets".
It is what makes a killed consumer lose nothing and page nobody twice:

- restore the state, seek the inputs to the recorded offsets, re-process from there;
- the alert ids produced after the checkpoint are read back from the alerts topic (from the
  recorded alert offsets), and the ids produced shortly before it travel inside the
  checkpoint, so a re-processed record that yields an already-published alert is dropped.

Snapshots can outgrow a Kafka message (``message.max.bytes`` is 1 MiB by default), so a
checkpoint is written as chunks plus a manifest. Chunks alternate between two key slots and
the manifest is written last: a crash in the middle of a write leaves the previous manifest
pointing at a slot nobody touched, so compaction can never leave a torn checkpoint behind.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator

import msgspec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from churnguard.errors import ChurnguardError

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024  # well under the 1 MiB default message.max.bytes of every broker
_FORMAT = 1


class CheckpointError(ChurnguardError):
    """A checkpoint could not be read or written within its deadline."""


class Checkpoint(msgspec.Struct, kw_only=True):
    """One shard's recoverable state."""

    group: str
    shard: int  # the input partition number every topic of ``offsets`` shares
    offsets: dict[str, int]  # input topic -> next offset of partition ``shard`` to process
    alert_offsets: dict[int, int]  # alerts partition -> end offset once our alerts were flushed
    alert_ids: dict[str, float]  # recently produced alert ids -> their event time
    state: bytes  # Pipeline.snapshot()
    written_at: float  # wall clock, for operators only
    # repartitioned input: next offset per original input partition (Shard.first_time)
    origins: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def key(self) -> str:
        return checkpoint_key(self.group, self.shard, self.offsets)


def checkpoint_key(group: str, shard: int, topics: Iterable[str]) -> str:
    """Key of a shard's checkpoint: the group, the partition number and the topics it covers.

    The topics are in the key because when producers do not give every input topic the same
    partition count, two consumers can each own *part* of partition number ``shard``; their
    states must not overwrite each other.
    """
    return f"{group}/{shard}/{'+'.join(sorted(topics))}"


class _Manifest(msgspec.Struct):
    format: int
    slot: int
    chunks: int
    sha256: str


class CheckpointStore:
    """Reads and writes checkpoints on one compacted topic (shared by every group)."""

    def __init__(
        self,
        topic: str,
        producer: KafkaProducer,
        consumer_config: dict,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.topic = topic
        self.producer = producer
        self.consumer_config = consumer_config
        self.timeout_s = timeout_s
        self._slots: dict[str, int] = {}  # key -> slot the current manifest points at

    def write(self, checkpoints: Iterable[Checkpoint]) -> int:
        """Write checkpoints and wait until the broker has them all; returns how many."""
        futures = []
        for cp in checkpoints:
            data = msgspec.msgpack.encode(cp)
            slot = 1 - self._slots.get(cp.key, 1)
            pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
            for i, piece in enumerate(pieces):
                futures.append(self._send(f"{cp.key}#{slot}.{i}", piece))
            manifest = _Manifest(_FORMAT, slot, len(pieces), hashlib.sha256(data).hexdigest())
            futures.append(self._send(cp.key, msgspec.msgpack.encode(manifest)))
            self._slots[cp.key] = slot
        self.producer.flush(timeout=self.timeout_s)
        for future in futures:
            future.get(timeout=self.timeout_s)  # raises the send's KafkaError, if any
        return len(futures)

    def _send(self, key: str, value: bytes):
        return self.producer.send(self.topic, key=key.encode(), value=value)

    def load(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        """The latest complete checkpoint for each key that has one."""
        wanted = set(keys)
        if not wanted:
            return {}
        latest: dict[bytes, bytes] = {}
        consumer = KafkaConsumer(**self.consumer_config)
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            starts = {TopicPartition(self.topic, p): 0 for p in partitions}
            for rec in read_partitions(consumer, starts, self.timeout_s):
                if rec.key is not None:
                    latest[rec.key] = rec.value
        finally:
            consumer.close()
        found: dict[str, Checkpoint] = {}
        for key in wanted:
            cp = self._assemble(key, latest)
            if cp is not None:
                found[key] = cp
        return found

    def _assemble(self, key: str, latest: dict[bytes, bytes]) -> Checkpoint | None:
        raw = latest.get(key.encode())
        if raw is None:
            return None
        manifest = msgspec.msgpack.decode(raw, type=_Manifest)
        if manifest.format != _FORMAT:
            log.warning("checkpoint has an unknown format; ignored", extra={"key": key})
            return None
        parts = [latest.get(f"{key}#{manifest.slot}.{i}".encode()) for i in range(manifest.chunks)]
        data = b"".join(p for p in parts if p is not None)
        if None in parts or hashlib.sha256(data).hexdigest() != manifest.sha256:
            log.warning("checkpoint chunks missing or corrupt; ignored", extra={"key": key})
            return None
        self._slots[key] = manifest.slot
        return msgspec.msgpack.decode(data, type=Checkpoint)


def read_partitions(
    consumer: KafkaConsumer, starts: dict[TopicPartition, int], timeout_s: float
) -> Iterator[ConsumerRecord]:
    """Every record from the start offsets up to the end of each partition *now*.

    "The end" is the high watermark from fetch responses, not ``end_offsets()``: some
    brokers (tansu) answer ``ListOffsets`` with the start of the last batch.
    """
    if not starts:
        return
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout_s
    while True:
        got = 0
        for records in consumer.poll(timeout_ms=200).values():
            got += len(records)
            yield from records
        # at the high watermark *and* a poll that brought nothing: tansu's high watermark
        # can trail the last batch it will still serve
        if not got and all(_at_end(consumer, tp) for tp in starts):
            return
        if time.monotonic() > deadline:
            raise CheckpointError(f"could not read {sorted(map(str, starts))} in {timeout_s:.0f}s")


def _at_end(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    high = consumer.highwater(tp)
    return high is not None and consumer.position(tp) >= high
