"""``replay --shards S``: the records split as the router splits them, one pipeline per shard."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from kafka.partitioner.default import DefaultPartitioner

from churnguard.config import Settings
from churnguard.ingest.events import Event, EventKind
from churnguard.ingest.exceptions import InputError
from churnguard.offline.replay import replay_files
from churnguard.offline.shards import replay_shards, shard_assignment
from churnguard.profiling.entities import IP_BINDING_LAG_S
from churnguard.service.bindings import Binding, BindingTable, scope_of, shard_of
from churnguard.simulate import SimParams, generate
from churnguard.simulate.delivery import shuffled_within
from churnguard.wiring import make_pipeline

T = 1_700_000_000.0


def _cluster(partitions: int) -> SimpleNamespace:
    parts = set(range(partitions))
    return SimpleNamespace(
        topics=lambda: {"rp"},
        partitions_for_topic=lambda _: parts,
        available_partitions_for_topic=lambda _: parts,
    )


@pytest.mark.parametrize("partitions", [1, 2, 4, 7])
def test_shard_of_is_the_partition_a_kafka_producer_picks_for_the_scope_as_key(partitions):
    """The router names the partition itself; it is the one kafka-python (and the Java
    client) would pick for the key, so the rule does not depend on the client."""
    partitioner = DefaultPartitioner()
    for scope in ["shop", "ci", "~instances", "~node/n1", "~unresolved", "ns-0", "ünï"]:
        key = scope.encode()
        picked = partitioner.partition("rp", key, key, b"", b"", _cluster(partitions))
        assert shard_of(scope, partitions) == picked


def test_a_container_claimed_long_after_its_event_is_not_claimed_for_it():
    """A router that has read ahead knows bindings from the future; it must answer as one
    that has not (the pipeline resolves a deferred event after the binding lag only)."""
    table = BindingTable()
    table.add(Binding("container", "abcdef123456", T + 600, "shop"))
    early = Event(time=T, kind=EventKind.PROCESS_EXEC, format="falco", node="n1",
                  container_id="abcdef123456")  # fmt: skip
    late = Event(time=T + 600 - IP_BINDING_LAG_S, kind=EventKind.PROCESS_EXEC, format="falco",
                 node="n1", container_id="abcdef123456")  # fmt: skip
    assert scope_of([early], table).key == "~node/n1"
    assert scope_of([late], table).key == "shop"


def _audit(t: float, ns: str, pod: str, verb: str = "create", ip: str | None = None) -> dict:
    obj = {"kind": "Pod", "metadata": {"name": pod, "namespace": ns, "uid": f"u-{ns}-{pod}"}}
    if ip:
        obj["status"] = {"podIP": ip}
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": f"{ns}-{pod}-{verb}-{t}", "stage": "ResponseComplete", "verb": verb,
        "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "objectRef": {"resource": "pods", "namespace": ns, "name": pod, "apiVersion": "v1"},
        "responseStatus": {"code": 201}, "requestReceivedTimestamp": _iso(t),
        "stageTimestamp": _iso(t), "responseObject": obj,
    }  # fmt: skip


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def test_records_go_to_their_scopes_shard_and_an_unresolvable_one_is_counted(tmp_path: Path):
    rows = [_audit(T + i, f"ns-{i % 5}", f"p{i}") for i in range(40)]
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    split = shard_assignment([str(path)], Settings(), 4)
    assert list(split.shards) == [shard_of(f"ns-{i % 5}", 4) for i in range(40)]
    assert split.fallbacks == 0 and split.end == T + 39


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    sim = generate(SimParams(seed=5, hours=2.0))
    path = tmp_path_factory.mktemp("day") / "delivered.jsonl"
    rows = shuffled_within(sim.records, 600.0, seed=1)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_sharded_replay_processes_every_record_once_and_one_shard_is_replay(day: Path):
    settings = Settings()
    plain = replay_files([str(day)], settings, pipeline=make_pipeline(settings))
    one = replay_shards([str(day)], settings, 1, lambda: make_pipeline(settings))
    four = replay_shards([str(day)], settings, 4, lambda: make_pipeline(settings))
    assert sorted(a.alert_id for a in one.alerts) == sorted(a.alert_id for a in plain.alerts)
    assert four.stats["records"] == plain.stats["records"]
    assert four.stats["late_events"] == plain.stats["late_events"] == 0
    ids = Counter(a.alert_id for a in four.alerts)
    assert ids and max(ids.values()) == 1
    split = shard_assignment([str(day)], settings, 4)
    assert len(set(split.shards)) > 1, "a day of namespaces spreads over the shards"
    # every entity is profiled, by the shard its scope hashes to
    assert {s.profile.entity.key() for s in four.scored} == {
        s.profile.entity.key() for s in plain.scored
    }


def test_each_shard_hears_the_other_shards_namespaces_contacts_and_one_shard_none(day: Path):
    """Campaign memory's shared hosts: every shard is told the first external contacts of
    the namespaces the other shards own (as the routers tell them), none of its own."""
    settings = Settings()
    made: list = []

    def factory():
        made.append(make_pipeline(settings))
        return made[-1]

    replay_shards([str(day)], settings, 4, factory)
    split = shard_assignment([str(day)], settings, 4)
    told = {(d, ns) for (d, ns) in split.contacts}
    assert told, "a simulated day's pods reach external hosts"
    for k, pipeline in zip(sorted(set(split.shards)), made, strict=True):
        heard = {(d, ns) for d, by in pipeline.scorer.campaigns.remote.items() for ns in by}
        assert heard == {(d, ns) for d, ns in told if shard_of(ns, 4) != k}
    made.clear()
    replay_shards([str(day)], settings, 1, factory)
    assert made[0].scorer.campaigns.remote == {}


def test_sharded_replay_refuses_stdin():
    with pytest.raises(InputError, match="name files"):
        replay_shards(["-"], Settings(), 2, lambda: make_pipeline(Settings()))
