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
3. hand each shard the contact facts of the other shards' namespaces (each namespace's
   first contact with each external destination, :func:`~churnguard.service.bindings.
   contacts_of`), as the routers send them: lookups in them are bounded by event time, so
   knowing them all from the start answers as hearing them as the input is routed;
4. replay each shard's records through a pipeline of its own, in event-time order, to the
   whole input's end (:func:`~churnguard.offline.replay.replay_files`), and unite the alerts.

The table answers for an event only with bindings learned by its time plus the binding lag,
so the whole table gives the answer a router gives once its inputs have passed that time.
With one shard this is plain ``replay``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from churnguard.config import Settings
from churnguard.ingest import AdapterContext, parse_record
from churnguard.ingest.exceptions import InputError
from churnguard.ingest.files import STDIN, read_records
from churnguard.offline.replay import ReplayResult, replay_files
from churnguard.pipeline import Pipeline
from churnguard.profiling.features import NetworkClassifier
from churnguard.service.bindings import (
    FALLBACK,
    BindingTable,
    bindings_of,
    contacts_of,
    other_shards,
    scope_of,
    shard_of,
)


@dataclass
class Assignment:
    """How a router splits the input: each record's shard (in read order), how many fell
    back, the input's last event time, and every namespace's first contact per destination."""

    shards: array
    fallbacks: int
    end: float
    contacts: dict[tuple[str, str], float] = field(default_factory=dict)  # (dest, ns) -> t


def shard_assignment(
    paths: list[str], settings: Settings, shards: int, pinned: str | None = None
) -> Assignment:
    """Split the records as the routers do (the module's steps 1 and 2)."""
    ctx = AdapterContext.from_settings(settings.pipeline)
    network = NetworkClassifier(settings.pipeline.cluster_cidrs)
    table = BindingTable(bounded=False)  # the whole day's table; lookups are time-bounded
    end = -math.inf
    for raw, _ in read_records(paths):
        events = parse_record(raw, None, pinned, ctx).events
        for b in bindings_of(events):
            table.add(b)
        end = max([end, *(ev.time for ev in events if math.isfinite(ev.time))])
    out = Assignment(array("I"), 0, end)
    for raw, _ in read_records(paths):
        events = parse_record(raw, None, pinned, ctx).events
        scope = scope_of(events, table)
        if scope.key is None:
            out.fallbacks += 1
        key = scope.key or FALLBACK
        out.shards.append(shard_of(key, shards))
        for dest, t in contacts_of(events, key, network).items():
            out.contacts[dest, key] = min(t, out.contacts.get((dest, key), math.inf))
    return out


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
    split = shard_assignment(paths, settings, shards, pinned)
    assignment, end = split.shards, split.end
    result = ReplayResult()
    for k in range(shards):
        if k not in assignment:
            continue  # a shard no scope hashes to: an idle pipeline, no output
        pipeline = pipeline_factory()
        for (dest, ns), t in sorted(split.contacts.items()):
            if k in other_shards(ns, shards):
                pipeline.note_remote_contact(dest, ns, t)
        part = replay_files(
            paths,
            settings,
            pinned=pinned,
            pipeline=pipeline,
            select=lambda n, k=k: assignment[n] == k,
            until=end if math.isfinite(end) else None,
        )
        result.alerts.extend(part.alerts)
        result.scored.extend(part.scored)
        result.profiles.extend(part.profiles)
        result.rejected.extend(part.rejected)
        result.stats.update(part.stats)
    result.stats["route_fallback"] += split.fallbacks
    return result
