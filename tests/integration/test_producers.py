"""What real producers put on Kafka: librdkafka batches in every codec, transactions, and a
batch the client cannot decode (contained to its partition, loudly).

librdkafka is the client inside Fluent Bit, Vector's Kafka sink and confluent-kafka.
"""

from __future__ import annotations

import os
import time

import msgspec
import orjson
import pytest
from helpers import alert_ids, alert_ids_of, expected_alert_ids, read_topic
from standin import standin_pipeline
from telemetry import T0, audit, pod_stream

from churnguard.service.kafka import Service

pytestmark = pytest.mark.integration
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def _stream(pods: int, namespaces: int = 4, *, prefix: str = "") -> list[tuple[bytes, bytes]]:
    """A keyed pod stream and a late sentinel per namespace that closes every pod's windows."""
    stream = pod_stream(pods, namespaces)
    sentinel_t = T0 + pods * 2.0 + 86_400.0
    stream += [
        (f"ns-{i}", orjson.dumps(audit("create", f"ns-{i}", f"{prefix}sentinel", sentinel_t, "x")))
        for i in range(namespaces)
    ]
    return [(ns.encode(), record) for ns, record in stream]


def _topics(settings) -> list[str]:
    return list(settings.kafka.input_topics)


def _serve_until_caught_up(start_service, settings) -> Service:
    """Run the standin service until it has caught up, stop it; what it did is on it."""
    running = start_service(settings, standin_pipeline)
    running.wait_caught_up()  # times out if lag counted commit markers
    ready = running.service.metrics.ready
    running.close()
    assert ready
    return running.service


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_is_read_and_gives_the_uncompressed_alert_ids(
    codec, make_settings, start_service, librdkafka
) -> None:
    settings = make_settings(partitions=2, compression_type=codec)  # alerts in it too
    audit_topic = _topics(settings)[0]
    sent = librdkafka(audit_topic, _stream(80, 6), compression=codec)
    service = _serve_until_caught_up(start_service, settings)

    assert service.stats.records[audit_topic] == sent
    assert service.stats.sessions == 1  # no reconnect loop
    ids = alert_ids(settings)
    assert ids and len(ids) == len(set(ids))
    # the standin pipeline over the records read back is what the uncompressed run raises
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)


def test_committed_transactions_are_processed_and_read_as_caught_up(
    make_settings, start_service, librdkafka
) -> None:
    # Tansu implements transactions (InitProducerId, AddPartitionsToTxn, EndTxn): markers
    # take offsets, so the end offset is one past the last record of each partition
    settings = make_settings(partitions=1)
    audit_topic = _topics(settings)[0]
    stream = _stream(60)
    sizes = [len(stream) // 3, len(stream) // 3, len(stream) - 2 * (len(stream) // 3)]
    librdkafka(audit_topic, stream, compression="lz4", transactions=sizes)
    service = _serve_until_caught_up(start_service, settings)

    offsets = [r.offset for r in read_topic(settings, audit_topic)]
    assert len(offsets) == len(stream)
    assert offsets[-1] - offsets[0] + 1 == len(stream) + 2  # the first two commit markers
    assert service.stats.records[audit_topic] == len(stream)
    assert set(alert_ids(settings)) == expected_alert_ids(settings, standin_pipeline)


@pytest.mark.skipif(
    not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
    reason="the embedded broker (Tansu) hands the records of an aborted transaction even to a "
    "read_committed consumer (measured: they come back like committed ones); "
    "set KAFKA_BOOTSTRAP_SERVERS to a Kafka broker to run this",
)
def test_records_of_aborted_transactions_are_never_processed(
    make_settings, start_service, librdkafka
) -> None:
    settings = make_settings(partitions=1)
    audit_topic = _topics(settings)[0]
    committed = _stream(40)
    # pods deleted by a person: the standin alerts on every one, were they ever read
    aborted = [(b"ns-0", orjson.dumps(audit("delete", "ns-0", f"ghost-{i}", T0 + i, "mallory")))
               for i in range(10)]  # fmt: skip
    items = committed[:40] + aborted + committed[40:]
    librdkafka(audit_topic, items, transactions=[40, len(aborted), len(committed) - 40],
               abort={1})  # fmt: skip
    service = _serve_until_caught_up(start_service, settings)

    assert service.stats.records[audit_topic] == len(committed)
    expected = alert_ids_of(settings, standin_pipeline, audit_topic, [v for _, v in committed])
    assert expected and set(alert_ids(settings)) == expected


def test_an_undecodable_batch_is_contained_to_its_partition_and_said_loudly(
    make_settings, start_service, librdkafka, monkeypatch
) -> None:
    import kafka.codec

    settings = make_settings(partitions=1)
    audit_topic, runtime_topic = _topics(settings)
    stream = _stream(60)
    librdkafka(audit_topic, stream, compression="gzip")
    # lz4 batches on the other topic, read by a client without the lz4 library
    librdkafka(runtime_topic, stream[:20], compression="lz4")
    monkeypatch.setattr(kafka.codec, "has_lz4", lambda: False)
    running = start_service(settings, standin_pipeline)
    service, metrics = running.service, running.service.metrics

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and service.stats.records[audit_topic] < len(stream):
        assert running.thread.is_alive()
        time.sleep(0.1)
    time.sleep(1.5)  # a few more polls: the partition stays set aside, nothing reconnects
    ready = metrics.ready
    running.close()

    assert service.stats.records[audit_topic] == len(stream)
    assert service.stats.records[runtime_topic] == 0
    count = metrics.registry.get_sample_value(
        "churnguard_undecodable_batches_total", {"topic": runtime_topic, "partition": "0"}
    )
    assert count == 1
    assert not ready
    assert service.stats.sessions == 1
    assert metrics.registry.get_sample_value("churnguard_reconnects_total") == 0
    letters = [msgspec.json.decode(r.value) for r in
               read_topic(settings, settings.kafka.dead_letter_topic)]  # fmt: skip
    assert [(d["reason"], d["topic"], d["offset"]) for d in letters] == [
        ("undecodable_batch", runtime_topic, 0)
    ]
    assert "lz4" in letters[0]["detail"]
    # the audit topic's alerts were all produced, though the runtime topic is stuck
    expected = alert_ids_of(settings, standin_pipeline, audit_topic, [v for _, v in stream])
    assert expected and set(alert_ids(settings)) == expected
