"""Shards to group members by load, heaviest first: the assignor of ``kafka.assignor = "load"``.

A shard is a partition number across every input topic (its state is one pipeline,
:mod:`service.shard`), so the unit handed out is the number, never one topic's partition.
Producers key by namespace, and namespaces differ in size: on the simulated 24 h day one of
two members of kafka-python's range assignor got 54-57 % of the records whatever the
partition count, which caps two members at ~1.75x one (docs/benchmarks.md, "Targets of issue
14"). With more partitions than members, handing the shards out largest first, each to the
member with the least load so far (LPT), brings the heaviest member's share close to 1/N.

A shard's load is the records its partitions hold now (a fetch's high watermark less the
beginning offset, summed over the input topics), read by a group-less reader as each member
prepares its JoinGroup, so the leader assigns without a wait:
the backlog a starting group must work through, and over the topics' retention the long-run
share of a live one. Records differ in cost, so this balances records, not CPU. If the
offsets cannot be read, every shard weighs the same (the assignment is then round-robin by
number), which it logs.

Listed before kafka-python's range assignor: a group whose members do not all offer this one
(a rolling upgrade) agrees on range, as before.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.errors import KafkaError
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

log = logging.getLogger(__name__)

# these topics -> records held per partition of theirs; raises if unreadable
ReadLoads = Callable[[list[str]], Mapping[TopicPartition, int]]


def heaviest_first(loads: Mapping[int, int], members: list[str]) -> dict[str, list[int]]:
    """Shard numbers to members: largest load first, each to the least loaded member so far
    (ties: the member with fewer shards, then the one first in ``members``; equal loads are
    dealt round-robin by number). Deterministic."""
    out: dict[str, list[int]] = {m: [] for m in members}
    if not members:
        return out
    held = [(0, 0, i) for i in range(len(members))]  # (load so far, shards, member index)
    for number in sorted(loads, key=lambda n: (-loads[n], n)):
        load, count, i = heapq.heappop(held)
        out[members[i]].append(number)
        heapq.heappush(held, (load + loads[number], count + 1, i))
    return {m: sorted(numbers) for m, numbers in out.items()}


class ShardLoadAssignor(AbstractPartitionAssignor):
    """kafka-python assignor: whole shards, balanced by the records they hold."""

    name = "churnguard-load"
    version = 0

    def __init__(self, read_loads: ReadLoads) -> None:
        self.read_loads = read_loads
        # read as this member prepared its join: the leader assigns with no wait between its
        # JoinGroup answer and its SyncGroup (on Tansu, a follower whose SyncGroup came
        # before the leader's was answered ~4 s late: half of two members' run alone)
        self._held: Mapping[TopicPartition, int] | KafkaError | None = None

    def assign(self, cluster, members) -> dict[str, ConsumerProtocolAssignment]:  # type: ignore[no-untyped-def]
        topics = sorted({t for m in members for t in m.metadata.topics})
        partitions = {t: sorted(cluster.partitions_for_topic(t) or ()) for t in topics}
        loads = self._loads(partitions, self._held or self._read(topics))
        self._held = None
        # static members first, as the range assignor orders them, then by member id
        order = sorted(members, key=lambda m: (m.group_instance_id is None,
                                               m.group_instance_id or "", m.member_id))  # fmt: skip
        shards = heaviest_first(loads, [m.member_id for m in order])
        log.info(
            "shards assigned by load",
            extra={"records": [sum(loads[n] for n in shards[m.member_id]) for m in order]},
        )
        out = {}
        for m in members:
            mine = set(shards[m.member_id])
            topics_of = [(t, [p for p in partitions[t] if p in mine]) for t in m.metadata.topics]
            out[m.member_id] = ConsumerProtocolAssignment(
                self.version, sorted((t, ps) for t, ps in topics_of if ps), b""
            )
        return out

    def _read(self, topics: Iterable[str]) -> Mapping[TopicPartition, int] | KafkaError:
        try:
            return self.read_loads(sorted(topics))
        except (KafkaError, OSError, KeyError) as exc:  # no answer, or not for every partition
            return KafkaError(repr(exc))

    @staticmethod
    def _loads(
        partitions: Mapping[str, list[int]], held: Mapping[TopicPartition, int] | KafkaError
    ) -> dict[int, int]:
        """Records held per shard number of ``partitions``; every shard 1 if unreadable."""
        numbers = sorted({p for ps in partitions.values() for p in ps})
        if isinstance(held, KafkaError):
            log.warning(
                "shard loads unreadable; assigning shards round-robin by number",
                extra={"error": str(held)},
            )
            return dict.fromkeys(numbers, 1)
        loads = dict.fromkeys(numbers, 0)
        for tp, n in held.items():
            if tp.partition in partitions.get(tp.topic, ()):  # a partition the cluster names
                loads[tp.partition] += max(0, n)
        return loads

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolSubscription:
        topics = list(topics)
        self._held = self._read(topics)  # every member reads; the leader's are used
        return ConsumerProtocolSubscription(self.version, topics, b"")

    def on_assignment(self, assignment, generation) -> None:  # type: ignore[no-untyped-def]
        pass


def records_held(reader_factory: Callable[[], KafkaConsumer], timeout_s: float = 5.0) -> ReadLoads:
    """A :data:`ReadLoads` through a short-lived group-less reader: the high watermark of a
    fetch at the end less the beginning offset.

    The high watermark, not ``ListOffsets(latest)``: Tansu answers the latter with the last
    batch's base offset plus one (service/broker.py), which a producer's batching makes
    arbitrarily low. A fetch from the end returns at most the last batch. Partitions no fetch
    has answered within ``timeout_s`` raise (the caller falls back).
    """

    def read(topics: list[str]) -> dict[TopicPartition, int]:
        reader = reader_factory()
        try:
            parts = {t: reader.partitions_for_topic(t) or set() for t in topics}
            tps = [TopicPartition(t, p) for t, ps in parts.items() for p in sorted(ps)]
            starts = reader.beginning_offsets(tps)
            reader.assign(tps)
            reader.seek_to_end(*tps)
            deadline = time.monotonic() + timeout_s
            while (missing := [tp for tp in tps if reader.highwater(tp) is None]) and (
                time.monotonic() < deadline
            ):
                reader.poll(timeout_ms=100, max_records=1, update_offsets=False)
            if missing:
                raise KafkaError(f"no fetch answered for {len(missing)} partition(s)")
            return {tp: reader.highwater(tp) - starts[tp] for tp in tps}
        finally:
            reader.close()

    return read
