"""The checkpoint store on a real broker: chunked round trip, torn writes, missing keys."""

from __future__ import annotations

import os

import pytest
from kafka import KafkaProducer

from churnguard.service.checkpoints import CHUNK_BYTES, Checkpoint, CheckpointStore
from churnguard.service.clients import client_config

pytestmark = pytest.mark.integration


def _checkpoint(state: bytes, offset: int) -> Checkpoint:
    return Checkpoint(group="g", shard=0, offsets={"audit": offset}, alert_offsets={0: 3},
                      alert_ids={"a1": 1.0}, state=state, written_at=0.0)  # fmt: skip


def test_large_checkpoint_round_trips_and_a_torn_write_keeps_the_previous(make_settings):
    settings = make_settings()
    producer = KafkaProducer(**client_config(settings.kafka), max_request_size=2 * 1024 * 1024)
    config = {**client_config(settings.kafka), "enable_auto_commit": False}
    store = CheckpointStore(settings.kafka.checkpoint_topic, producer, config)
    big = os.urandom(CHUNK_BYTES * 2 + 17)  # three chunks
    first = _checkpoint(big, 10)
    store.write([first])
    assert store.load([first.key, "g/9/audit"]) == {first.key: first}

    # a crash after the chunks of the next checkpoint but before its manifest
    reader = CheckpointStore(settings.kafka.checkpoint_topic, producer, config)
    reader.load([first.key])
    slot = 1 - reader._slots[first.key]
    producer.send(reader.topic, key=f"{first.key}#{slot}.0".encode(), value=b"torn")
    producer.flush()
    assert reader.load([first.key])[first.key].offsets == {"audit": 10}

    second = _checkpoint(b"small", 20)
    reader.write([second])
    assert store.load([first.key])[first.key] == second
    producer.close()
