"""Shards to members by load: whole shards, heaviest first, each to the least loaded."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaTimeoutError

from churnguard.config import KafkaSettings
from churnguard.service.assignor import ShardLoadAssignor, heaviest_first
from churnguard.service.clients import assignors


def test_the_heaviest_shard_gets_a_member_of_its_own() -> None:
    # one namespace as big as the other three shards together: range gives {0, 1} | {2, 3}
    loads = {0: 120, 1: 30, 2: 30, 3: 30}
    assert heaviest_first(loads, ["a", "b"]) == {"a": [0], "b": [1, 2, 3]}


def test_equal_loads_are_dealt_round_robin_by_number() -> None:
    assert heaviest_first(dict.fromkeys(range(8), 0), ["a", "b"]) == {
        "a": [0, 2, 4, 6],
        "b": [1, 3, 5, 7],
    }
    assert heaviest_first({0: 5}, ["a", "b", "c"]) == {"a": [0], "b": [], "c": []}


@given(
    loads=st.dictionaries(st.integers(0, 63), st.integers(0, 10**6), max_size=40),
    members=st.integers(1, 6),
)
def test_every_shard_once_and_no_member_above_the_greedy_bound(
    loads: dict[int, int], members: int
) -> None:
    names = [f"m{i}" for i in range(members)]
    out = heaviest_first(loads, names)
    given_out = [n for m in names for n in out[m]]
    assert sorted(given_out) == sorted(loads)
    held = [sum(loads[n] for n in out[m]) for m in names]
    # largest-first greedy: the heaviest member holds at most the mean plus one shard
    assert max(held) <= sum(loads.values()) / members + max(loads.values(), default=0)
    assert heaviest_first(loads, names) == out  # deterministic


def _member(member_id: str, topics: list[str]) -> SimpleNamespace:
    return SimpleNamespace(
        member_id=member_id, group_instance_id=None, metadata=SimpleNamespace(topics=topics)
    )


class _Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions[topic]))


def test_a_member_gets_the_same_numbers_of_every_topic_weighed_over_all_of_them() -> None:
    held = {("audit", 0): 10, ("audit", 1): 10, ("flows", 1): 100, ("audit", 2): 10}

    def read(topics: list[str]) -> dict[TopicPartition, int]:
        assert topics == ["audit", "flows"]
        return {TopicPartition(t, p): n for (t, p), n in held.items()}

    topics = ["audit", "flows"]
    out = ShardLoadAssignor(read).assign(
        _Cluster({"audit": 4, "flows": 4}), [_member("m2", topics), _member("m1", topics)]
    )
    # shard 1 (110 records) alone; 0, 2 and 3 (10, 10, 0) to the other member
    assert out["m1"].assignment == [("audit", [1]), ("flows", [1])]
    assert out["m2"].assignment == [("audit", [0, 2, 3]), ("flows", [0, 2, 3])]


def test_unreadable_loads_assign_by_number_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    def read(topics: list[str]) -> dict[TopicPartition, int]:
        raise KafkaTimeoutError("no answer")

    caplog.set_level(logging.WARNING, logger="churnguard.service.assignor")
    out = ShardLoadAssignor(read).assign(
        _Cluster({"audit": 4}), [_member("m1", ["audit"]), _member("m2", ["audit"])]
    )
    assert out["m1"].assignment == [("audit", [0, 2])]
    assert out["m2"].assignment == [("audit", [1, 3])]
    assert "shard loads unreadable" in caplog.text


def test_the_leader_assigns_with_the_loads_it_read_when_it_joined() -> None:
    """Read in ``metadata`` (before JoinGroup), not between the JoinGroup answer and the
    SyncGroup: the followers' SyncGroups wait on the leader's."""
    reads: list[list[str]] = []

    def read(topics: list[str]) -> dict[TopicPartition, int]:
        reads.append(topics)
        return {TopicPartition("audit", 3): 50, TopicPartition("audit", 0): 10}

    assignor = ShardLoadAssignor(read)
    assert assignor.metadata({"audit"}).topics == ["audit"]
    out = assignor.assign(
        _Cluster({"audit": 4}), [_member("m1", ["audit"]), _member("m2", ["audit"])]
    )
    assert reads == [["audit"]]  # once, at the join
    assert out["m1"].assignment == [("audit", [3])]
    assert out["m2"].assignment == [("audit", [0, 1, 2])]
    assignor.assign(_Cluster({"audit": 4}), [_member("m1", ["audit"])])
    assert len(reads) == 2  # a join's loads serve one assignment only


def test_load_is_offered_first_and_range_kept_for_mixed_groups() -> None:
    load, fallback = assignors(KafkaSettings(), lambda: None)  # type: ignore[arg-type,return-value]
    assert isinstance(load, ShardLoadAssignor) and fallback is RangePartitionAssignor
    assert assignors(KafkaSettings(assignor="range"), lambda: None) == [RangePartitionAssignor]  # type: ignore[arg-type,return-value]
