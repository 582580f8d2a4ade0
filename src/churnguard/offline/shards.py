"""Replay as a sharded service runs: the records split into S shards by the router's rule.

With ``kafka.repartition`` a service keeps one pipeline per partition of the repartition
topic (S of them): entity state and also the state that spans namespaces (the cluster-level
baseline, campaign and first-seen memory, flood counters). Its alerts are therefore those
of S pipelines, each fed its own scopes' records, and not those of one pipeline fed
everything. This module computes them offline:

1. read every record once and build the bindings table the routers share
   (:mod:`churnguard.service.bindings`), whole;
2. give each record its scope with that table (:func:`~churnguard.service.bindings.scope_of`)
   and its shard with the router's own rule (:func:`~churnguard.service.bindings.shard_of`);
   a record whose scope no binding ever gives goes under the fallback scope, as a router
   does once its wait runs out, and is counted (``route_fallback``);
3. replay each shard's records through a pipeline of its own, in event-time order, to the
   whole input's end (:func:`~churnguard.offline.replay.replay_files`), and unite the alerts.

The table answers for an event only with bindings learned by its time plus the binding lag,
so the whole table gives the answer a router gives once its inputs have passed that time.
With one shard this is plain ``replay``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable

from churnguard.config import Settings
from churnguard.ingest import AdapterContext, parse_record
from churnguard.ingest.exceptions import InputError
from churnguard.ingest.files import STDIN, read_records
from churnguard.offline.replay import ReplayResult, replay_files
from churnguard.pipeline import Pipeline
from churnguard.service.bindings import FALLBACK, BindingTable, bindings_of, scope_of, shard_of


def shard_assignment(
    paths: list[str], settings: Settings, shards: int, pinned: str | None = None
) -> tuple[array, int, float]:
    """Each record's shard (in read order), how many fell back, and the input's last event time."""
    ctx = AdapterContext.from_settings(settings.pipeline)
    table = BindingTable(bounded=False)  # the whole day's table; lookups are time-bounded
    end = -math.inf
    for raw, _ in read_records(paths):
        events = parse_record(raw, None, pinned, ctx).events
        for b in bindings_of(events):
            table.add(b)
        end = max([end, *(ev.time for ev in events if math.isfinite(ev.time))])
    assignment, fallbacks = array("I"), 0
    for raw, _ in read_records(paths):
        scope = scope_of(parse_record(raw, None, pinned, ctx).events, table)
        if scope.key is None:
            fallbacks += 1
        assignment.append(shard_of(scope.key or FALLBACK, shards))
    return assignment, fallbacks, end


def replay_shards(
    paths: Iterable[str],
    settings: Settings,
    shards: int,
    pipeline_factory: Callable[[], Pipeline],
    *,
    pinned: str | None = None,
) -> ReplayResult:
    """The alerts of ``shards`` pipelines, each replaying the records the router gives it."""
    paths = list(paths)
    if shards < 1:
        raise InputError(f"--shards must be at least 1, not {shards}")
    if shards == 1:
        return replay_files(paths, settings, pinned=pinned, pipeline=pipeline_factory())
    if STDIN in paths:
        raise InputError("--shards reads the input more than once: name files, not '-'")
    assignment, fallbacks, end = shard_assignment(paths, settings, shards, pinned)
    result = ReplayResult()
    for k in range(shards):
        if k not in assignment:
            continue  # a shard no scope hashes to: an idle pipeline, no output
        part = replay_files(
            paths,
            settings,
            pinned=pinned,
            pipeline=pipeline_factory(),
            select=lambda n, k=k: assignment[n] == k,
            until=end if math.isfinite(end) else None,
        )
        result.alerts.extend(part.alerts)
        result.scored.extend(part.scored)
        result.profiles.extend(part.profiles)
        result.rejected.extend(part.rejected)
        result.stats.update(part.stats)
    result.stats["route_fallback"] += fallbacks
    return result
