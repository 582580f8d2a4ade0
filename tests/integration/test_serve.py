"""The Kafka driver end to end against a real broker: alerts, dead letters, groups, crashes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import orjson
import pytest
from helpers import alert_ids, committed, expected_alert_ids, read_topic
from standin import StandinScorer, slowed, standin_pipeline
from telemetry import T0, audit, pod_stream

from churnguard.errors import ConfigError
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Pipeline
from churnguard.service.clients import KafkaClients
from churnguard.service.kafka import Service
from churnguard.service.producing import produce_records

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def _audit_topic(settings) -> str:
    return next(iter(settings.kafka.input_topics))


def _produce_pods(settings, pods: int, namespaces: int = 4) -> list[bytes]:
    """Produce a keyed pod stream plus a late sentinel that closes every pod's windows."""
    stream = pod_stream(pods, namespaces)
    sentinel_t = T0 + pods * 2.0 + 86_400.0
    stream += [
        (f"ns-{i}", orjson.dumps(audit("create", f"ns-{i}", "sentinel", sentinel_t, "x")))
        for i in range(namespaces)
    ]
    produce_records(settings.kafka, _audit_topic(settings), ((ns.encode(), r) for ns, r in stream))
    return [r for _, r in stream]


def test_serve_alerts_equal_replay_of_the_same_data(make_settings, start_service, tmp_path):
    settings = make_settings(partitions=1)
    records = _produce_pods(settings, 60)
    running = start_service(settings, standin_pipeline)
    running.wait_caught_up()
    running.close()

    served = alert_ids(settings)
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(records) + b"\n")
    replay = replay_files([str(path)], settings, pipeline=standin_pipeline(settings))
    replayed = [a.alert_id for a in replay.alerts]
    assert served and sorted(served) == sorted(replayed)
    assert len(served) == len(set(served))
    # one partition per input topic: nothing for the unrouted-partitions warning to say
    assert _unrouted(running.service) == {t: 0 for t in settings.kafka.input_topics}


def _unrouted(service: Service) -> dict[str, float]:
    sample = service.metrics.registry.get_sample_value
    name = "churnguard_unrouted_input_partitions"
    return {t: sample(name, {"topic": t}) for t in service.kafka.input_topics}


def _two_members_caught_up(settings, start_service):
    """Two members of one group, once each holds shards and both have read everything."""
    a = start_service(settings, standin_pipeline)
    b = start_service(settings, standin_pipeline)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (a.service.shards and b.service.shards):
        time.sleep(0.1)
    a.wait_caught_up()
    b.wait_caught_up()
    return a, b


def test_two_consumers_split_partitions_and_agree_with_one(make_settings, start_service, caplog):
    caplog.set_level(logging.WARNING, logger="churnguard.service.kafka")
    settings = make_settings(partitions=2)
    _produce_pods(settings, 80, namespaces=6)
    a, b = _two_members_caught_up(settings, start_service)
    assert set(a.service.shards).isdisjoint(b.service.shards)
    assert set(a.service.shards) | set(b.service.shards) == {0, 1}
    # keyed input on several partitions without the route stage: correct here (every
    # record is keyed by namespace), and the service says what it relies on
    assert _unrouted(a.service) == {t: 2 for t in settings.kafka.input_topics}
    assert any("kafka.repartition is off" in r.getMessage() for r in caplog.records)
    a.close()
    b.close()

    ids = alert_ids(settings)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)


def test_the_group_gives_the_heaviest_shard_a_member_of_its_own(make_settings, start_service):
    """``kafka.assignor = "load"`` (the default): three namespaces on partition 0, one on each
    of the others; range would give one member partitions 0 and 1 (160 of 240 records).
    Produced in batches, so Tansu's ListOffsets would say 1 record a partition: the loads
    are read from fetches' high watermarks."""
    settings = make_settings(partitions=4)
    topic = _audit_topic(settings)
    partition_of = {"ns-0": 0, "ns-1": 0, "ns-2": 0, "ns-3": 1, "ns-4": 2, "ns-5": 3}
    stream = pod_stream(120, namespaces=6)
    stream += [
        (ns, orjson.dumps(audit("create", ns, "sentinel", T0 + 86_400.0 * 2, "x")))
        for ns in partition_of
    ]
    producer = KafkaClients(settings.kafka).producer()
    for ns, value in stream:
        producer.send(topic, key=ns.encode(), value=value, partition=partition_of[ns])
    producer.flush()
    producer.close()
    a, b = _two_members_caught_up(settings, start_service)
    assert sorted([sorted(a.service.shards), sorted(b.service.shards)]) == [[0], [1, 2, 3]]
    a.close()
    b.close()
    ids = alert_ids(settings)
    assert ids and len(ids) == len(set(ids))
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)


def test_poison_records_are_dead_lettered_and_the_stream_continues(make_settings, start_service):
    settings = make_settings(partitions=1)
    settings.pipeline.max_record_bytes = 4096
    topic = _audit_topic(settings)
    poison = [b"{not json", orjson.dumps({"hello": "world"}), b'{"pad": "' + b"x" * 5000 + b'"}']
    good = pod_stream(200)
    items = [(None, poison[0]), *[(None, r) for _, r in good[:10]], (None, poison[1]),
             *[(None, r) for _, r in good[10:]], (None, poison[2])]  # fmt: skip
    produce_records(settings.kafka, topic, items)
    running = start_service(settings, standin_pipeline)
    running.wait_caught_up()
    running.close()

    letters = [
        msgspec.json.decode(r.value) for r in read_topic(settings, settings.kafka.dead_letter_topic)
    ]
    reasons = {d["reason"]: d for d in letters}
    assert set(reasons) == {"malformed_json", "unknown_format", "record_too_large"}
    assert reasons["malformed_json"]["offset"] == 0
    assert reasons["unknown_format"]["offset"] == 11
    assert reasons["record_too_large"]["offset"] == len(items) - 1
    assert all(d["topic"] == topic and d["partition"] == 0 for d in letters)
    assert reasons["malformed_json"]["record"] == "{not json"
    assert running.service.stats.records[topic] == len(items)
    assert alert_ids(settings)  # the good records after the poison still made alerts


def _spawn(
    settings, tmp_path, record_delay_s: float = 0.0, scorer: str = "standin"
) -> subprocess.Popen:
    """``serve_proc.py`` in its own process; ``record_delay_s`` slows each record down,
    ``scorer`` names the stand-in scorer (``standin.SCORERS``)."""
    cfg = tmp_path / f"settings-{time.monotonic_ns()}.json"
    cfg.write_bytes(msgspec.json.encode(settings))
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    args = [sys.executable, str(HERE / "serve_proc.py"), str(cfg), str(record_delay_s), scorer]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_stream_loses_nothing_and_duplicates_no_alert(
    make_settings, start_service, tmp_path
):
    settings = make_settings(partitions=2, checkpoint_interval_s=0.3, max_poll_records=100)
    records = _produce_pods(settings, 6000, namespaces=6)
    # at 1 ms a record the killed consumer needs ~15 s for the stream (unslowed, it
    # sometimes finished the stream before the test saw its first commit)
    proc = _spawn(settings, tmp_path, record_delay_s=0.001)
    try:
        # Kill it halfway, with alerts flowing. In about half the runs the restarted consumer
        # then meets what once re-published alerts: kafka-python reports the empty runtime
        # partitions' high watermarks only after handing out the audit records fetched
        # before them, so the shard's watermark waits while its event clock runs thousands
        # of seconds past the ids it read back, and periodic checkpoints prune its id set
        # meanwhile (tests/unit/test_shard_alert_ids.py has that case deterministically).
        def halfway() -> bool:
            done = sum(v or 0 for v in committed(settings).values())
            return done >= len(records) // 2 and bool(alert_ids(settings))

        _wait(halfway, 60, "half the stream committed and alerts published")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        before = sum(v or 0 for v in committed(settings).values())
        assert before < len(records), "the stream finished before the kill; make it longer"
        first_run_alerts = len(alert_ids(settings))
    finally:
        proc.kill()

    # restarted: restore the last checkpoint, read back the ids published after it,
    # re-process from there and drop the re-made alerts by id. Slowed a little (the rest of
    # the stream takes ~2 s), so periodic checkpoints do land while the watermark waits.
    running = start_service(settings, slowed(0.0002))
    running.wait_caught_up(timeout_s=60)
    total = sum(s.pipeline.stats["records"] for s in running.service.shards.values())
    running.close()

    assert total == len(records)  # every record folded into the state exactly once
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)
    assert first_run_alerts > 0  # the kill came after alerts were already published
    # Not asserted: that the ids read back were re-made and dropped (suppressed > 0 when
    # read_back > 0). A checkpoint flushes the producer, then asks the broker for the alerts
    # topic's end offsets, then snapshots the state; on a loaded machine the broker answered
    # with an end offset from before alerts it had just acknowledged (CI, stop 14:
    # read_back=23, suppressed=0, the ids exact and none twice), so ids the restored state
    # had already emitted were read back too. Harmless (the flush came first: nothing
    # emitted before a checkpoint can be lost), and what is guaranteed is asserted above;
    # the suppression itself is pinned deterministically in tests/unit/test_shard_alert_ids.py.


def test_sigterm_stops_gracefully_with_offsets_committed(make_settings, tmp_path):
    settings = make_settings(partitions=2, checkpoint_interval_s=60.0)
    records = _produce_pods(settings, 100)
    proc = _spawn(settings, tmp_path)
    try:
        _wait(lambda: bool(alert_ids(settings)), 60, "first alerts")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert f"records={len(records)}".encode() in out
    offsets = committed(settings)
    topic = _audit_topic(settings)
    ends = Counter(r.partition for r in read_topic(settings, topic))
    assert {p: offsets[(topic, p)] for p in ends} == dict(ends)


class _Breaks(Pipeline):
    """A stand-in pipeline that raises on one marked record, as a scorer refusing a config would."""

    def process(self, raw, origin=None, pinned=None):
        if b"break-me" in (raw if isinstance(raw, bytes) else raw.encode()):
            raise ConfigError("scoring.detector: 'oiff' is not one of oif, hst, batch")
        return super().process(raw, origin, pinned)


class _CountingClients(KafkaClients):
    """The production factory, counting what it built: the service uses only what it is given."""

    def __init__(self, kafka) -> None:
        super().__init__(kafka)
        self.built: Counter[str] = Counter()

    def consumer(self):
        self.built["consumer"] += 1
        return super().consumer()

    def producer(self):
        self.built["producer"] += 1
        return super().producer()


def test_a_record_that_raises_is_dead_lettered_and_the_loop_goes_on(make_settings):
    settings = make_settings(partitions=1)
    topic = _audit_topic(settings)
    good = pod_stream(120)
    marked = orjson.dumps({**orjson.loads(good[5][1]), "note": "break-me"})
    items = [(None, r) for _, r in good[:5]] + [(None, marked)] + [(None, r) for _, r in good[5:]]
    produce_records(settings.kafka, topic, items)

    def factory(s):
        return _Breaks(s, scorer=StandinScorer())

    clients = _CountingClients(settings.kafka)
    stop = threading.Event()
    service = Service(settings, stop_event=stop, pipeline_factory=factory, clients=clients)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: service.caught_up, 60, "caught up")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    letters = [
        msgspec.json.decode(r.value) for r in read_topic(settings, settings.kafka.dead_letter_topic)
    ]
    assert [(d["reason"], d["offset"]) for d in letters] == [("pipeline_error", 5)]
    assert "oiff" in letters[0]["detail"] and "break-me" in letters[0]["record"]
    assert service.metrics.record_errors.labels("ConfigError")._value.get() == 1
    assert service.stats.records[topic] == len(items)
    assert service.stats.sessions == 1  # the error never tore the session down
    assert clients.built == {"consumer": 1, "producer": 1}
    assert alert_ids(settings)  # records after the broken one still made alerts
