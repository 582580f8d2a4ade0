"""Many detectors' rows in one pass: a tick's baselines scored and taught together.

The scorer judges each 60 s tick's rows against ~10 baselines, a few rows each. Called one
detector at a time, an online forest spends its time in per-call numpy overhead (~40 calls
to learn 3 rows), not in arithmetic. Here every online forest of a tick whose nodes live in
the same :class:`~churnguard.scoring.detectors.pool.NodePool` (the scorer's baselines share
one) is routed in one pass over the pool's arrays, and its counts and boxes are updated
there; what is per forest and ordered (its ring buffer, its random split draws, its
collapses) still runs per forest in the same order, so scores and learned state are
bit-identical to calling ``score_many``/``learn_many`` on each detector in turn
(``tests/unit/test_detectors.py`` holds them to it). Other detectors are called one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

import numpy as np

from churnguard.scoring.detectors._util import as_matrix, refuse_non_finite
from churnguard.scoring.detectors.base import Detector
from churnguard.scoring.detectors.oif import (
    _LOG4,
    OnlineIsolationForest,
    _kernels,
    _placement,
    _stacked,
    learn_chunks,
    path_lengths,
)

__all__ = ["learn_groups", "score_groups"]


def score_groups(detectors: Sequence[Detector], Xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``[d.score_many(X) for d, X in zip(detectors, Xs)]``, online forests in one pass."""
    out: list[np.ndarray] = [np.zeros(0)] * len(detectors)
    # forests that can share a pass, by pool and tree count: (position, forest, rows)
    pooled: dict[tuple[int, int], list[tuple[int, OnlineIsolationForest, np.ndarray]]] = {}
    for i, (det, X) in enumerate(zip(detectors, Xs, strict=True)):
        if isinstance(det, OnlineIsolationForest) and _has_scores(det, X):
            rows = as_matrix(X, det._width())
            pooled.setdefault(_pass_of(det), []).append((i, det, rows))
        else:
            out[i] = det.score_many(X)
    for members in pooled.values():
        forests = [f for _, f, _ in members]
        scores = _score_forests(forests, [rows for _, _, rows in members])
        for (i, _, _), got in zip(members, scores, strict=True):
            out[i] = got
    return out


def learn_groups(detectors: Sequence[Detector], Xs: Sequence[np.ndarray]) -> None:
    """``for d, X in zip(detectors, Xs): d.learn_many(X)``, online forests in one pass.

    Each detector may appear once (a forest's chunks must follow each other in order).
    """
    if len({id(d) for d in detectors}) < len(detectors):
        raise ValueError("a detector appears twice in one learn_groups call")
    taught: list[tuple[OnlineIsolationForest, np.ndarray]] = []
    for det, X in zip(detectors, Xs, strict=True):
        if isinstance(det, OnlineIsolationForest):
            rows = as_matrix(X, det._width())
            if len(rows):
                taught.append((det, rows))
        else:
            det.learn_many(X)
    if taught:  # learn_many's finite check, once for all forests before any learns
        refuse_non_finite(np.concatenate([rows for _, rows in taught]))
    pooled: dict[tuple[int, int], list[tuple[OnlineIsolationForest, np.ndarray]]] = {}
    for det, rows in taught:
        if not hasattr(det, "roots_"):
            det._init_state(rows.shape[1])
        pooled.setdefault(_pass_of(det), []).append((det, rows))
    for members in pooled.values():
        _learn_forests(members)


def _has_scores(forest: OnlineIsolationForest, X: np.ndarray) -> bool:
    """Rows to score and a normaliser to score them with (else its own call is trivial).

    The normaliser ``log(max(n, eta) / eta) / log 4`` is > 0 exactly when ``n > eta``: both
    are integers, so ``n / eta`` rounds above 1 (for ``eta`` < 2**52) and its ``log`` is
    positive; at ``n <= eta`` the quotient is 1 (or NaN at ``0 / 0``) and the log is not.
    """
    return len(X) > 0 and getattr(forest, "n_window_", 0) > forest.max_leaf_samples


def _pass_of(forest: OnlineIsolationForest) -> tuple[int, int]:
    """Forests routed in one pass share a pool and a tree count."""
    return id(forest.pool_), forest.n_trees


def _score_forests(forests: list[OnlineIsolationForest], Xs: list[np.ndarray]) -> list[np.ndarray]:
    """Each forest's ``score_many`` of its rows, from one routing pass over all of them."""
    kernels = _kernels()
    counts = [len(X) for X in Xs]
    ends = list(accumulate(counts))
    X, owner = _stacked(Xs, counts)
    n, n_trees = len(X), forests[0].n_trees
    pool = forests[0].pool_
    bases, roots = _placement(forests)
    arrays = (pool.feature_, pool.threshold_, pool.left_, pool.right_, pool.count_, pool.depth_)
    eta = np.array([float(f.max_leaf_samples) for f in forests])
    depth, ratio = kernels.leaf_stats(*arrays, X, roots, owner, bases, eta)
    # OIF._path_length with each pair's own eta: the same operations, element by element
    depths = (depth + kernels.log(ratio) / _LOG4).reshape(n_trees, n)
    # ``mean`` as numpy computes it (its sum, divided by the count), without its wrapper
    mean_depth = np.add.reduce(depths, axis=0) / n_trees
    # numpy sums a lone column (a forest with one row) pairwise, several columns row by
    # row: recompute lone columns the way score_many's (n_trees, 1) matrix sums them
    if n > 1 and 1 in counts:
        lone = [end - 1 for end, m in zip(ends, counts, strict=True) if m == 1]
        lone_depths = np.ascontiguousarray(depths[:, lone].T)
        mean_depth[lone] = np.add.reduce(lone_depths, axis=1) / n_trees
    norm = path_lengths(forests, eta)[owner]
    isolation = kernels.exp2(-mean_depth / norm)
    novelty = [f.range_novelty for f in forests]
    if not any(novelty):
        scores = isolation
    else:
        tops = np.zeros((len(forests), X.shape[1]))
        for i, f in enumerate(forests):
            if f.range_novelty:
                tops[i] = f._robust_top()
        excess = np.maximum(X - tops[owner], 0.0)  # what clip(min=0.0) calls
        scores = 1.0 - (1.0 - isolation) * kernels.exp2(-np.add.reduce(excess, axis=1))
        if not all(novelty):
            scores = np.where(np.array(novelty)[owner], scores, isolation)
    return [scores[end - m : end] for end, m in zip(ends, counts, strict=True)]


def _learn_forests(members: list[tuple[OnlineIsolationForest, np.ndarray]]) -> None:
    """Each forest's ``learn_many`` of its rows: chunk ``k`` of every forest in one pass."""
    steps = [max(1, min(f.learn_chunk, f.window_size)) for f, _ in members]
    if all(len(X) <= step for (_, X), step in zip(members, steps, strict=True)):
        learn_chunks([f for f, _ in members], [X for _, X in members])  # one chunk each
        return
    chunks = [
        [X[s : s + step] for s in range(0, len(X), step)]
        for (_, X), step in zip(members, steps, strict=True)
    ]
    for k in range(max(len(c) for c in chunks)):
        live = [(f, c[k]) for (f, _), c in zip(members, chunks, strict=True) if k < len(c)]
        learn_chunks([f for f, _ in live], [X for _, X in live])
