"""The compiled forest kernels against the numpy forest they replaced, bit for bit.

``ReferenceForest`` is the Online Isolation Forest's learning and routing as numpy and
Python code (the implementation before ``scoring/detectors/_kernels.py``, kept here only as
the yardstick): a recursive split build with its random draws, ``np.add.at`` counts,
``np.minimum.at`` boxes, collapses node by node. Learning the same rows must leave the same
learned bytes (nodes, boxes to the sign of zero, free list, window, random state) and
score the same bits.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.scoring.detectors.oif import BOX_TRIM, OnlineIsolationForest


class ReferenceForest(OnlineIsolationForest):
    """The numpy/Python forest mechanics (learning, routing), the yardstick of the kernels."""

    def _route(self, X: np.ndarray) -> np.ndarray:
        return self._walk(X, record=False)[0]

    def _leaf_stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        leaves = self._route(X)
        eta = float(self.max_leaf_samples)
        return self.depth_[leaves].astype(float), np.maximum(self.count_[leaves], eta) / eta

    def _walk(self, X: np.ndarray, *, record: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        node = np.repeat(self.roots_, len(X)).astype(np.int64)
        row = np.arange(len(X) * self.n_trees) % len(X) if len(X) else np.zeros(0, np.int64)
        path = [node.copy()] if record else []
        active = np.flatnonzero(self.feature_[node] >= 0)
        while active.size:
            here = node[active]
            go_left = X[row[active], self.feature_[here]] < self.threshold_[here]
            nxt = np.where(go_left, self.left_[here], self.right_[here])
            node[active] = nxt
            if record:
                path.append(nxt)
            active = active[self.feature_[nxt] >= 0]
        return node, path

    def _push_window(self, X: np.ndarray) -> np.ndarray:
        """The ring-buffer push in numpy (before the ``push_window`` kernel)."""
        size = self.window_size
        n_old = max(0, self.n_window_ + len(X) - size)
        need = min(size, self.n_window_ + len(X))
        capacity = self.window_.shape[1]
        if capacity < need:
            grown = np.zeros((X.shape[1], min(size, max(need, 2 * capacity))))
            grown[:, : self.n_window_] = self.window_[:, : self.n_window_]
            self.window_ = grown
        if n_old == 0:
            self.window_[:, self.n_window_ : need] = X.T
            return self.window_[:, :0].T
        old = self.window_[:, (self.window_head_ + np.arange(n_old)) % size].T
        self.window_[:, (self.window_head_ + self.n_window_ + np.arange(len(X))) % size] = X.T
        self.window_head_ = (self.window_head_ + n_old) % size
        return old

    def _robust_top(self) -> np.ndarray:
        """The range-novelty top by ``np.partition`` (before the ``window_top`` kernel)."""
        n = self.n_window_
        k = min(n - 1, math.ceil(BOX_TRIM * n))
        return np.partition(self.window_[:, :n], -k - 1, axis=1)[:, -k - 1]

    def _threshold(self, depth: Any) -> Any:
        return self.max_leaf_samples * np.exp2(depth)

    def _learn_chunk(self, X: np.ndarray) -> None:
        old = self._push_window(X)
        leaves, path = self._walk(X, record=True)
        np.add.at(self.count_, np.concatenate(path), 1)
        d = X.shape[1]
        cells = (leaves[:, None] * d + np.arange(d)).ravel()
        rows = X[np.arange(len(X) * self.n_trees) % len(X)].ravel()
        np.minimum.at(np.reshape(self.lo_, -1, copy=False), cells, rows)
        np.maximum.at(np.reshape(self.hi_, -1, copy=False), cells, rows)
        self.n_window_ += len(X)
        self.n_seen_ += len(X)
        limit = self._path_length(float(self.n_window_))
        touched = np.unique(leaves)
        ripe = touched[
            (self.count_[touched] >= self._threshold(self.depth_[touched]))
            & (self.depth_[touched] < limit)
        ]
        for leaf in ripe.tolist():
            lo, hi = self.lo_[leaf].copy(), self.hi_[leaf].copy()
            u = self.rng_.random((int(self.count_[leaf]), len(lo)))
            sample = (1.0 - u) * lo + u * hi
            self._build(leaf, sample, int(self.depth_[leaf]), limit)
        if len(old):
            _, path = self._walk(old, record=True)
            visited = np.concatenate(path)
            np.subtract.at(self.count_, visited, 1)
            np.maximum(self.count_, 0, out=self.count_)
            self.n_window_ -= len(old)
            visited = np.unique(visited)
            internal = visited[self.feature_[visited] >= 0]
            starving = internal[self.count_[internal] < self._threshold(self.depth_[internal])]
            for node in starving[np.argsort(self.depth_[starving], kind="stable")].tolist():
                if self.feature_[node] >= 0:
                    self._collapse(node)

    def _build(self, node: int, data: np.ndarray, depth: int, limit: float) -> None:
        n = len(data)
        self.count_[node], self.depth_[node] = n, depth
        if n:
            lo, hi = np.minimum.reduce(data), np.maximum.reduce(data)
        else:
            lo, hi = self.lo_[node], self.hi_[node]
        splittable = np.zeros(0, np.int64)
        if n >= self.max_leaf_samples * 2**depth and depth < limit:
            splittable = np.flatnonzero(hi > lo)
        if splittable.size == 0:
            if n:
                self.lo_[node], self.hi_[node] = lo, hi
            return
        feature = int(splittable[self.rng_.integers(splittable.size)])
        u = self.rng_.random()
        threshold = float(lo[feature]) * (1.0 - u) + float(hi[feature]) * u
        left, right = self._alloc(), self._alloc()
        self.feature_[node], self.threshold_[node] = feature, threshold
        self.left_[node], self.right_[node] = left, right
        self.lo_[node], self.hi_[node] = np.inf, -np.inf
        goes_left = data[:, feature] < threshold
        self._build(left, data[goes_left], depth + 1, limit)
        self._build(right, data[~goes_left], depth + 1, limit)

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
            self.feature_[child], self.left_[child], self.right_[child] = -1, -1, -1
            self.count_[child], self.depth_[child] = 0, 0
            self.lo_[child], self.hi_[child] = np.inf, -np.inf
            self.free_.append(child)
        self.feature_[node], self.left_[node], self.right_[node] = -1, -1, -1
        self.lo_[node], self.hi_[node] = lo, hi

    def _alloc(self) -> int:
        if self.free_:
            return self.free_.pop()
        if self.n_nodes_ == len(self.feature_):
            self._grow()
        self.n_nodes_ += 1
        return self.n_nodes_ - 1


# values with signed zeros, ties and constant stretches: where min/max order shows
VALUES = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e300, -1e300, 3.0])


@st.composite
def streams(draw: st.DrawFn) -> tuple[dict[str, int], list[np.ndarray]]:
    d = draw(st.integers(1, 5))
    params = {
        "n_trees": draw(st.integers(1, 6)),
        "max_leaf_samples": draw(st.integers(1, 8)),
        "window_size": draw(st.integers(4, 200)),
        "learn_chunk": draw(st.integers(1, 64)),
        "seed": draw(st.integers(0, 2**16)),
    }
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(0, 150))
        kind = draw(st.sampled_from(["normal", "values", "mixed"]))
        X = rng.normal(draw(st.floats(-3, 3)), 1.0, size=(n, d))
        if kind != "normal":
            picked = np.array(draw(st.lists(VALUES, min_size=1, max_size=4)))
            mask = rng.random((n, d)) < (1.0 if kind == "values" else 0.5)
            X[mask] = rng.choice(picked, size=int(mask.sum()))
        batches.append(X)
    return params, batches


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=streams())
def test_kernels_learn_and_score_the_bits_of_the_numpy_forest(
    case: tuple[dict[str, int], list[np.ndarray]],
) -> None:
    """Same counts, nodes, boxes, free list, window and random state after every batch,
    and the same score bits, on streams that split, slide, collapse and grow the block."""
    params, batches = case
    compiled, reference = OnlineIsolationForest(**params), ReferenceForest(**params)
    for X in batches:
        compiled.learn_many(X)
        reference.learn_many(X)
        assert compiled.to_bytes() == reference.to_bytes()
        if len(X) and hasattr(compiled, "roots_"):
            assert len(compiled.feature_) == len(reference.feature_)  # grown at the same step
            assert compiled.score_many(X).tobytes() == reference.score_many(X).tobytes()


def test_a_block_too_small_for_the_splits_grows_as_the_reference_grows_it() -> None:
    """Big leaves split in a small block: the kernel stops, the saved state is put back, the
    block doubles and it runs again, several times, ending where the reference ends."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2000, 3))
    params = {"n_trees": 2, "max_leaf_samples": 1, "window_size": 2000, "learn_chunk": 500}
    compiled, reference = OnlineIsolationForest(**params), ReferenceForest(**params)
    compiled.learn_many(X)
    reference.learn_many(X)
    assert len(compiled.feature_) >= 16 * 4 * 2  # four doublings or more from 2 trees * 4
    assert compiled.to_bytes() == reference.to_bytes()
    assert len(compiled.feature_) == len(reference.feature_)


def test_a_split_that_fills_the_block_after_taking_free_slots_puts_them_back() -> None:
    """A window of zeros collapses the trees (their slots go to the free list); wide rows
    then split past the block's end: the split took the free slots first, and what is put
    back before the block doubles (those slots, the leaves, the never-used tail) leaves the
    reference's bytes."""
    rng = np.random.default_rng(5)
    params = {"n_trees": 2, "max_leaf_samples": 1, "window_size": 200, "learn_chunk": 200}
    compiled, reference = OnlineIsolationForest(**params), ReferenceForest(**params)
    for X in (rng.normal(size=(200, 3)), np.zeros((200, 3))):
        compiled.learn_many(X)
        reference.learn_many(X)
    assert compiled.free_ and compiled.to_bytes() == reference.to_bytes()
    capacity = len(compiled.feature_)
    X = rng.normal(size=(200, 3)) * 50
    compiled.learn_many(X)
    reference.learn_many(X)
    assert len(compiled.feature_) > capacity  # the split stopped on the full block
    assert compiled.to_bytes() == reference.to_bytes()
    assert len(compiled.feature_) == len(reference.feature_)


def test_without_a_writable_cache_the_kernels_compile_in_memory() -> None:
    """A read-only image without NUMBA_CACHE_DIR: numba finds no cache directory, and the
    kernels still import and run (compiled in memory), with one warning saying why."""
    code = (
        "import numba.core.caching as c\n"
        "c.CacheImpl._locator_classes = []  # what numba sees where nothing is writable\n"
        "import numpy as np\n"
        "from churnguard.scoring.detectors import _kernels\n"
        "leaf, z = np.full(1, -1, np.int32), np.zeros(1, np.int64)  # one tree, one leaf\n"
        "rows = np.ones((2, 3))\n"
        "got = _kernels.route(leaf, np.zeros(1), leaf, leaf, rows, z[None], z[[0, 0]], z)\n"
        "print(','.join(sorted(_kernels.IN_MEMORY)), ','.join(map(str, got)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    in_memory, leaves = run.stdout.split()
    assert {"route", "learn_route", "forget_route", "split_leaves", "collapse"} <= set(
        in_memory.split(",")
    )
    assert leaves == "0,0"
    assert run.stderr.count("numba cache unusable") == 1
    assert "NUMBA_CACHE_DIR" in run.stderr


@settings(max_examples=40, deadline=None)
@given(boxes=st.lists(st.tuples(VALUES, VALUES), min_size=6, max_size=6))
def test_a_collapse_folds_its_leaves_boxes_as_np_minimum_does(
    boxes: list[tuple[float, float]],
) -> None:
    """A starving root over a two-level subtree folds its three leaves' boxes into its own
    with np.minimum/np.maximum's ties (the second of 0.0 and -0.0), in the reference order,
    and frees their slots in that order."""
    forests = []
    for cls in (OnlineIsolationForest, ReferenceForest):
        f = cls(n_trees=2, max_leaf_samples=4)
        f._init_state(2)
        # tree 0: 0 -> (2, 3), 3 -> (4, 5); leaves 2, 4, 5 hold the drawn boxes; tree 1 is
        # the leaf 1; every node nearly empty
        for node, (lt, rt) in {0: (2, 3), 3: (4, 5)}.items():
            f.feature_[node], f.left_[node], f.right_[node] = 0, lt, rt
        f.depth_[:6] = [0, 0, 1, 1, 2, 2]
        f.count_[:6] = 1
        for i, leaf in enumerate((2, 4, 5)):
            f.lo_[leaf] = [min(boxes[2 * i]), min(boxes[2 * i + 1])]
            f.hi_[leaf] = [max(boxes[2 * i]), max(boxes[2 * i + 1])]
        f.n_nodes_ = 6
        forests.append(f)
    compiled, reference = forests
    compiled._collapse_starving(np.arange(6))
    reference._collapse(0)
    assert compiled.free_ == reference.free_ == [3, 5, 4, 2]
    assert compiled.to_bytes() == reference.to_bytes()


def test_warming_compiles_each_kernel_once_with_the_types_the_scorer_uses() -> None:
    """What the Dockerfile warms is what serving runs: after ``warm_kernels`` a grouped tick
    (several forests, one pool) compiles nothing new."""
    from churnguard.scoring.detectors import _kernels
    from churnguard.scoring.detectors.grouped import learn_groups, score_groups
    from churnguard.scoring.detectors.oif import warm_kernels
    from churnguard.scoring.detectors.pool import NodePool

    warm_kernels()
    kernels = [_kernels.leaf_stats, _kernels.learn_route, _kernels.forget_route]  # route: inside
    kernels += [_kernels.split_leaves, _kernels.collapse, _kernels.window_top]
    kernels += [_kernels.push_window]
    assert [len(k.signatures) for k in kernels] == [1] * 7
    rng = np.random.default_rng(2)
    forests = [OnlineIsolationForest(n_trees=4, max_leaf_samples=2, window_size=32) for _ in "ab"]
    pool = NodePool(3)
    for f in forests:
        pool.adopt(f)
    for step in range(30):
        rows = [rng.normal(step % 3, 1.0, size=(5, 3)) for _ in forests]
        score_groups(forests, rows)
        learn_groups(forests, [r.astype(np.float32) for r in rows])
    assert [len(k.signatures) for k in kernels] == [1] * 7


@settings(max_examples=80, deadline=None)
@given(
    window=st.lists(st.lists(VALUES, min_size=1, max_size=60), min_size=1, max_size=4).filter(
        lambda rows: len({len(r) for r in rows}) == 1
    ),
    extra=st.integers(0, 5),
    data=st.data(),
)
def test_the_window_top_is_the_partitions_value(
    window: list[list[float]], extra: int, data: st.DataObject
) -> None:
    """The range-novelty top (k + 1-th largest per feature of the window's first n rows,
    slots after n ignored) equals np.partition's, ties and duplicates included."""
    from churnguard.scoring.detectors import _kernels

    rows = np.array(window)
    stored = np.hstack([rows, np.full((len(rows), extra), 9e300)])  # unused ring slots
    n = rows.shape[1]
    k = data.draw(st.integers(0, n - 1))
    expected = np.partition(rows, -k - 1, axis=1)[:, -k - 1]
    d = len(rows)
    kept = (np.zeros(d), np.full(d, -1, dtype=np.int64), np.zeros(d, np.int64))  # none yet
    assert np.array_equal(_kernels.window_top(stored, n, k, *kept), expected)
    assert np.array_equal(_kernels.window_top(stored, n, k, *kept), expected)  # as kept


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(1, 12),
    d=st.integers(1, 3),
    chunks=st.lists(st.integers(1, 12), min_size=1, max_size=12),
)
def test_the_window_push_writes_and_returns_the_rows_of_the_numpy_ring(
    size: int, d: int, chunks: list[int]
) -> None:
    """Pushing chunks (at most a window each) into the ring, filling, growing and wrapping:
    the same buffer, head and displaced rows, bit for bit, as the numpy push; and the
    range-novelty top, kept across pushes, is np.partition's (ties, signed zeros)."""
    rng = np.random.default_rng(size * 100 + d)
    forests = [cls(window_size=size) for cls in (OnlineIsolationForest, ReferenceForest)]
    for f in forests:
        f._init_state(d)
    for n in chunks:
        X = rng.normal(size=(min(n, size), d))
        X[rng.random(X.shape) < 0.2] = -0.0
        X[rng.random(X.shape) < 0.2] = 0.0
        X[rng.random(X.shape) < 0.2] = 1.0
        olds = []
        for f in forests:
            old = f._push_window(X)
            f.n_window_ += len(X) - len(old)
            olds.append(np.array(old))
        (compiled, reference), (got, expected) = forests, olds
        assert got.tobytes() == expected.tobytes() and got.shape == expected.shape
        assert compiled.window_.tobytes() == reference.window_.tobytes()
        assert compiled.window_.shape == reference.window_.shape
        assert compiled.window_head_ == reference.window_head_
        if rng.random() < 0.6:  # asked now and then: counts kept across several pushes
            assert np.array_equal(compiled._robust_top(), reference._robust_top())


@settings(max_examples=80, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 40)), max_size=300),
)
def test_ripe_and_starving_pairs_come_out_as_np_unique_sorts_them(
    pairs: list[tuple[int, int]],
) -> None:
    """The (node, forest) pairs the routing kernels keep, duplicates and any order in: the
    distinct pairs in node order, as ``np.unique`` of their keys gives them."""
    from churnguard.scoring.detectors import _kernels

    keys = np.array([node * _kernels.KEY + f for node, f in pairs], dtype=np.int64)
    nodes, forests = _kernels._nodes_and_forests(keys)
    expected = np.unique(keys)
    assert nodes.dtype == forests.dtype == np.int64
    assert np.array_equal(nodes, expected // _kernels.KEY)
    assert np.array_equal(forests, expected % _kernels.KEY)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 600),
    depth=st.integers(0, 6),
    eta=st.integers(1, 8),
    limit=st.floats(0.5, 10.0),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_a_split_takes_at_most_the_slots_its_bound_allows(
    n: int, depth: int, eta: int, limit: float, d: int, seed: int
) -> None:
    """``_most_slots`` is what ``split_leaves`` checks the block against before it starts
    without a way back: a build in a block with room for anything never takes more."""
    from churnguard.scoring.detectors import _kernels

    size = 4 * n + 4
    feature, left, right = (np.full(size, -1, np.int32) for _ in range(3))
    threshold, count, level = np.zeros(size), np.zeros(size, np.int64), np.zeros(size, np.int32)
    lo, hi = np.full((size, d), np.inf), np.full((size, d), -np.inf)
    count[0], level[0], lo[0], hi[0] = n, depth, -1.0, 1.0
    rng = np.random.default_rng(seed)
    status, used, _ = _kernels.split_leaves(
        feature, threshold, left, right, count, level, lo, hi, rng,
        np.zeros(1, np.int64), limit, eta, np.zeros(0, np.int64), 1, True,
    )  # fmt: skip
    assert status == _kernels.DONE
    assert used - 1 <= _kernels._most_slots(n, depth, eta, limit)
