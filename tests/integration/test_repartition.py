"""Repartition by entity: unkeyed input on any partitioning gives the alert ids of replay.

The same records are produced unkeyed (round-robin, as Fluent Bit, Vector or a CloudTrail
pipeline write them) onto 1, 4 or 8 partitions and served with ``kafka.repartition`` on by
1, 2 or 3 consumers, one joining and one SIGKILLed mid-stream; every run must publish
exactly the ids ``churnguard replay --shards S`` raises on the same records, each once,
where S is the repartition topic's partition count. The stand-in scorer used here counts
the profiles its pipeline scored before an alert into the alert's id (state that spans
namespaces, as the cluster baseline's), so a shard that saw another sequence of profiles,
or one pipeline standing for several, shows.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import msgspec
import orjson
import pytest
from helpers import alert_ids, committed, read_topic, replayed_alert_ids
from standin import shard_wide_pipeline, slowed, standin_pipeline
from telemetry import T0, audit, pod_stream, simulated_day
from test_serve import _spawn

from churnguard.errors import ConfigError
from churnguard.offline.shards import replay_shards, shard_assignment
from churnguard.scoring.campaigns import Campaigns
from churnguard.service.bindings import shard_of
from churnguard.service.kafka import default_pipeline_factory
from churnguard.service.producing import produce_records
from churnguard.service.route import ensure_topics
from churnguard.simulate.delivery import shuffled_within

pytestmark = pytest.mark.integration


def _unkeyed(settings, topic: str, values: list[bytes]) -> None:
    produce_records(settings.kafka, topic, ((None, v) for v in values))


def _pods(pods: int, namespaces: int) -> list[bytes]:
    """A pod stream plus one late create per namespace that closes every window."""
    end = T0 + pods * 2.0 + 86_400.0
    stream = [r for _, r in pod_stream(pods, namespaces)]
    return stream + [orjson.dumps(audit("create", f"ns-{i}", "sentinel", end, "x"))
                     for i in range(namespaces)]  # fmt: skip


def _replayed(settings, records: list[bytes], tmp_path: Path, factory=standin_pipeline,
              shards: int = 1) -> set[str]:  # fmt: skip
    """``replay --shards`` of the records with the given stand-in pipeline."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    replay = replay_shards([str(path)], settings, shards, lambda: factory(settings))
    return {a.alert_id for a in replay.alerts}


# Liveness waits: a group join takes the rebalance timeout per stage (route, then shards),
# and on a loaded 2-core box the first 300 records once took over 60 s; a hang still fails.
def _wait(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    assert condition(), "timed out"


def _settle(*members) -> None:
    """Every member caught up at the same moment.

    A member's "caught up" covers both stages: its router's share of the inputs is routed
    and acknowledged, and its shards have read every router's "routed in full" marker for
    every input, after the records it covers (``Service.caught_up``). So once every member
    says so, every record has been processed and the day's last windows emitted; there is
    nothing left to wait for.
    """

    def together() -> bool:
        assert all(m.thread.is_alive() for m in members), "service thread died"
        return all(m.service.caught_up for m in members)

    _wait(together, timeout_s=180)


def _assert_once(settings, expected: set[str]) -> None:
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == [], "an alert id was published twice"
    dead = Counter(orjson.loads(r.value)["reason"]
                   for r in read_topic(settings, settings.kafka.dead_letter_topic))  # fmt: skip
    only_served, only_replayed = sorted(set(ids) - expected), sorted(expected - set(ids))
    assert not only_served and not only_replayed, (only_served, only_replayed, dead)


def test_unkeyed_input_without_repartition_splits_pods(make_settings, start_service, tmp_path):
    """The problem: round-robin records on 4 partitions put a pod's create and delete in
    different shards, and the alerts are not those of replay."""
    settings = make_settings(partitions=4)
    records = _pods(80, namespaces=4)
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), records)
    running = start_service(settings, standin_pipeline)
    running.wait_caught_up(timeout_s=90)  # a group join can stall on a loaded tansu
    running.close()
    assert set(alert_ids(settings)) != _replayed(settings, records, tmp_path)


@pytest.mark.parametrize(("partitions", "shards"), [(1, 1), (4, 4)])
def test_one_consumer_routes_unkeyed_input_to_replay_ids(
    make_settings, start_service, tmp_path, partitions, shards
):
    settings = make_settings(partitions=partitions, repartition=True,
                             repartition_partitions=shards)  # fmt: skip
    records = _pods(80, namespaces=4)
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), records)
    running = start_service(settings, shard_wide_pipeline)
    running.wait_caught_up(timeout_s=90)  # a group join can stall on a loaded tansu
    running.close()
    expected = _replayed(settings, records, tmp_path, shard_wide_pipeline, shards)
    if shards > 1:  # the case tells one pipeline from several
        assert expected != _replayed(settings, records, tmp_path, shard_wide_pipeline)
    _assert_once(settings, expected)
    _assert_routed(running, len(records))


def test_not_caught_up_while_a_share_is_restored(make_settings, start_service):
    """Between the group's assignment and the shards' restore the member owns no shard yet,
    so "caught up" would hold vacuously: a caller that stopped then lost every record (the
    flaky ``[1]`` case above). The pipeline factory runs inside the restore; once the router
    (on its own thread) is done with the empty inputs, it looks."""
    settings = make_settings(partitions=1, repartition=True)
    seen: list[bool] = []
    holder: list = []

    def factory(s):
        router = holder[0].service._router
        _wait(lambda: router.caught_up, timeout_s=30)
        seen.append(holder[0].service.caught_up)
        return standin_pipeline(s)

    holder.append(start_service(settings, factory))
    _wait(lambda: bool(seen))
    holder[0].wait_caught_up(timeout_s=60)
    assert seen == [False] and holder[0].service.shards


def _assert_routed(running, records: int) -> None:
    """Every record routed once by this service, none under the fallback scope."""
    sample = running.service.metrics.registry.get_sample_value
    topic = next(iter(running.service.kafka.input_topics))
    assert sample("churnguard_routed_records_total", {"topic": topic}) == records
    assert all(sample("churnguard_route_fallback_total", {"cap": cap}) is None
               for cap in ("age", "count"))  # fmt: skip


@pytest.mark.parametrize(("partitions", "killed"), [(4, False), (8, True)])
def test_consumers_joining_and_killed_mid_stream_give_replay_ids(
    make_settings, start_service, tmp_path, partitions, killed
):
    """4 shards whatever the input: 2 consumers on 4 partitions (one joins mid-stream); 3 on
    8 (one joins, one is SIGKILLed): every alert id of ``replay --shards 4``, each once."""
    settings = make_settings(partitions=partitions, repartition=True, repartition_partitions=4,
                             checkpoint_interval_s=0.3, max_poll_records=50)  # fmt: skip
    records = _pods(800, namespaces=6)
    expected = _replayed(settings, records, tmp_path, shard_wide_pipeline, shards=4)
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), records)
    first = start_service(settings, slowed(0.005, "shard-wide"))  # ~8 s for the stream alone
    victim = (_spawn(settings, tmp_path, record_delay_s=0.005, scorer="shard-wide")
              if killed else None)  # fmt: skip
    try:
        _wait(lambda: sum(first.service.stats.records.values()) >= 300)
        joiner = start_service(settings, slowed(0.005, "shard-wide"))
        if victim is not None:
            _wait(lambda: bool(joiner.service.shards))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        assert len(alert_ids(settings)) < len(expected), "the stream ended before the changes"
        # the killed member's inputs are routed again once the group notices (session timeout)
        routers = msgspec.structs.replace(
            settings, kafka=msgspec.structs.replace(settings.kafka, group_id=_route_group(settings))
        )
        _wait(lambda: sum(v or 0 for v in committed(routers).values()) == len(records), 90)
        _wait(lambda: len(first.service.shards) + len(joiner.service.shards) == 4, 90)
        _settle(first, joiner)
    finally:
        if victim is not None:
            victim.kill()
    first.close()
    joiner.close()
    _assert_once(settings, expected)


def _route_group(settings) -> str:
    return f"{settings.kafka.group_id}.route"


def _produce_day(settings, day) -> None:
    """The simulated day as pipelines deliver it (every source shuffled within 10 minutes),
    unkeyed, sentinels last."""
    records = {fmt: [] for fmt in ("k8s_audit", "cloudtrail", "falco", "tetragon", "flow")}
    topic_of = {}
    for topic, rows in day.topics.items():
        for fmt, row in rows:
            records[fmt].append(row)
            topic_of[id(row)] = topic
    delivered = shuffled_within(records, 600.0, seed=2)
    for topic in day.topics:
        _unkeyed(settings, topic, [orjson.dumps(r) for r in delivered if topic_of[id(r)] == topic])
    _unkeyed(settings, next(iter(settings.kafka.input_topics)), day.sentinels)


@pytest.mark.parametrize("shards", [1, 4])
def test_real_pipeline_two_consumers_on_four_unkeyed_partitions(
    make_settings, start_service, tmp_path, shards
):
    """The production pipeline, 2 consumers, 4 unkeyed input partitions in delivery order:
    the alert ids of ``replay --shards S``. With one shard that is plain replay; with four,
    state that spans namespaces (the cluster-level baseline learning online, campaign and
    first-seen memory, flood counters) is each shard's own, as in that replay
    (docs/limitations.md, "Sharding splits cluster-wide state").
    """
    settings = make_settings(partitions=4, repartition=True, checkpoint_interval_s=30.0,
                             repartition_partitions=shards)  # fmt: skip
    audit_topic, runtime_topic = list(settings.kafka.input_topics)
    settings.pipeline.lateness_seconds = {audit_topic: 660.0, runtime_topic: 660.0}
    day = simulated_day(tmp_path, audit_topic, runtime_topic)
    _produce_day(settings, day)
    a = start_service(settings, default_pipeline_factory)
    b = start_service(settings, default_pipeline_factory)
    _wait(lambda: len(a.service.shards) + len(b.service.shards) == shards, 60)
    _settle(a, b)
    owned = [*a.service.shards.values(), *b.service.shards.values()]  # close() forgets them
    a.close()
    b.close()
    _assert_once(settings, replayed_alert_ids(day.files, settings, shards=shards))
    assert len(owned) == shards
    # every shard heard the other shards' namespaces' first contacts (the routers' contact
    # facts), exactly those replay --shards hands it; with one shard, none
    split = shard_assignment(day.files, settings, shards)
    for shard in owned:
        heard = Campaigns()
        for (dest, ns), t in split.contacts.items():
            if shard_of(ns, shards) != shard.number:
                heard.note_remote(dest, ns, t)
        assert shard.pipeline.scorer.campaigns.remote == heard.remote
        assert bool(heard.remote) == (shards > 1)
    assert list(read_topic(settings, settings.kafka.dead_letter_topic)) == []


def test_a_changed_shard_count_on_the_old_topic_stops_the_service_with_a_reason(make_settings):
    """S is part of what the alerts are: a new repartition_partitions on an existing topic
    of another count must not be ignored (docs/operations.md, "Choosing S")."""
    settings = make_settings(partitions=1, repartition=True, repartition_partitions=2)
    ensure_topics(settings)  # creates the topic with 2
    settings.kafka.repartition_partitions = 4
    with pytest.raises(ConfigError, match="has 2 partitions but repartition_partitions = 4"):
        ensure_topics(settings)
