"""Simulated telemetry in the orders real pipelines deliver it, for order-invariance checks.

The simulator writes each format sorted by event time; real inputs are not: shippers
concatenate per-source files, CloudTrail arrives in delivery files whose records interleave
by minutes. These arrangements of the same records must give the same alerts (replay sorts
a bounded input; serve holds each source back by its allowed lateness).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import orjson

from churnguard.ingest import parse_record


def event_time(record: dict) -> float:
    """A record's event time (its first event's), or -inf for one that yields no event."""
    events = parse_record(orjson.dumps(record)).events
    return events[0].time if events else -math.inf


def sorted_order(records: Mapping[str, list[dict]]) -> list[dict]:
    """Every source's records merged into one stream in event-time order."""
    rows = [r for fmt in records for r in records[fmt]]
    return sorted(rows, key=event_time)


def per_source(records: Mapping[str, list[dict]]) -> list[dict]:
    """All of one source, then all of the next (``cat audit.jsonl cloudtrail.jsonl ...``)."""
    return [r for fmt in records for r in records[fmt]]


def shuffled_within(records: Mapping[str, list[dict]], chunk_s: float, seed: int) -> list[dict]:
    """Delivery order: event-time chunks of ``chunk_s`` in order, shuffled inside each chunk.

    A record can then arrive up to ``chunk_s`` after records newer than it.
    """
    rng = random.Random(seed)
    keyed = [(math.floor(t / chunk_s) if math.isfinite(t) else -1, rng.random(), r)
             for r in per_source(records) for t in (event_time(r),)]  # fmt: skip
    keyed.sort(key=lambda item: item[:2])
    return [r for *_, r in keyed]
