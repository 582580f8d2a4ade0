"""Resident memory of many tracked live pods: does a million fit in 4 GiB?

``bench_scale.py``'s memory row counts 20,000 pods with tracemalloc (the Python objects and
numpy buffers the state holds). At a million, tracemalloc's own bookkeeping would dwarf
what it measures, so this counts what the operating system sees: the process's resident
set (psutil) before and after ``--pods`` pod creations are processed, allocator overhead
included. ``pipeline.max_entities`` (default 200,000, the flood cap) is raised above the
pod count so that every pod is tracked; the prebuilt records are in memory before the
first reading, so they are not counted.

Usage:  .venv/bin/python benchmarks/bench_memory.py [--pods 1000000]
"""

from __future__ import annotations

import argparse
import gc
import time

import psutil
from bench_scale import pod_creations

from churnguard.config import Settings
from churnguard.pipeline import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pods", type=int, default=1_000_000)
    args = ap.parse_args()
    settings = Settings()
    settings.pipeline.max_entities = 2 * args.pods
    pipe = Pipeline(settings)
    docs = pod_creations(args.pods)
    gc.collect()
    proc = psutil.Process()
    before, started = proc.memory_info().rss, time.process_time()
    for doc in docs:
        pipe.process(doc)
    gc.collect()
    grown = proc.memory_info().rss - before
    tracked = len(pipe.table.states)
    print(
        f"{args.pods:,} pod creations, {tracked:,} tracked live pods: resident set grew"
        f" {grown / 2**30:.2f} GiB, {grown / max(tracked, 1) / 1024:.2f} KiB per pod;"
        f" a million would take {grown / max(tracked, 1) * 1e6 / 2**30:.2f} GiB"
        f" ({time.process_time() - started:.0f} s CPU)"
    )


if __name__ == "__main__":
    main()
