"""Raw consumer throughput per Kafka codec, as ratios against uncompressed, in one run.

librdkafka (what Fluent Bit and Vector embed) writes the same simulated records once per
codec to the embedded broker; the service's client (kafka-python, ``read_committed``)
reads each topic from the start. Shows what a shipper's codec costs or saves churnguard
before any parsing.

Usage:  .venv/bin/python benchmarks/bench_codecs.py [--records 30000] [--seed 5]
"""

from __future__ import annotations

import argparse
import time

import orjson
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition

from churnguard.config import COMPRESSION_TYPES
from churnguard.service.broker import EmbeddedBroker, create_topics
from churnguard.simulate import SimParams, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    sim = generate(SimParams(seed=args.seed, hours=1.0))
    base = [orjson.dumps(r) for rows in sim.records.values() for r in rows]
    values = (base * (args.records // len(base) + 1))[: args.records]
    rates: dict[str, float] = {}
    with EmbeddedBroker() as broker:
        for codec in COMPRESSION_TYPES:
            topic = f"bench-{codec}"
            create_topics(broker.bootstrap, [topic])
            producer = Producer({"bootstrap.servers": broker.bootstrap,
                                 "compression.type": codec, "linger.ms": 50})  # fmt: skip
            for value in values:
                producer.produce(topic, value=value)
                producer.poll(0)
            producer.flush(60)
            rates[codec] = _read_rate(broker.bootstrap, topic, len(values))
    mean = sum(map(len, values)) // len(values)
    print(f"{len(values):,} records of {mean} bytes on average, one partition per codec")
    for codec, rate in rates.items():
        print(f"  {codec:7} {rate:9,.0f} records/s  {rate / rates['none']:.2f}x uncompressed")


def _read_rate(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", max_poll_records=500)  # fmt: skip
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    read, started = 0, time.perf_counter()
    while read < n:
        read += sum(map(len, consumer.poll(500).values()))
    rate = n / (time.perf_counter() - started)
    consumer.close()
    return rate


if __name__ == "__main__":
    main()
