"""Online Isolation Forest (Leveni et al., ICML 2024) over flat node arrays.

Each tree is a multi-resolution histogram that grows and shrinks with the stream: a leaf at
depth ``k`` splits once it has counted ``max_leaf_samples * 2**k`` points (and the tree is
still shallower than ``log4(n / max_leaf_samples)``), and an internal node whose count falls
below that threshold, because the sliding window forgot the points that made it, collapses
back into a leaf. Split points are drawn uniformly inside the leaf's bounding box, which is
why it works on an unbounded stream without keeping per-leaf samples.

All trees of the forest live in one set of flat node arrays (a block of a shared
:class:`~churnguard.scoring.detectors.pool.NodePool`); routing, counting, box widening,
ripeness, the split build with its random draws and collapses run as compiled loops over
them (:mod:`~churnguard.scoring.detectors._kernels`, numba), and the formulas with ``log``
and ``exp2`` (path lengths, scores, range novelty) in numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Self

import numpy as np

from churnguard.errors import ModelError
from churnguard.scoring.detectors._util import as_matrix, pack, rng_from_state, rng_state, unpack
from churnguard.scoring.detectors.base import Detector
from churnguard.scoring.detectors.pool import NODE_FIELDS, NodePool

BOX_TRIM = 0.005  # share of the window's highest rows the novelty bar leaves out
_LOG4 = math.log(4.0)  # branching factor 2: path lengths are log base 2 * branching
_NO_BASE = np.zeros(1, dtype=np.int64)  # a forest routed alone: its own arrays, block at 0
# the node arrays split_leaves takes, in its order
_SPLIT_FIELDS = ("feature_", "threshold_", "left_", "right_", "count_", "depth_", "lo_", "hi_")
_MAX_FORESTS = 1 << 20  # the kernels key (node, forest) pairs as node * 2**20 + forest


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

    @classmethod
    def prepare(cls) -> None:
        """Compile the kernels, or load them from the cache (:func:`warm_kernels`)."""
        warm_kernels()

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
        depth, ratio = self._leaf_stats(np.ascontiguousarray(X))
        depths = depth + _kernels().log(ratio) / _LOG4  # _path_length of the leaves' counts
        mean_depth = depths.reshape(self.n_trees, len(X)).mean(axis=0)
        isolation = _kernels().exp2(-mean_depth / norm)
        if not self.range_novelty:
            return isolation
        # Range novelty: isolation trees can only split on features that vary in the data,
        # so a value outside everything the window holds (a flag always 0 for this baseline)
        # is invisible to them. Each unit by which a row rises above the window's (trimmed)
        # top halves the row's "normality" 1 - isolation.
        excess = (X - self._robust_top()).clip(min=0.0)
        return 1.0 - (1.0 - isolation) * _kernels().exp2(-excess.sum(axis=1))

    def _robust_top(self) -> np.ndarray:
        """Per-feature top of the window, ignoring its ``BOX_TRIM`` most extreme rows.

        A value only one or two remembered rows ever had is still novel: one odd row in the
        window must not raise the bar for everything after it.
        """
        n = self.n_window_
        k = min(n - 1, math.ceil(BOX_TRIM * n))
        return _kernels().window_top(self.window_, n, k, *self.top_kept_)

    # -- tree mechanics -------------------------------------------------------------------

    def _path_length(self, n: Any) -> Any:
        """Expected extra depth below a node holding ``n`` points (0 under ``eta`` points)."""
        n = np.asarray(n, dtype=float)
        eta = float(self.max_leaf_samples)
        out = _kernels().log(np.maximum(n, eta) / eta) / _LOG4
        return float(out) if out.ndim == 0 else out

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
        # the range-novelty top per feature, kept with the counts of the window's values
        # above and equal to it (the kernels' window_top and push_window); -1: none yet
        self.top_kept_ = (np.zeros(d), np.full(d, -1, dtype=np.int64), np.zeros(d, np.int64))

    def _leaf_stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth and ``max(count, eta) / eta`` of the leaf of every (tree, row) pair,
        tree-major (the kernel's ``leaf_stats``)."""
        roots = self.roots_.astype(np.int64).reshape(-1, 1)
        arrays = (self.feature_, self.threshold_, self.left_, self.right_, self.count_)
        eta = np.array([float(self.max_leaf_samples)])
        owner = np.zeros(len(X), np.int64)
        return _kernels().leaf_stats(*arrays, self.depth_, X, roots, owner, _NO_BASE, eta)

    def _learn_chunk(self, X: np.ndarray) -> None:
        learn_chunks([self], [X])

    def _push_window(self, X: np.ndarray) -> np.ndarray:
        """Append rows to the ring buffer; returns the oldest rows they displaced."""
        size, n, window = self.window_size, self.n_window_, self.window_
        capacity = window.shape[1]
        if capacity < n + len(X) and capacity < size:  # filling, not wrapped: head is 0
            need = min(size, n + len(X))
            window = np.zeros((X.shape[1], min(size, max(need, 2 * capacity))))
            window[:, :n] = self.window_[:, :n]
            self.window_ = window
        old, self.window_head_ = _kernels().push_window(
            window, self.window_head_, n, np.ascontiguousarray(X), size, *self.top_kept_
        )
        return old

    def _split_leaves(self, leaves: np.ndarray, limit: float) -> None:
        """Grow a subtree at each leaf (in order) from ``count`` points drawn uniformly in
        its box (the kernel's ``split_leaves``).

        The block is grown where the reference build would have grown it, when a node is
        allocated past its end: the kernel stops there, the state saved before it is put
        back, and it runs again in the doubled block, so capacities (and the pool's
        layout) follow the same steps.
        """
        kernels = _kernels()
        saved, may_fail = None, False
        while True:
            free = np.array(self.free_, dtype=np.int64)
            status, n_nodes, n_free = kernels.split_leaves(
                *(getattr(self, name) for name in _SPLIT_FIELDS),
                self.rng_,
                leaves,
                float(limit),
                int(self.max_leaf_samples),
                free,
                int(self.n_nodes_),
                may_fail,
            )
            if status == kernels.DONE:
                self.n_nodes_ = int(n_nodes)
                del self.free_[n_free:]
                return
            if status == kernels.FULL:
                self._restore(*saved)
                self._grow()
            saved, may_fail = self._save(np.concatenate((leaves, free))), True

    def _save(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
        """What a split may change, to put back if it stops on a full block: the rows of
        the leaves it grows and of the free slots it may take, and the random state. The
        slots past ``n_nodes_`` it may take were never used: they hold the free fill."""
        nodes = {name: getattr(self, name)[rows] for name in NODE_FIELDS}
        return rows, nodes, self.rng_.bit_generator.state

    def _restore(self, rows: np.ndarray, nodes: dict[str, np.ndarray], rng: dict[str, Any]) -> None:
        """Put back what :meth:`_save` kept, and the free fill past ``n_nodes_``."""
        for name, (_, free) in NODE_FIELDS.items():
            values = getattr(self, name)
            values[rows] = nodes[name]
            values[self.n_nodes_ :] = free
        self.rng_.bit_generator.state = rng

    def _collapse_starving(self, nodes: np.ndarray) -> None:
        """Collapse, shallowest first, the internal nodes among ``nodes`` (sorted node ids)
        whose count fell under their split threshold; their slots go to the free list."""
        arrays = (self.feature_, self.left_, self.right_, self.count_, self.depth_)
        released = _kernels().collapse(
            *arrays, self.lo_, self.hi_, nodes, int(self.max_leaf_samples)
        )
        self.free_.extend(released.tolist())

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


def learn_chunks(forests: Sequence[OnlineIsolationForest], Xs: Sequence[np.ndarray]) -> None:
    """One chunk of rows per forest (all in one :class:`NodePool`, with one tree count),
    learned as each forest's own chunk: rows into the windows, counted into every node they
    visit, leaf boxes widened, ripe leaves split (forest by forest, in node order), then the
    rows leaving the windows unlearned and starving nodes collapsed."""
    leaving: list[int] = []
    olds: list[np.ndarray] = []
    for i, (f, X) in enumerate(zip(forests, Xs, strict=True)):
        old = f._push_window(X)
        f.n_window_ += len(X)
        f.n_seen_ += len(X)
        if len(old):
            leaving.append(i)
            olds.append(old)
    eta = _etas(forests)
    limits = path_lengths(forests, eta)
    X, owner = _stacked(Xs)
    pool = forests[0].pool_
    bases, roots = _placement(forests)
    arrays = (pool.feature_, pool.threshold_, pool.left_, pool.right_, pool.count_, pool.depth_)
    ripe, ripe_of = _kernels().learn_route(
        *arrays, pool.lo_, pool.hi_, X, roots, owner, bases, eta, limits
    )
    if len(ripe):  # only forests with ripe leaves split; a split may move blocks
        local = ripe - bases[ripe_of]  # before any split moves a block
        for i in np.unique(ripe_of).tolist():
            forests[i]._split_leaves(local[ripe_of == i], limits[i])
    if leaving:
        placement = None if len(ripe) else (bases[leaving], roots[:, leaving], eta[leaving])
        _forget([forests[i] for i in leaving], olds, placement)


def _forget(
    forests: Sequence[OnlineIsolationForest],
    olds: Sequence[np.ndarray],
    placement: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Unlearn each forest's rows leaving its window; its starving nodes collapse.

    ``placement`` (bases, roots, etas) is the learning pass's where no block moved since."""
    X, owner = _stacked(olds)
    pool = forests[0].pool_
    if placement is None:
        bases, roots = _placement(forests)
        eta = _etas(forests)
    else:
        bases, roots, eta = placement
        roots = np.ascontiguousarray(roots)
    arrays = (pool.feature_, pool.threshold_, pool.left_, pool.right_, pool.count_, pool.depth_)
    starving, starving_of = _kernels().forget_route(*arrays, X, roots, owner, bases, eta)
    for f, old in zip(forests, olds, strict=True):
        f.n_window_ -= len(old)
    if len(starving):
        for i in np.unique(starving_of).tolist():
            forests[i]._collapse_starving(starving[starving_of == i] - bases[i])


def path_lengths(
    forests: Sequence[OnlineIsolationForest], eta: np.ndarray | None = None
) -> np.ndarray:
    """Each forest's ``_path_length`` of its window size, in one call (the same operations,
    element by element): the score normaliser, and the depth limit of its splits.
    ``eta`` is their ``max_leaf_samples`` where the caller has them (integers or floats:
    numpy computes with the same float64 operands)."""
    n = np.array([float(f.n_window_) for f in forests])
    if eta is None:
        eta = _etas(forests)
    return _kernels().log(np.maximum(n, eta) / eta) / _LOG4


def _etas(forests: Sequence[OnlineIsolationForest]) -> np.ndarray:
    return np.array([f.max_leaf_samples for f in forests], dtype=np.int64)


def _stacked(
    Xs: Sequence[np.ndarray], counts: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of all forests, stacked, and the forest (index) of every row; ``counts``
    are the rows of each where the caller has them."""
    if counts is None:
        counts = [len(X) for X in Xs]
    owner = np.arange(len(Xs), dtype=np.int64).repeat(counts)
    return np.ascontiguousarray(np.concatenate(Xs), dtype=float), owner


def _placement(forests: Sequence[OnlineIsolationForest]) -> tuple[np.ndarray, np.ndarray]:
    """Each forest's block start in its pool, and its roots as pool ids, (tree, forest)."""
    if len(forests) >= _MAX_FORESTS:
        raise ValueError(f"at most {_MAX_FORESTS - 1} forests in one pass")
    pool = forests[0].pool_
    bases = np.array([pool.base(f) for f in forests], dtype=np.int64)
    roots = np.array([f.roots_ for f in forests], dtype=np.int64)
    roots += bases[:, None]
    return bases, np.ascontiguousarray(roots.T)


def warm_kernels() -> None:
    """Compile (or load from the cache) every kernel with the types learning and scoring
    use: a forest that splits, slides, collapses and scores. The Dockerfile runs it at
    image build, so a container starts from the cache instead of compiling (seconds)."""
    forest = OnlineIsolationForest(n_trees=2, max_leaf_samples=1, window_size=8, learn_chunk=8)
    forest.learn_many(np.arange(16.0).reshape(8, 2))  # splits
    forest.learn_many(np.full((8, 2), -1.0))  # forgets the first rows: their nodes collapse
    forest.score_many(np.ones((1, 2)))


def _kernels() -> ModuleType:
    """The compiled loops, imported on first use: numba costs ~0.3 s to import, and only a
    forest that learns or scores needs it. Kept after that: thousands of calls a day."""
    kernels = _LOADED.get("kernels")
    if kernels is None:
        from churnguard.scoring.detectors import _kernels as kernels

        _LOADED["kernels"] = kernels
    return kernels


_LOADED: dict[str, ModuleType] = {}
