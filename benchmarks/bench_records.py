"""CPU seconds of the pipeline fed one record at a time, as the service feeds it, and of replay.

No broker: the simulated day's records are merged by event time and cut into polls of 500,
and each poll's records go through ``Pipeline.process`` one by one, with the inputs named
as a shard names its topic partitions (``expect_sources``) and ``set_idle`` after each poll
(what ``serve``'s loop does). ``--shards 2`` splits every poll by namespace key over two
pipelines, as a consumer owning two partitions of keyed topics runs them. ``replay`` is
``replay_files`` of the same files. Each is timed in CPU seconds (``time.process_time``, best
of ``--repeat``), with the scorer's share (``Scorer.score``) apart; a digest of the alert ids
says whether two trees gave the same alerts. Compare trees by running this in each,
alternating: on a shared machine wall-clock ratios are noise.

``--count N`` runs only the service's loop over the first N records, once, without a scorer
(``Pipeline``, profiles out), inside ``operator.call``, for an instruction count that load
does not move:

  valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
      .venv/bin/python benchmarks/bench_records.py --dir DIR --count 4000

``--profiles-digest`` runs the same loop over every record without a scorer and prints a
SHA-256 over every emitted profile (its msgspec JSON, in order), the dead letters and the
pipeline's stats: the check that a change before the scorer changed nothing the scorer's own
digests cannot see.

Usage:  .venv/bin/python benchmarks/bench_records.py [--dir DIR | --hours 6 --seed 11]
                                                      [--shards 1] [--repeat 3] [--count N]
                                                      [--profiles-digest]
"""

from __future__ import annotations

import argparse
import hashlib
import operator
import time
import zlib

import msgspec
from bench_pipeline import FILES, day_dir

from churnguard.config import Settings
from churnguard.ingest import parse_record
from churnguard.ingest.events import Origin
from churnguard.ingest.files import read_records
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Output, Pipeline
from churnguard.scoring.scorer import Scorer
from churnguard.service.producing import namespace_key
from churnguard.wiring import make_pipeline

POLL = 500  # the service's max_poll_records
Record = tuple[bytes, Origin]


def polls(paths: list[str]) -> list[list[Record]]:
    """Every record in order of its first event's time, ``POLL`` to a poll."""
    timed = []
    for raw, origin in read_records(paths):
        events = parse_record(raw, origin).events
        timed.append((min((e.time for e in events), default=0.0), origin.source, raw, origin))
    timed.sort(key=lambda r: (r[0], r[1], r[3].line or 0))
    records = [(raw, origin) for _, _, raw, origin in timed]
    return [records[i : i + POLL] for i in range(0, len(records), POLL)]


def shard_polls(batches: list[list[Record]], shards: int) -> list[list[list[Record]]]:
    """Each poll split over ``shards`` by namespace key (round-robin for records with none)."""
    if shards == 1:
        return [[batch] for batch in batches]
    out, turn = [], 0
    for batch in batches:
        parts: list[list[Record]] = [[] for _ in range(shards)]
        for raw, origin in batch:
            key = namespace_key(raw)
            if key is None:
                turn += 1
            parts[(zlib.crc32(key) if key is not None else turn) % shards].append((raw, origin))
        out.append(parts)
    return out


def serve_like(batches: list[list[list[Record]]], paths: list[str]) -> list[str]:
    """The service's per-record loop over each shard's share; the alert ids, sorted."""
    settings = Settings()
    pipelines = [make_pipeline(settings) for _ in batches[0]]
    for pipeline in pipelines:
        pipeline.expect_sources(paths)
    alerts = []
    for parts in batches:
        for pipeline, records in zip(pipelines, parts, strict=True):
            for raw, origin in records:
                alerts += pipeline.process(raw, origin).alerts
            alerts += pipeline.set_idle([]).alerts
    for pipeline in pipelines:
        alerts += pipeline.set_idle(paths).alerts + pipeline.finish().alerts
    return sorted(a.alert_id for a in alerts)


def count_loop(records: list[Record], paths: list[str]) -> int:
    """The service's loop over ``records`` without a scorer, called through ``operator.call``
    so that callgrind can count its instructions alone; returns the profiles emitted."""
    pipeline = Pipeline(Settings())
    pipeline.expect_sources(paths)

    def loop() -> int:
        n = 0
        for i, (raw, origin) in enumerate(records, start=1):
            n += len(pipeline.process(raw, origin).profiles)
            if i % POLL == 0:
                n += len(pipeline.set_idle([]).profiles)
        return n + len(pipeline.set_idle(paths).profiles) + len(pipeline.finish().profiles)

    return operator.call(loop)


def profiles_digest(records: list[Record], paths: list[str]) -> tuple[str, int]:
    """The service's loop without a scorer; SHA-256 over every profile, dead letter and the
    stats, and the number of profiles."""
    pipeline = Pipeline(Settings())
    pipeline.expect_sources(paths)
    digest, profiles = hashlib.sha256(), 0

    def fold(out: Output) -> None:
        nonlocal profiles
        profiles += len(out.profiles)
        for profile in out.profiles:
            digest.update(msgspec.json.encode(profile) + b"\n")
        for rejected in out.rejected:
            digest.update(b"rejected " + msgspec.json.encode(rejected) + b"\n")

    for i, (raw, origin) in enumerate(records, start=1):
        fold(pipeline.process(raw, origin))
        if i % POLL == 0:
            fold(pipeline.set_idle([]))
    fold(pipeline.set_idle(paths))
    fold(pipeline.finish())
    digest.update(b"stats " + msgspec.json.encode(dict(sorted(pipeline.stats.items()))))
    return digest.hexdigest(), profiles


def replay(paths: list[str]) -> list[str]:
    settings = Settings()
    result = replay_files(paths, settings, pipeline=make_pipeline(settings))
    return sorted(a.alert_id for a in result.alerts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", help="an existing `churnguard simulate` output directory")
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--count", type=int, help="only the loop over the first N records")
    ap.add_argument("--profiles-digest", action="store_true", help="SHA-256 of what it emits")
    args = ap.parse_args()
    data = day_dir(args.dir, args.hours, args.seed)
    paths = [str(data / f) for f in FILES if (data / f).exists()]
    if args.count is not None:
        records = [r for batch in polls(paths) for r in batch][: args.count]
        print(f"{count_loop(records, paths):,} profiles from {len(records):,} records")
        return
    if args.profiles_digest:
        records = [r for batch in polls(paths) for r in batch]
        digest, profiles = profiles_digest(records, paths)
        print(f"{profiles:,} profiles from {len(records):,} records: profiles digest {digest}")
        return
    batches = shard_polls(polls(paths), args.shards)
    records = sum(len(part) for parts in batches for part in parts)

    scoring = [0.0]
    score = Scorer.score

    def timed_score(self: Scorer, profiles: list) -> list:
        started = time.process_time()
        try:
            return score(self, profiles)
        finally:
            scoring[0] += time.process_time() - started

    Scorer.score = timed_score  # type: ignore[method-assign]
    runs = {"serve loop": lambda: serve_like(batches, paths), "replay": lambda: replay(paths)}
    print(f"{records:,} records from {data}, {args.shards} shard(s), best of {args.repeat} CPU")
    for name, run in runs.items():
        best = None
        for _ in range(args.repeat):
            scoring[0] = 0.0
            started = time.process_time()
            ids = run()
            total = time.process_time() - started
            if best is None or total < best[0]:
                best = (total, scoring[0], ids)
        total, scorer, ids = best
        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:10]
        print(
            f"{name:<11} {total:6.2f} s  scorer {scorer:5.2f} s  rest {total - scorer:5.2f} s"
            f" ({(total - scorer) / records * 1e6:4.0f} us a record)  {len(ids)} alerts {digest}"
        )


if __name__ == "__main__":
    main()
