"""Many detectors' rows in one pass: a tick's baselines scored and taught together.

The scorer judges each 60 s tick's rows against ~10 baselines, a few rows each. Called one
detector at a time, an online forest spends its time in per-call numpy overhead (~40 calls
to learn 3 rows), not in arithmetic. Here every online forest of a tick is routed in one
pass over their node arrays laid side by side; what is per forest and ordered (its ring
buffer, its random split draws, its collapses) still runs per forest in the same order, so
scores and learned state are bit-identical to calling ``score_many``/``learn_many`` on each
detector in turn (``tests/unit/test_detectors.py`` holds them to it). Other detectors are
called one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from churnguard.scoring.detectors._util import as_matrix
from churnguard.scoring.detectors.base import Detector
from churnguard.scoring.detectors.oif import (
    _LOG4,
    OnlineIsolationForest,
    box_cells,
    descend,
    widen_boxes,
)

__all__ = ["learn_groups", "score_groups"]


def score_groups(detectors: Sequence[Detector], Xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``[d.score_many(X) for d, X in zip(detectors, Xs)]``, online forests in one pass."""
    out: list[np.ndarray] = [np.zeros(0)] * len(detectors)
    # forests that can share a pass, by tree count: (position, forest, rows)
    pooled: dict[int, list[tuple[int, OnlineIsolationForest, np.ndarray]]] = {}
    for i, (det, X) in enumerate(zip(detectors, Xs, strict=True)):
        if isinstance(det, OnlineIsolationForest) and _has_scores(det, X):
            pooled.setdefault(det.n_trees, []).append((i, det, as_matrix(X, det._width())))
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
    pooled: dict[int, list[tuple[OnlineIsolationForest, np.ndarray]]] = {}
    for det, X in zip(detectors, Xs, strict=True):
        if isinstance(det, OnlineIsolationForest):
            rows = as_matrix(X, det._width(), finite=True)
            if len(rows):
                pooled.setdefault(det.n_trees, []).append((det, rows))
        else:
            det.learn_many(X)
    for members in pooled.values():
        _learn_forests(members)


def _has_scores(forest: OnlineIsolationForest, X: np.ndarray) -> bool:
    """Rows to score and a normaliser to score them with (else its own call is trivial)."""
    return len(X) > 0 and forest._path_length(float(getattr(forest, "n_window_", 0))) > 0.0


class _Pool:
    """The node arrays of several forests side by side (node ids offset per forest)."""

    def __init__(self, forests: Sequence[OnlineIsolationForest]) -> None:
        sizes = np.array([f.n_nodes_ for f in forests])
        self.base = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        shift = np.repeat(self.base, sizes).astype(np.int32)
        used = [slice(0, f.n_nodes_) for f in forests]
        self.feature = np.concatenate([f.feature_[u] for f, u in zip(forests, used, strict=True)])
        self.threshold = np.concatenate(
            [f.threshold_[u] for f, u in zip(forests, used, strict=True)]
        )
        self.left = np.concatenate([f.left_[u] for f, u in zip(forests, used, strict=True)]) + shift
        self.right = (
            np.concatenate([f.right_[u] for f, u in zip(forests, used, strict=True)]) + shift
        )
        self.count = np.concatenate([f.count_[u] for f, u in zip(forests, used, strict=True)])
        self.depth = np.concatenate([f.depth_[u] for f, u in zip(forests, used, strict=True)])
        self.sizes = sizes
        self.forests = forests

    def route(
        self, X: np.ndarray, owner: np.ndarray, *, record: bool
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Leaf of every (tree, row) pair, tree-major over all rows; ``owner[r]`` is the
        forest of row ``r``. With ``record``, every node visited (as ``OIF._route``)."""
        n = len(X)
        roots = np.stack([f.roots_ for f in self.forests], axis=1) + self.base.astype(np.int32)
        node = roots[:, owner].ravel()
        row = np.tile(np.arange(n), len(roots))
        arrays = (self.feature, self.threshold, self.left, self.right)
        return descend(arrays, X, node, row, record=record)

    def split(self, nodes: np.ndarray) -> list[slice]:
        """For sorted pooled node ids, the slice of them that belongs to each forest."""
        cuts = np.searchsorted(nodes, np.append(self.base, self.base[-1] + self.sizes[-1]))
        return [slice(int(a), int(b)) for a, b in pairwise(cuts.tolist())]


def _owners(counts: Sequence[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def _score_forests(forests: list[OnlineIsolationForest], Xs: list[np.ndarray]) -> list[np.ndarray]:
    """Each forest's ``score_many`` of its rows, from one routing pass over all of them."""
    counts = [len(X) for X in Xs]
    owner = _owners(counts)
    X = np.concatenate(Xs)
    n, n_trees = len(X), forests[0].n_trees
    pool = _Pool(forests)
    leaves, _ = pool.route(X, owner, record=False)
    depth = pool.depth[leaves]
    count = pool.count[leaves].astype(float)
    eta = np.array([float(f.max_leaf_samples) for f in forests])[np.tile(owner, n_trees)]
    # OIF._path_length with each pair's own eta: the same operations, element by element
    depths = (depth + np.log(np.maximum(count, eta) / eta) / _LOG4).reshape(n_trees, n)
    mean_depth = depths.mean(axis=0)
    # numpy sums a lone column (a forest with one row) pairwise, several columns row by
    # row: recompute lone columns the way score_many's (n_trees, 1) matrix sums them
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lone = starts[np.asarray(counts) == 1]
    if len(lone) and n > 1:
        mean_depth[lone] = np.ascontiguousarray(depths[:, lone].T).mean(axis=1)
    norm = np.array([f._path_length(float(f.n_window_)) for f in forests])[owner]
    isolation = np.exp2(-mean_depth / norm)
    novelty = np.array([f.range_novelty for f in forests])
    if not novelty.any():
        scores = isolation
    else:
        tops = np.stack(
            [f._robust_top() if f.range_novelty else np.zeros(X.shape[1]) for f in forests]
        )
        excess = (X - tops[owner]).clip(min=0.0)
        raised = 1.0 - (1.0 - isolation) * np.exp2(-excess.sum(axis=1))
        scores = np.where(novelty[owner], raised, isolation)
    return np.split(scores, np.cumsum(counts)[:-1])


def _learn_forests(members: list[tuple[OnlineIsolationForest, np.ndarray]]) -> None:
    """Each forest's ``learn_many`` of its rows: chunk ``k`` of every forest in one pass."""
    for forest, X in members:
        if not hasattr(forest, "roots_"):
            forest._init_state(X.shape[1])
    chunks = [
        [X[s : s + step] for s in range(0, len(X), step)]
        for f, X in members
        for step in [max(1, min(f.learn_chunk, f.window_size))]
    ]
    for k in range(max(len(c) for c in chunks)):
        live = [(f, c[k]) for (f, _), c in zip(members, chunks, strict=True) if k < len(c)]
        _learn_chunks([f for f, _ in live], [X for _, X in live])


def _learn_chunks(forests: list[OnlineIsolationForest], Xs: list[np.ndarray]) -> None:
    """``OIF._learn_chunk`` of one chunk per forest, routed, counted and checked for ripe
    leaves in one pass; only the box writes, splits and forgetting run per forest."""
    olds = [f._push_window(X) for f, X in zip(forests, Xs, strict=True)]
    counts = [len(X) for X in Xs]
    owner = _owners(counts)
    X = np.concatenate(Xs)
    pool = _Pool(forests)
    leaves, path = pool.route(X, owner, record=True)
    visits = np.bincount(np.concatenate(path), minlength=len(pool.count))
    pool.count += visits
    for f, k in zip(forests, counts, strict=True):
        f.n_window_ += k
        f.n_seen_ += k
    # leaves ready to split, as OIF._learn_chunk finds them, with each forest's own eta
    # and depth limit
    touched = np.unique(leaves)
    forest_of = np.searchsorted(pool.base, touched, side="right") - 1
    eta = np.array([f.max_leaf_samples for f in forests])[forest_of]
    limits = [f._path_length(float(f.n_window_)) for f in forests]
    depth = pool.depth[touched]
    ripe = touched[
        (pool.count[touched] >= eta * np.exp2(depth)) & (depth < np.array(limits)[forest_of])
    ]
    # each forest's (tree, row) pairs in the order its own _route gives them (tree-major),
    # as flat (node, feature) cells of its box arrays and the row values widening them
    pair_owner = np.tile(owner, forests[0].n_trees)
    by_forest = np.argsort(pair_owner, kind="stable")
    d = X.shape[1]
    cells = box_cells((leaves - pool.base[pair_owner])[by_forest], d)
    values = X[by_forest % len(X)].ravel()
    ends = np.cumsum(np.bincount(pair_owner, minlength=len(forests)) * d).tolist()
    groups = zip(forests, pool.base, pool.sizes, pool.split(ripe), limits, olds, strict=True)
    for (f, base, size, part, limit, old), start, end in zip(
        groups, [0, *ends[:-1]], ends, strict=True
    ):
        f.count_[:size] = pool.count[base : base + size]
        widen_boxes(f.lo_, f.hi_, cells[start:end], values[start:end])
        for leaf in (ripe[part] - base).tolist():
            f._split(leaf, limit)
        if len(old):
            f._forget(old)
