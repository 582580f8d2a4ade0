"""The scorer alone: CPU seconds per run and a digest of everything it decided.

Replays a simulated day once to capture the scorer's input batches (the pipeline's tick
batches, as ``bench_scale.captured_batches`` does), then feeds them to fresh scorers
(default detector, no model bundle unless ``--bundle``) ``--runs`` times and reports the
best ``time.process_time`` of the scoring loop: CPU time, so that other work on shared
cores moves it less than wall time.

The digest is a SHA-256 over every row's score and threshold (their exact bits), level,
baseline, alert id, campaign id, folded and withheld flags, and the scorer's final
snapshot (every detector's learned bytes, thresholds, gate, incidents). A speed change
that keeps detection bit-identical keeps the digest; compare it before and after, e.g.
against main's code with ``PYTHONPATH=<main checkout>/src``.

Two experiments that change what is scored, so their digests differ (not for landing):
``--max-leaf-samples WL,NS,CLUSTER`` sets the online forests' leaf sizes per scope (fewer
splits), ``--without-forests`` scores every row 0.5 and learns nothing into the forests
(baselines still mature): the CPU of everything in the scorer but the forests.

``--count`` scores the day once with one fresh scorer inside ``operator.call`` and prints
the digest, for an instruction count that load does not move:

  valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
      .venv/bin/python benchmarks/bench_scorer.py --cache FILE --count

Usage:  .venv/bin/python benchmarks/bench_scorer.py [--sim DIR | --hours 6 --seed 11]
            [--runs 3] [--batch-size 0] [--bundle] [--cache FILE] [--profile FILE]
            [--max-leaf-samples 8,16,32 | --without-forests] [--count]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import operator
import pickle
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_scale import captured_batches, rebatched

from churnguard.config import Settings
from churnguard.profiling.profile import Profile
from churnguard.scoring import baselines, scorer
from churnguard.scoring.scorer import Scored, Scorer
from churnguard.simulate import SimParams, generate, write
from churnguard.wiring import make_pipeline


def day_batches(args: argparse.Namespace) -> list[list[Profile]]:
    """The scorer's input batches of the day, from ``--cache`` when it exists."""
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        return pickle.loads(cache.read_bytes())
    if args.sim:
        data = Path(args.sim)
    else:
        data = Path(tempfile.mkdtemp(prefix="cg-bench-"))
        write(generate(SimParams(seed=args.seed, hours=args.hours)), data)
    paths = sorted(str(p) for p in data.glob("*.jsonl") if p.name != "labels.jsonl")
    _, _, batches = captured_batches(paths, Settings())
    if cache is not None:
        cache.write_bytes(pickle.dumps(batches))
    return batches


def experiment(args: argparse.Namespace) -> None:
    """Apply ``--max-leaf-samples`` or ``--without-forests`` to this process."""
    if args.max_leaf_samples:
        sizes = [int(x) for x in args.max_leaf_samples.split(",")]
        for scope, size in zip(("wl", "ns", "cluster"), sizes, strict=True):
            baselines.OIF_PARAMS[scope]["max_leaf_samples"] = size
    if args.without_forests:
        scorer.score_groups = lambda dets, Xs: [np.full(len(X), 0.5) for X in Xs]
        baselines.learn_groups = lambda dets, Xs: None


def fresh_scorer(bundle: bool) -> Scorer:
    return make_pipeline(Settings(), use_bundle=bundle).scorer  # type: ignore[return-value]


def score_day(scorer: Scorer, batches: list[list[Profile]]) -> tuple[float, list[Scored]]:
    """CPU seconds of scoring every batch in order, and every row as scored."""
    out: list[Scored] = []
    start = time.process_time()
    for batch in batches:
        out.extend(scorer.score(batch))
    return time.process_time() - start, out


def digest(scored: list[Scored], scorer: Scorer) -> str:
    h = hashlib.sha256()
    for s in scored:
        h.update(struct.pack("<dd??", s.score, s.threshold, s.folded, s.withheld))
        alert = s.alert.alert_id if s.alert is not None else ""
        campaign = s.campaign.alert_id if s.campaign is not None else ""
        h.update(f"{s.level}|{s.baseline_key}|{alert}|{campaign}\n".encode())
    h.update(scorer.snapshot())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sim", help="a `churnguard simulate --out` directory (else simulate)")
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--runs", type=int, default=3, help="fresh scorers; the best CPU is shown")
    ap.add_argument("--batch-size", type=int, default=0, help="rows a batch; 0 = tick batches")
    ap.add_argument("--bundle", action="store_true", help="seed from the model bundle")
    ap.add_argument("--cache", help="pickle of the captured batches (written, then read)")
    ap.add_argument("--profile", help="write a cProfile of one more run to this file")
    ap.add_argument("--max-leaf-samples", help="experiment: WL,NS,CLUSTER leaf sizes")
    ap.add_argument("--without-forests", action="store_true", help="experiment: no forests")
    ap.add_argument("--count", action="store_true", help="score once inside operator.call")
    args = ap.parse_args()
    experiment(args)

    batches = day_batches(args)
    if args.batch_size:
        batches = rebatched(batches, args.batch_size)
    rows = sum(len(b) for b in batches)
    if args.count:  # for callgrind: only this call is counted (see the module docstring)
        scorer = fresh_scorer(args.bundle)
        _, scored = operator.call(score_day, scorer, batches)
        print(f"{rows:,} rows in {len(batches)} batches, digest {digest(scored, scorer)}")
        return
    times, digests = [], set()
    for _ in range(args.runs):
        scorer = fresh_scorer(args.bundle)
        seconds, scored = score_day(scorer, batches)
        times.append(seconds)
        digests.add(digest(scored, scorer))
    alerts = sum(s.alert is not None for s in scored)
    best = min(times)
    print(
        f"{rows:,} rows in {len(batches)} batches, {alerts} alerts: best CPU {best:.3f} s"
        f" ({rows / best:,.0f} rows/s) of {', '.join(f'{t:.3f}' for t in times)}"
    )
    print("digest", *sorted(digests))
    if args.profile:
        scorer = fresh_scorer(args.bundle)
        prof = cProfile.Profile()
        prof.runcall(score_day, scorer, batches)
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    main()
