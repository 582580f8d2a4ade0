"""Pipeline throughput on simulated telemetry, as ratios against the raw file read + decode.

Stages measured in one run on the same records:
  raw       read_records + orjson.loads of every record (the floor: nothing to skip)
  adapt     + parse_record (decode, detect format, adapt to canonical events)
  features  + entity table, event-time windows, feature rows (no scoring)
  full      + per-namespace/workload baselines, thresholds, guards, alerts (churnguard replay)

Usage:  .venv/bin/python benchmarks/bench_pipeline.py [--hours 6] [--seed 11] [--dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from churnguard.config import Settings
from churnguard.ingest import parse_record
from churnguard.ingest.files import read_records
from churnguard.offline.replay import replay_files
from churnguard.wiring import make_pipeline

FILES = ("k8s_audit.jsonl", "cloudtrail.jsonl", "falco.jsonl", "tetragon.jsonl", "flows.jsonl")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def day_dir(directory: str | None, hours: float, seed: int) -> Path:
    """``directory`` (a `churnguard simulate` output), or a day simulated now into a
    temporary directory."""
    if directory:
        return Path(directory)
    from churnguard.simulate import SimParams, generate, write

    data = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    write(generate(SimParams(seed=seed, hours=hours)), data)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--dir", help="an existing `churnguard simulate` output directory")
    args = ap.parse_args()

    data = day_dir(args.dir, args.hours, args.seed)
    paths = [str(data / f) for f in FILES if (data / f).exists()]
    records = sum(1 for _ in read_records(paths))
    size = sum(Path(p).stat().st_size for p in paths)

    def raw() -> int:
        return sum(1 for raw, _ in read_records(paths) if orjson.loads(raw) is not None)

    def adapt() -> int:
        return sum(len(parse_record(raw, origin).events) for raw, origin in read_records(paths))

    def features() -> int:
        return len(replay_files(paths, Settings()).profiles)

    def full() -> int:
        settings = Settings()
        return len(replay_files(paths, settings, pipeline=make_pipeline(settings)).alerts)

    rows = []
    for name, fn in (("raw", raw), ("adapt", adapt), ("features", features), ("full", full)):
        seconds, out = timed(fn)
        rows.append((name, seconds, out))
    base = rows[0][1]
    print(f"{records:,} records, {size / 1e6:.1f} MB from {data}")
    print(f"{'stage':<10}{'seconds':>10}{'records/s':>12}{'x raw time':>12}  output")
    for name, seconds, out in rows:
        print(
            f"{name:<10}{seconds:>10.2f}{records / seconds:>12,.0f}{seconds / base:>12.1f}  {out}"
        )


if __name__ == "__main__":
    main()
