"""Load telemetry files into a Kafka topic, one record per message.

Records are keyed by namespace (instances by instance id), extracted with the same adapters
the service runs, so that a namespace's records land in the same partition number on every
input topic and meet in one consumer shard. ``--key none`` sends them unkeyed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator

from churnguard.config import COMPRESSION_TYPES, load_settings
from churnguard.ingest import AdapterContext
from churnguard.ingest.files import read_records
from churnguard.service.producing import namespace_key, produce_records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="FILE", help="JSONL file(s), '-' = stdin")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--config", help="churnguard TOML config (connection, topic formats)")
    parser.add_argument("--bootstrap", help="bootstrap servers (overrides the config)")
    parser.add_argument("--key", choices=("namespace", "none"), default="namespace")
    parser.add_argument(
        "--compression",
        choices=COMPRESSION_TYPES,
        help="batch codec (overrides kafka.compression_type; default: the config's, 'none')",
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.bootstrap:
        settings.kafka.bootstrap_servers = args.bootstrap
    if args.compression:
        settings.kafka.compression_type = args.compression
    keys: Counter[str] = Counter()
    pinned = settings.kafka.input_topics.get(args.topic)
    # pipeline.role_map lets CloudTrail calls made by pods be keyed by their namespace too
    ctx = AdapterContext.from_settings(settings.pipeline)

    def items() -> Iterator[tuple[bytes | None, bytes]]:
        for raw, _origin in read_records(args.inputs):
            key = namespace_key(raw, pinned, ctx) if args.key == "namespace" else None
            keys[key.decode() if key else "(unkeyed)"] += 1
            yield key, raw

    sent = produce_records(settings.kafka, args.topic, items())
    print(f"produced {sent:,} records to {args.topic}", file=sys.stderr)
    for key, count in keys.most_common(10):
        print(f"  {key:<40} {count:>9,}", file=sys.stderr)
    if len(keys) > 10:
        print(f"  ... {len(keys) - 10} more keys", file=sys.stderr)
    return 0
