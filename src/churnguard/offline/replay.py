"""The file driver: feed telemetry files through the pipeline in event-time order.

Each input file is read and adapted lazily; the per-file event streams are merged by event
time (files are expected to be roughly time-ordered, as exporters write them; disorder
within the allowed lateness is absorbed by the pipeline). Whatever this shows is what the
Kafka service does: both drive the same :class:`~churnguard.pipeline.Pipeline`.
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from churnguard.config import Settings
from churnguard.ingest.events import Event, Rejected
from churnguard.ingest.files import read_records
from churnguard.pipeline import Output, Pipeline
from churnguard.profiling.profile import Profile


@dataclass
class ReplayResult:
    alerts: list[Any] = field(default_factory=list)  # churnguard.alerts.alert.Alert
    scored: list[Any] = field(default_factory=list)  # churnguard.scoring.scorer.Scored
    profiles: list[Profile] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)

    def add(self, out: Output) -> None:
        self.alerts.extend(out.alerts)
        self.scored.extend(out.scored)
        self.profiles.extend(out.profiles)
        self.rejected.extend(out.rejected)


def _file_events(
    pipeline: Pipeline, path: str, pinned: str | None, rejected: list[Rejected]
) -> Iterator[Event]:
    for raw, origin in read_records([path]):
        parsed = pipeline.parse(raw, origin, pinned)
        rejected.extend(parsed.rejected)
        yield from parsed.events


def merged_events(
    pipeline: Pipeline, paths: Iterable[str], pinned: str | None, rejected: list[Rejected]
) -> Iterator[Event]:
    """All files' events, merged by event time."""
    streams = [_file_events(pipeline, p, pinned, rejected) for p in paths]
    return heapq.merge(*streams, key=lambda ev: ev.time)


def replay_files(
    paths: Iterable[str],
    settings: Settings | None = None,
    *,
    scorer: Any | None = None,
    pinned: str | None = None,
    pipeline: Pipeline | None = None,
    batch: int = 512,
) -> ReplayResult:
    """Run files through a pipeline to the end of input and collect everything it emitted."""
    pipe = pipeline or Pipeline(settings, scorer=scorer)
    result = ReplayResult()
    buffer: list[Event] = []
    for ev in merged_events(pipe, list(paths), pinned, result.rejected):
        buffer.append(ev)
        if len(buffer) >= batch:
            result.add(pipe.ingest(buffer))
            buffer = []
    result.add(pipe.ingest(buffer))
    result.add(pipe.finish())
    result.stats = pipe.stats
    return result


def summary_lines(stats: Counter[str], n_profiles: int, n_entities: int) -> list[str]:
    """A human summary of a run: records, events per source, ignored and rejected reasons."""
    lines = [
        f"records read      {stats.get('records', 0):>9,}",
        f"entities profiled {n_entities:>9,}   profiles (entity windows) {n_profiles:,}",
    ]
    groups = {"events.": "events by source", "ignored.": "ignored (by format.reason)",
              "rejected.": "rejected (dead-lettered) by reason"}  # fmt: skip
    for prefix, title in groups.items():
        items = sorted((k[len(prefix) :], v) for k, v in stats.items() if k.startswith(prefix))
        if not items:
            continue
        lines.append(f"{title}:")
        lines.extend(f"  {name:<40} {count:>9,}" for name, count in items)
    for key in ("late_events", "unattributed", "after_end_events", "reincarnations"):
        if stats.get(key):
            lines.append(f"{key.replace('_', ' '):<18}{stats[key]:>9,}")
    return lines


def write_jsonl(out: str, items: Iterable[Any]) -> None:
    """Structs as JSON lines into the file ``out``, or to stdout when ``out`` is ``-``."""
    encoder = msgspec.json.Encoder()
    body = b"".join(encoder.encode(item) + b"\n" for item in items)
    if out == "-":
        sys.stdout.buffer.write(body)
    else:
        Path(out).write_bytes(body)


def write_rejected(rejected: list[Rejected], out: str, dead_letter: str | None) -> str | None:
    """The rejected records, to ``dead_letter`` or else beside ``out`` as
    ``<out>.rejected.jsonl`` (nowhere when ``out`` is stdout); the path written, if any."""
    path = dead_letter or (None if out == "-" else f"{out}.rejected.jsonl")
    if path is None or not rejected:
        return None
    write_jsonl(path, rejected)
    return path
