"""Detector throughput: learn and score rows/s for oif, hst and iforest with default parameters.

Rows are shaped like the v1 feature spec in the model view (26 columns: log1p counts, 0/1
flags, some always zero), so the numbers match what the scorer feeds the detectors.
learn = one ``learn_many`` over all rows from a fresh detector; score = ``score_many`` over
all rows after that; learn_one = the first ``--one`` rows fed one ``learn_one`` call each
(the cost of a streaming caller that does not batch). Best of ``--repeat`` runs.

Usage:  .venv/bin/python benchmarks/bench_detectors.py [--rows 10000] [--repeat 3] [--only oif]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from churnguard.scoring.detectors import DETECTORS, make_detector

N_FEATURES = 26


def feature_rows(n: int, seed: int = 0) -> np.ndarray:
    """Log-scale counts in the first 16 columns, sparse flags in 6, four never-set flags."""
    rng = np.random.default_rng(seed)
    counts = np.log1p(rng.lognormal(mean=2.0, sigma=1.5, size=(n, 16)))
    flags = (rng.random((n, 6)) < 0.05).astype(float)
    return np.hstack([counts, flags, np.zeros((n, N_FEATURES - 22))])


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def learn_one_by_one(name: str, X: np.ndarray) -> None:
    det = make_detector(name, N_FEATURES)
    for row in X:
        det.learn_one(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", type=int, default=2_000, help="rows for the learn_one column")
    ap.add_argument("--only", choices=sorted(DETECTORS), action="append")
    args = ap.parse_args()

    X = feature_rows(args.rows)
    stream = X[: args.one]
    print(f"{args.rows} rows x {N_FEATURES} features, best of {args.repeat}")
    print(
        f"{'detector':<10}{'learn s':>10}{'learn rows/s':>15}{'score s':>10}"
        f"{'score rows/s':>15}{'learn_one rows/s':>18}"
    )
    for name in args.only or ("oif", "hst", "iforest"):
        learn_s = best_of(args.repeat, lambda n=name: make_detector(n, N_FEATURES).learn_many(X))
        det = make_detector(name, N_FEATURES).learn_many(X)
        score_s = best_of(args.repeat, lambda d=det: d.score_many(X))
        one_s = best_of(args.repeat, lambda n=name: learn_one_by_one(n, stream))
        print(
            f"{name:<10}{learn_s:>10.3f}{args.rows / learn_s:>15,.0f}"
            f"{score_s:>10.3f}{args.rows / score_s:>15,.0f}{len(stream) / one_s:>18,.0f}"
        )


if __name__ == "__main__":
    main()
