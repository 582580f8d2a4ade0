"""Online Isolation Forest (Leveni et al., ICML 2024), vectorised with numpy.

Each tree is a multi-resolution histogram that grows and shrinks with the stream: a leaf at
depth ``k`` splits once it has counted ``max_leaf_samples * 2**k`` points (and the tree is
still shallower than ``log4(n / max_leaf_samples)``), and an internal node whose count falls
below that threshold, because the sliding window forgot the points that made it, collapses
back into a leaf. Split points are drawn uniformly inside the leaf's bounding box, which is
why it works on an unbounded stream without keeping per-leaf samples.

All trees of the forest live in one set of flat node arrays, so routing a batch is a handful
of fancy-indexing steps per tree level for every (tree, row) pair at once; only splits and
collapses, which are rare once the window is full, run per node in Python.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np

from churnguard.errors import ModelError
from churnguard.scoring.detectors._util import as_matrix, pack, rng_from_state, rng_state, unpack
from churnguard.scoring.detectors.base import Detector
from churnguard.scoring.detectors.pool import NODE_FIELDS, NodePool

BOX_TRIM = 0.005  # share of the window's highest rows the novelty bar leaves out
_LOG4 = math.log(4.0)  # branching factor 2: path lengths are log base 2 * branching


class OnlineIsolationForest(Detector):
    """Online Isolation Forest over a sliding window of the last ``window_size`` rows.

    Parameters
    ----------
    n_trees
        Number of online isolation trees.
    max_leaf_samples
        ``eta`` of the paper: a leaf at depth ``k`` splits once it holds ``eta * 2**k`` points.
        Smaller values give deeper trees (finer histograms) at a higher cost.
    window_size
        ``omega`` of the paper: how many recent rows the forest remembers. Older rows are
        unlearned, so the model follows a drifting baseline.
    learn_chunk
        ``learn_many`` processes rows in chunks of at most this many (the reference
        implementation's ``learn_batch``); smaller is closer to one-at-a-time learning.
    n_features
        Expected row width; None = taken from the first rows learned.
    seed
        Seed of the split sampler: the same seed and data give the same model.
    range_novelty
        Raise the score of rows outside the window's bounding box (see Notes).

    Notes
    -----
    Two choices the paper leaves open: a split picks its feature among those with a non-zero
    range in the leaf (a constant column, such as a flag never set, can never split, instead of
    producing an empty child), and before the forest has a normaliser (fewer than
    ``max_leaf_samples`` rows in the window) every score is 0.5, the uninformative value of
    isolation scores. One addition to the paper, on by default (``range_novelty``): splits
    are drawn only inside observed ranges, so a value the window never held (a flag that is
    always 0 for a workload) can never be isolated and would score as normal; the score is
    therefore raised by how far a row lies *above* the window's (trimmed) top:
    ``1 - (1 - s) * 2 ** -excess``, with ``excess`` the summed distance above it in the
    model's units. Only upward: the feature spec orients every feature so that larger is
    more suspicious, and less activity than usual is not what this detector is for.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> forest = OnlineIsolationForest(n_trees=16, seed=1)
    >>> forest = forest.learn_many(rng.normal(size=(2000, 3)))
    >>> inlier, outlier = forest.score_many(np.array([[0.0, 0.0, 0.0], [6.0, -6.0, 6.0]]))
    >>> bool(outlier > inlier)
    True

    References
    ----------
    Leveni, F., Weigert Cassales, G., Pfahringer, B., Bifet, A., Boracchi, G. (2024).
    Online Isolation Forest. Proceedings of the 41st International Conference on Machine
    Learning (ICML 2024), PMLR 235.
    Reference implementation: https://github.com/ineveLoppiliF/Online-Isolation-Forest
    """

    name = "oif"

    def __init__(
        self,
        n_trees: int = 32,
        max_leaf_samples: int = 32,
        window_size: int = 2048,
        learn_chunk: int = 128,
        n_features: int | None = None,
        seed: int = 0,
        range_novelty: bool = True,
    ) -> None:
        self.n_trees = n_trees
        self.max_leaf_samples = max_leaf_samples
        self.window_size = window_size
        self.learn_chunk = learn_chunk
        self.n_features = n_features
        self.seed = seed
        self.range_novelty = range_novelty

    # -- public API -----------------------------------------------------------------------

    def learn_many(self, X: np.ndarray) -> Self:
        """Learn rows in order; rows falling out of the window are unlearned as they go."""
        X = as_matrix(X, self._width(), finite=True)
        if len(X) == 0:
            return self
        if not hasattr(self, "roots_"):
            self._init_state(X.shape[1])
        step = max(1, min(self.learn_chunk, self.window_size))
        for start in range(0, len(X), step):
            self._learn_chunk(X[start : start + step])
        return self

    def score_many(self, X: np.ndarray) -> np.ndarray:
        """``2 ** (-mean depth / c(window))`` per row: near 1 isolates fast, near 0 is dense."""
        X = as_matrix(X, self._width())
        norm = self._path_length(float(getattr(self, "n_window_", 0)))
        if norm <= 0.0 or len(X) == 0:
            return np.full(len(X), 0.5)
        leaves, _ = self._route(X, record=False)
        depths = self.depth_[leaves] + self._path_length(self.count_[leaves].astype(float))
        mean_depth = depths.reshape(self.n_trees, len(X)).mean(axis=0)
        isolation = np.exp2(-mean_depth / norm)
        if not self.range_novelty:
            return isolation
        # Range novelty: isolation trees can only split on features that vary in the data,
        # so a value outside everything the window holds (a flag always 0 for this baseline)
        # is invisible to them. Each unit by which a row rises above the window's (trimmed)
        # top halves the row's "normality" 1 - isolation.
        excess = (X - self._robust_top()).clip(min=0.0)
        return 1.0 - (1.0 - isolation) * np.exp2(-excess.sum(axis=1))

    def _robust_top(self) -> np.ndarray:
        """Per-feature top of the window, ignoring its ``BOX_TRIM`` most extreme rows.

        A value only one or two remembered rows ever had is still novel: one odd row in the
        window must not raise the bar for everything after it.
        """
        n = self.n_window_
        k = min(n - 1, int(np.ceil(BOX_TRIM * n)))
        return np.partition(self.window_[:, :n], -k - 1, axis=1)[:, -k - 1]

    # -- tree mechanics -------------------------------------------------------------------

    def _path_length(self, n: Any) -> Any:
        """Expected extra depth below a node holding ``n`` points (0 under ``eta`` points)."""
        n = np.asarray(n, dtype=float)
        eta = float(self.max_leaf_samples)
        out = np.log(np.maximum(n, eta) / eta) / _LOG4
        return float(out) if out.ndim == 0 else out

    def _threshold(self, depth: np.ndarray | int) -> Any:
        return self.max_leaf_samples * np.exp2(depth)

    def _init_state(self, d: int, nodes: dict[str, np.ndarray] | None = None) -> None:
        """Fresh learned state; the node arrays blank, or ``nodes`` (a saved forest's)."""
        self.n_features_in_ = d
        self.rng_ = np.random.default_rng(self.seed)
        pool = getattr(self, "pool_", None)  # a shared pool that adopted it before it learned
        if pool is None or pool.d != d:
            pool = NodePool(d)
        # grows by doubling; many baselines stay small
        capacity = self.n_trees * 4 if nodes is None else len(nodes["feature_"])
        pool.place(self, capacity, nodes)
        self.n_nodes_ = self.n_trees if nodes is None else capacity  # slots ever used
        self.free_: list[int] = []
        self.roots_ = np.arange(self.n_trees, dtype=np.int32)
        # ring buffer of the rows remembered, grown as filled; feature-major (one row per
        # feature), so the range-novelty top partitions contiguous rows (4-10x faster)
        self.window_ = np.zeros((d, 0))
        self.window_head_ = 0
        self.n_window_ = 0
        self.n_seen_ = 0

    def _route(self, X: np.ndarray, *, record: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """Leaf of every (tree, row) pair, tree-major; with ``record`` every node visited."""
        node = np.repeat(self.roots_, len(X))
        row = _row_index(len(X), self.n_trees)
        arrays = (self.feature_, self.threshold_, self.left_, self.right_)
        return descend(arrays, X, node, row, record=record)

    def _learn_chunk(self, X: np.ndarray) -> None:
        old = self._push_window(X)
        leaves, path = self._route(X, record=True)
        np.add.at(self.count_, np.concatenate(path), 1)
        rows = X[_row_index(len(X), self.n_trees)]
        widen_boxes(self.lo_, self.hi_, box_cells(leaves, X.shape[1]), rows.ravel())
        self.n_window_ += len(X)
        self.n_seen_ += len(X)
        limit = self._path_length(float(self.n_window_))
        touched = np.unique(leaves)
        ripe = touched[
            (self.count_[touched] >= self._threshold(self.depth_[touched]))
            & (self.depth_[touched] < limit)
        ]
        for leaf in ripe.tolist():
            self._split(leaf, limit)
        if len(old):
            self._forget(old)

    def _push_window(self, X: np.ndarray) -> np.ndarray:
        """Append rows to the ring buffer; returns the oldest rows they displaced."""
        size = self.window_size
        n_old = max(0, self.n_window_ + len(X) - size)
        need = min(size, self.n_window_ + len(X))
        capacity = self.window_.shape[1]
        if capacity < need:  # still filling, so nothing has wrapped: head is 0
            grown = np.zeros((X.shape[1], min(size, max(need, 2 * capacity))))
            grown[:, : self.n_window_] = self.window_[:, : self.n_window_]
            self.window_ = grown
        if n_old == 0:  # not full yet, so not wrapped either: the rows go at the end
            self.window_[:, self.n_window_ : need] = X.T
            return self.window_[:, :0].T
        old = self.window_[:, (self.window_head_ + np.arange(n_old)) % size].T
        self.window_[:, (self.window_head_ + self.n_window_ + np.arange(len(X))) % size] = X.T
        self.window_head_ = (self.window_head_ + n_old) % size
        return old

    def _split(self, leaf: int, limit: float) -> None:
        """Grow a subtree from ``count`` points sampled uniformly in the leaf's box."""
        lo, hi = self.lo_[leaf].copy(), self.hi_[leaf].copy()
        sample = self._uniform(lo, hi, (int(self.count_[leaf]), len(lo)))
        self._build(leaf, sample, int(self.depth_[leaf]), limit)

    def _build(self, node: int, data: np.ndarray, depth: int, limit: float) -> None:
        # the hottest Python of learning (one call per node of every split): plain ints and
        # floats where numpy scalars would cost more, the same random draws in the same order
        # (a node that splits keeps no box: its lo/hi rows are written only when it stays
        # a leaf, the same values as writing them and resetting them to +-inf)
        n = len(data)
        self.count_[node] = n
        self.depth_[node] = depth
        if n:
            lo, hi = np.minimum.reduce(data), np.maximum.reduce(data)  # min(axis=0), unwrapped
        else:
            lo, hi = self.lo_[node], self.hi_[node]
        splittable = None
        if n >= self.max_leaf_samples * 2**depth and depth < limit:
            splittable = (hi > lo).nonzero()[0]  # np.flatnonzero without its wrapper
        if splittable is None or splittable.size == 0:
            if n:
                self.lo_[node], self.hi_[node] = lo, hi
            return
        rng = self.rng_
        feature = int(splittable[rng.integers(splittable.size)])
        u = rng.random()  # _uniform of one value: the same draw, as a Python float
        threshold = float(lo[feature]) * (1.0 - u) + float(hi[feature]) * u
        left, right = self._alloc(), self._alloc()
        self.feature_[node], self.threshold_[node] = feature, threshold
        self.left_[node], self.right_[node] = left, right
        self.lo_[node], self.hi_[node] = np.inf, -np.inf
        goes_left = data[:, feature] < threshold
        self._build(left, data[goes_left], depth + 1, limit)
        self._build(right, data[~goes_left], depth + 1, limit)

    def _uniform(self, lo: Any, hi: Any, size: tuple[int, ...]) -> Any:
        """Uniform in [lo, hi] as a convex combination: ``hi - lo`` may overflow, this cannot."""
        u = self.rng_.random(size)
        out = 1.0 - u  # lo * (1 - u) + hi * u, the same operations in place
        out *= lo
        u *= hi
        out += u
        return out

    def _forget(self, old: np.ndarray) -> None:
        """Unlearn rows leaving the window; nodes that fall under their threshold collapse."""
        _, path = self._route(old, record=True)
        visited = np.concatenate(path)
        np.subtract.at(self.count_, visited, 1)
        np.maximum(self.count_, 0, out=self.count_)  # split-time counts were estimates
        self.n_window_ -= len(old)
        self._collapse_starving(np.unique(visited))

    def _collapse_starving(self, visited: np.ndarray) -> None:
        """Collapse, shallowest first, the internal nodes among ``visited`` (sorted node ids)
        whose count fell under their split threshold."""
        internal = visited[self.feature_[visited] >= 0]
        starving = internal[self.count_[internal] < self._threshold(self.depth_[internal])]
        for node in starving[np.argsort(self.depth_[starving], kind="stable")].tolist():
            if self.feature_[node] >= 0:  # not already folded into a shallower collapse
                self._collapse(node)

    def _collapse(self, node: int) -> None:
        stack = [int(self.left_[node]), int(self.right_[node])]
        lo, hi = self.lo_[node].copy(), self.hi_[node].copy()
        while stack:
            child = stack.pop()
            if self.feature_[child] >= 0:
                stack += [int(self.left_[child]), int(self.right_[child])]
            else:
                np.minimum(lo, self.lo_[child], out=lo)
                np.maximum(hi, self.hi_[child], out=hi)
            self._release(child)
        self.feature_[node], self.left_[node], self.right_[node] = -1, -1, -1
        self.lo_[node], self.hi_[node] = lo, hi

    def _alloc(self) -> int:
        if self.free_:
            return self.free_.pop()
        if self.n_nodes_ == len(self.feature_):
            self._grow()
        self.n_nodes_ += 1
        return self.n_nodes_ - 1

    def _release(self, node: int) -> None:
        self.feature_[node], self.left_[node], self.right_[node] = -1, -1, -1
        self.count_[node], self.depth_[node] = 0, 0
        self.lo_[node], self.hi_[node] = np.inf, -np.inf
        self.free_.append(node)

    def _grow(self) -> None:
        self.pool_.grow(self, 2 * len(self.feature_))

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and deep copies hold their own copy of the nodes, not the shared pool."""
        state = dict(super().__getstate__())
        if state.pop("pool_", None) is not None and "roots_" in state:
            for name in NODE_FIELDS:
                state[name] = np.array(state[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if hasattr(self, "roots_"):
            nodes = {name: getattr(self, name) for name in NODE_FIELDS}
            NodePool(self.lo_.shape[1]).place(self, len(self.feature_), nodes)

    # -- state ----------------------------------------------------------------------------

    _NODE_ARRAYS = tuple(NODE_FIELDS)  # views of the forest's block of its NodePool

    def to_bytes(self) -> bytes:
        """Arrays in an npz plus JSON meta: loading it never executes code."""
        meta: dict[str, Any] = {"params": self.params()}
        if not hasattr(self, "roots_"):
            return pack(self.name, meta, {})
        used = self.n_nodes_
        arrays = {a: getattr(self, a)[:used] for a in self._NODE_ARRAYS}
        arrays.update(
            roots_=self.roots_,
            free_=np.asarray(self.free_, dtype=np.int64),
            window_=np.ascontiguousarray(  # rows, oldest first
                np.roll(self.window_, -self.window_head_, axis=1)[:, : self.n_window_].T
            ),
        )
        meta.update(
            n_features_in_=self.n_features_in_,
            n_seen_=self.n_seen_,
            rng_=rng_state(self.rng_),
        )
        return pack(self.name, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        meta, arrays = unpack(cls.name, data)
        try:
            model = cls(**meta["params"])
            if not arrays:
                return model
            nodes = {a: arrays[a] for a in cls._NODE_ARRAYS}
            model._init_state(int(meta["n_features_in_"]), nodes)
            model.roots_ = arrays["roots_"].astype(np.int32)
            model.free_ = [int(i) for i in arrays["free_"]]
            model.window_ = np.ascontiguousarray(arrays["window_"].astype(float).T)
            model.n_window_ = model.window_.shape[1]
            model.n_seen_ = int(meta["n_seen_"])
            model.rng_ = rng_from_state(meta["rng_"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"corrupt {cls.name} state: {exc}") from exc
        if len(model.roots_) != model.n_trees:
            raise ModelError(f"corrupt {cls.name} state: inconsistent node arrays")
        return model


def descend(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    X: np.ndarray,
    node: np.ndarray,
    row: np.ndarray,
    *,
    record: bool,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Walk (tree, row) pairs from their ``node`` down to a leaf, all pairs a level at a time.

    ``arrays`` are (feature, threshold, left, right) node arrays, of one forest or of a
    :class:`~churnguard.scoring.detectors.pool.NodePool`, whose child links are local to
    each forest: ``offset`` is then the start of each pair's forest in the pool. ``node``
    is updated in place. Returns the leaves and, with ``record``, every node visited,
    level by level.
    """
    feature, threshold, left, right = arrays
    path = [node.copy()] if record else []
    active = np.flatnonzero(feature[node] >= 0)
    flat, width = np.ravel(X), X.shape[1]  # one flat take is cheaper than X[rows, columns]
    while active.size:
        here = node[active]
        go_left = flat.take(row[active] * width + feature[here]) < threshold[here]
        nxt = np.where(go_left, left[here], right[here])
        if offset is not None:
            nxt = nxt + offset[active]
        node[active] = nxt
        if record:
            path.append(nxt)
        active = active[feature[nxt] >= 0]
    return node, path


def box_cells(nodes: np.ndarray, d: int) -> np.ndarray:
    """The flat (node, feature) cells of ``d``-wide box rows that rows at ``nodes`` touch,
    row after row (for :func:`widen_boxes`)."""
    return (nodes[:, None] * d + np.arange(d)).ravel()


def widen_boxes(lo: np.ndarray, hi: np.ndarray, cells: np.ndarray, values: np.ndarray) -> None:
    """Widen the C-contiguous box arrays ``lo`` and ``hi`` in place by ``values`` (rows
    raveled), one row at a time in order, at their :func:`box_cells`.

    ``np.minimum`` and ``np.maximum`` return their second argument when the two are equal
    (``0.0`` and ``-0.0``), so folding rows in one by one gives the bits that reducing each
    node's rows first and then updating its box gives.
    """
    np.minimum.at(np.reshape(lo, -1, copy=False), cells, values)
    np.maximum.at(np.reshape(hi, -1, copy=False), cells, values)


def _row_index(n: int, n_trees: int) -> np.ndarray:
    """Row of every (tree, row) pair in tree-major order: ``0..n-1`` repeated per tree."""
    return np.arange(n * n_trees) % n if n else np.zeros(0, dtype=np.int64)
