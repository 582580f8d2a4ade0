"""The file driver: feed telemetry files through the pipeline in event-time order.

Files are a bounded input, so nothing in them needs to be late: every record of every file
is read and adapted, and the events are sorted by event time (an external sort with bounded
memory, :mod:`churnguard.ingest.ordering`) before the pipeline sees the first one. Sorted
files, per-source concatenations and delivery order therefore give the same alerts.
Whatever this shows is what the Kafka service does: both drive the same
:class:`~churnguard.pipeline.Pipeline`.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from churnguard.config import Settings
from churnguard.ingest.events import Event, Rejected
from churnguard.ingest.files import read_records
from churnguard.ingest.ordering import RUN_EVENTS, sort_by_time
from churnguard.pipeline import Output, Pipeline
from churnguard.profiling.profile import Profile
from churnguard.wiring import startup_frozen


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


PROGRESS_EVERY = 512  # records read between two progress reports
END_OF_INPUT = "<end of input>"  # the input a sharded replay notes the whole input's end on


def _events(
    pipeline: Pipeline,
    paths: list[str],
    pinned: str | None,
    rejected: list[Rejected],
    on_progress: Callable[[int], None] | None = None,
    select: Callable[[int], bool] | None = None,
) -> Iterator[Event]:
    for n, (raw, origin) in enumerate(read_records(paths), start=1):
        if select is not None and not select(n - 1):
            continue
        parsed = pipeline.parse(raw, origin, pinned)
        rejected.extend(parsed.rejected)
        if on_progress is not None and n % PROGRESS_EVERY == 0:
            on_progress(n)
        yield from parsed.events


def sorted_events(
    pipeline: Pipeline,
    paths: Iterable[str],
    pinned: str | None,
    rejected: list[Rejected],
    run_events: int = RUN_EVENTS,
    on_progress: Callable[[int], None] | None = None,
    select: Callable[[int], bool] | None = None,
) -> Iterator[Event]:
    """All files' events in event-time order, whatever order the files hold them in;
    ``select`` keeps only the records whose index (in read order, from 0) it accepts."""
    events = _events(pipeline, list(paths), pinned, rejected, on_progress, select)
    return sort_by_time(events, run_events)


def replay_files(
    paths: Iterable[str],
    settings: Settings | None = None,
    *,
    scorer: Any | None = None,
    pinned: str | None = None,
    pipeline: Pipeline | None = None,
    batch: int = 512,
    on_progress: Callable[[int], None] | None = None,
    run_events: int = RUN_EVENTS,
    select: Callable[[int], bool] | None = None,
    until: float | None = None,
) -> ReplayResult:
    """Run files through a pipeline to the end of input and collect everything it emitted.

    ``on_progress`` is told the number of records read so far as the input is read (the
    events are sorted by time before the pipeline sees the first) and once more at the end.
    ``select`` keeps only some records (one shard's, :mod:`churnguard.offline.shards`);
    ``until`` is the event time the whole input reaches, the other shards' records
    included: the end of input is there, as the route stage's markers tell a shard.
    """
    pipe = pipeline or Pipeline(settings, scorer=scorer)
    result = ReplayResult()
    buffer: list[Event] = []
    with startup_frozen():
        events = sorted_events(
            pipe, paths, pinned, result.rejected, run_events, on_progress, select
        )
        for ev in events:
            buffer.append(ev)
            if len(buffer) >= batch:
                result.add(pipe.ingest(buffer))
                buffer = []
        result.add(pipe.ingest(buffer))
        if until is not None:
            pipe.note_progress(END_OF_INPUT, until)
        result.add(pipe.finish())
    if on_progress is not None:
        on_progress(pipe.stats["records"])
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
    for key in ("unattributed", "after_end_events", "reincarnations", "route_fallback"):
        if stats.get(key):
            lines.append(f"{key.replace('_', ' '):<18}{stats[key]:>9,}")
    lines.extend(late_lines(stats))
    return lines


def late_lines(stats: Counter[str]) -> list[str]:
    """Plain words for events that arrived behind the watermark, per source."""
    lines = []
    for outcome, one, many in (
        ("dead_letter", "was dead-lettered as late", "were dead-lettered as late"),
        ("applied", "was applied to its entity, still held", "were applied to their entities"),
    ):
        prefix = f"late.{outcome}."
        for key, n in sorted(stats.items()):
            if key.startswith(prefix) and n:
                what = f"{n:,} {key[len(prefix) :]} event{'s' if n != 1 else ''}"
                done = one if n == 1 else many
                lines.append(f"{what} arrived later than the allowed lateness and {done}")
    return lines


def write_jsonl(
    out: str, items: Iterable[Any], encode: Callable[[Any], bytes] | None = None
) -> None:
    """Structs as JSON lines into the file ``out``, or to stdout when ``out`` is ``-``;
    ``encode`` turns one item into its JSON bytes (default: msgspec's encoding)."""
    encode = encode or msgspec.json.Encoder().encode
    body = b"".join(encode(item) + b"\n" for item in items)
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
