"""The online forests' per-node loops, compiled with numba.

Learning a row costs a routing walk through every tree, a count update per node visited, a
box widening at the leaf, a ripeness check and about one split: a recursive build with its
random draws. In numpy each step is a call of a few microseconds on a handful of values,
and that overhead, not arithmetic, was the scorer's budget (docs/benchmarks.md, speed2 to
speed7). Here the same steps run as compiled loops over the forests' flat node arrays
(:mod:`~churnguard.scoring.detectors.pool`), in the same order and with the same draws
from the forest's own ``np.random.Generator`` (numba shares its state with the Python
object and draws the same values), so learned state and scores keep their bits.

Only comparisons, integer counts, min/max and the convex combination
``lo * (1 - u) + hi * u`` run here: the callers' ``log``/``exp2`` are the C library's, as
ufuncs (:mod:`churnguard.compiled`), never numpy's SIMD loops, whose bits vary by CPU.
``np.minimum``/``np.maximum`` return their second argument on a tie (``0.0`` and
``-0.0``), and so does every min/max here.

Compiled on first use and cached on disk, or in memory where no cache directory is
writable (:func:`churnguard.compiled.compiled`).
"""

from __future__ import annotations

import numpy as np

from churnguard import compiled as _compiled
from churnguard.compiled import IN_MEMORY as IN_MEMORY  # kernels without the disk cache
from churnguard.compiled import compiled

# the C library's exp2 and log, for the callers: the compiled loops as plain numpy ufuncs
# (float64 in, the same loop), without numba's dispatch of ~0.6 us a call
exp2 = _compiled.exp2.ufunc
log = _compiled.log.ufunc

KEY = 1 << 20  # (node, forest) as one sortable int: node * KEY + forest (forest < KEY)
MAX_DEPTH = 64  # trees stop at log4(window / eta) < 32 levels
# split_leaves' status: done, not started (the block may be too small: save, then retry
# with may_fail), or stopped on a full block (restore what was saved, grow, retry)
DONE, SHORT, FULL = 0, 1, 2


@compiled
def _sorted_unique(a):
    """``np.unique`` of int64 keys by a shell sort: a few hundred keys a call, and it
    compiles in a fraction of numba's general sort."""
    a = a.copy()
    gap = len(a) // 2
    while gap:
        for i in range(gap, len(a)):
            v, k = a[i], i
            while k >= gap and a[k - gap] > v:
                a[k] = a[k - gap]
                k -= gap
            a[k] = v
        gap //= 2
    m = 0
    for i in range(len(a)):
        if i == 0 or a[i] != a[m - 1]:
            a[m] = a[i]
            m += 1
    return a[:m]


@compiled
def _nodes_and_forests(keys):
    """The distinct (node, forest) keys, sorted, as node ids and forest indices."""
    keys = _sorted_unique(keys)
    return keys // KEY, keys % KEY


@compiled
def _threshold(eta, k):
    """``eta * 2.0 ** k``, the split threshold at depth ``k`` (< 64): the power of two as
    a shift, exact as the power is, without a call to ``pow``."""
    return eta * float(1 << k)


@compiled
def _child(feature, threshold, left, right, X, r, node, base):
    """The child of internal ``node`` that row ``r`` goes to (links local to its block)."""
    if X[r, feature[node]] < threshold[node]:
        return left[node] + base
    return right[node] + base


@compiled
def route(feature, threshold, left, right, X, roots, owner, bases):
    """Leaf (pool node) of every (tree, row) pair, tree-major: row ``r`` descends the
    trees of forest ``owner[r]``, whose roots are ``roots[:, owner[r]]`` (pool ids) and
    whose child links are local to its block at ``bases[owner[r]]``."""
    n_trees, n = roots.shape[0], X.shape[0]
    leaves = np.empty(n_trees * n, dtype=np.int64)
    for t in range(n_trees):
        for r in range(n):
            f = owner[r]
            node = roots[t, f]
            while feature[node] >= 0:
                node = _child(feature, threshold, left, right, X, r, node, bases[f])
            leaves[t * n + r] = node
    return leaves


@compiled
def leaf_stats(feature, threshold, left, right, count, depth, X, roots, owner, bases, eta):
    """:func:`route`'s leaves as what scoring reads of them: every (tree, row) pair's leaf
    depth and ``max(count, eta) / eta`` with its forest's ``eta`` (float64, exact: one
    correctly rounded division), for numpy's ``log`` of the path length."""
    leaves = route(feature, threshold, left, right, X, roots, owner, bases)
    n = X.shape[0]
    depths, ratios = np.empty(len(leaves)), np.empty(len(leaves))
    for p in range(len(leaves)):
        node, e = leaves[p], eta[owner[p % n]]
        depths[p] = depth[node]
        ratios[p] = max(float(count[node]), e) / e
    return depths, ratios


@compiled
def learn_route(
    feature, threshold, left, right, count, depth, lo, hi, X, roots, owner, bases, eta, limits
):
    """Count every row into every node it visits and widen its leaves' boxes by it, pair by
    pair tree-major (a box sees its rows in their order); returns the leaves ready to split
    (count >= ``eta * 2**depth`` and depth < the forest's ``limits``), sorted, and the
    forest of each."""
    n_trees, n, d = roots.shape[0], X.shape[0], X.shape[1]
    touched = np.empty(n_trees * n, dtype=np.int64)
    for t in range(n_trees):
        for r in range(n):
            f = owner[r]
            node = roots[t, f]
            count[node] += 1
            while feature[node] >= 0:
                node = _child(feature, threshold, left, right, X, r, node, bases[f])
                count[node] += 1
            for j in range(d):  # selects, not branches: min/max instructions, same ties
                v, low, high = X[r, j], lo[node, j], hi[node, j]
                lo[node, j] = low if low < v else v
                hi[node, j] = high if high > v else v
            touched[t * n + r] = node * KEY + f  # sorts as the nodes do
    k = 0  # the counts are final: keep the ripe pairs, then sort those few
    for key in touched:
        node, f = key // KEY, key % KEY
        if count[node] >= _threshold(eta[f], depth[node]) and depth[node] < limits[f]:
            touched[k] = key
            k += 1
    return _nodes_and_forests(touched[:k])


@compiled
def forget_route(feature, threshold, left, right, count, depth, X, roots, owner, bases, eta):
    """Uncount rows leaving the windows from every node they visit (clipped at 0: split-time
    counts were estimates); returns the visited internal nodes now under their split
    threshold ``eta * 2**depth`` ("starving"), sorted, and the forest of each."""
    n_trees, n = roots.shape[0], X.shape[0]
    visited = np.empty(n_trees * n * 8, dtype=np.int64)
    k = 0
    for t in range(n_trees):
        for r in range(n):
            f = owner[r]
            node = roots[t, f]
            while True:
                count[node] -= 1
                if k == len(visited):
                    visited = np.concatenate((visited, np.empty(len(visited), np.int64)))
                visited[k] = node * KEY + f
                k += 1
                if feature[node] < 0:
                    break
                node = _child(feature, threshold, left, right, X, r, node, bases[f])
    m = 0  # the counts are final: clip them, keep the starving pairs, then sort those few
    for key in visited[:k]:
        node, f = key // KEY, key % KEY
        if count[node] < 0:
            count[node] = 0
        if feature[node] >= 0 and count[node] < _threshold(eta[f], depth[node]):
            visited[m] = key
            m += 1
    return _nodes_and_forests(visited[:m])


@compiled
def _most_slots(n, k, eta, limit):
    """The most slots the subtree grown at a leaf of ``n`` points at depth ``k`` can take:
    at each depth ``k' < limit`` the nodes that split hold disjoint sets of at least
    ``eta * 2**k'`` of the points and are children of the splits one level up, so at most
    ``min(2 * splits above, n // (eta 2**k'))`` of them split, taking two slots each.
    (The bound ``4 n / (eta 2**k) + 2`` ignored the depth limit and the doubling: it sent
    ~130 splits a simulated day through the save-and-retry path, ~90 of them needlessly.)
    """
    total, width = 0, 1
    while width and k < limit:
        width = min(width, n // (eta * 2**k))
        total += 2 * width
        width *= 2
        k += 1
    return total


@compiled
def split_leaves(
    feature,
    threshold,
    left,
    right,
    count,
    depth,
    lo,
    hi,
    rng,
    leaves,
    limit,
    eta,
    free,
    n_nodes,
    may_fail,
):
    """Replace each leaf (in order) by a subtree grown from ``count`` points drawn uniformly
    in its box, as the reference build does: depth first, left before right, each node's
    feature and threshold drawn from ``rng`` as it is built.

    ``free`` is the tail of the forest's free list (popped from its end), ``n_nodes`` the
    slots ever used; the block is ``len(feature)`` slots. Returns (status, n_nodes, free
    slots left in ``free``). Without ``may_fail`` it first checks that the block has room
    for the worst case (:func:`_most_slots`) and returns SHORT, having changed nothing, if
    not; with it, it returns FULL, part done, when the block fills.
    """
    capacity, d = len(feature), lo.shape[1]
    n_free = len(free)
    if not may_fail:
        need = 0
        for leaf in leaves:
            need += _most_slots(count[leaf], depth[leaf], eta, limit)
        if need > n_free + capacity - n_nodes:
            return SHORT, n_nodes, n_free
    # (node, first row, end row, depth) of the nodes still to build: a node pops and
    # pushes its two children, so it holds at most one more entry than the tree is deep
    stack = np.empty((2 * MAX_DEPTH + 2, 4), dtype=np.int64)
    # scratch, not per node: a box is written before it is read (a node with no rows
    # neither reads nor stores one), the children before they are linked
    root_lo, root_hi, box_lo, box_hi = np.empty(d), np.empty(d), np.empty(d), np.empty(d)
    children = np.empty(2, dtype=np.int64)
    for leaf in leaves:
        n = count[leaf]
        data = np.empty((n, d))
        for i in range(n):
            for j in range(d):
                u = rng.random()
                v = (1.0 - u) * lo[leaf, j] + u * hi[leaf, j]
                data[i, j] = v
                # the leaf's own box as it is drawn: the rows in the order its build
                # reads them (row 0 first), the same selects
                if i == 0:
                    root_lo[j], root_hi[j] = v, v
                else:
                    low, high = root_lo[j], root_hi[j]
                    root_lo[j] = low if low < v else v
                    root_hi[j] = high if high > v else v
        # depth first over a row order that each split partitions stably: the order of
        # the recursive build, left subtree first
        order = np.arange(n)
        spare = np.empty(n, dtype=np.int64)
        top = 0
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = leaf, 0, n, depth[leaf]
        while top >= 0:
            node, start, end, k = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            top -= 1
            m = end - start
            count[node] = m
            depth[node] = k
            if m and node == leaf:  # boxed as drawn (only the leaf's own node has its id)
                box_lo[:] = root_lo
                box_hi[:] = root_hi
            elif m:
                box_lo[:] = data[order[start]]
                box_hi[:] = data[order[start]]
                for i in range(start + 1, end):
                    for j in range(d):  # selects, as in learn_route
                        v, low, high = data[order[i], j], box_lo[j], box_hi[j]
                        box_lo[j] = low if low < v else v
                        box_hi[j] = high if high > v else v
            n_split = 0
            if m >= eta * 2**k and k < limit:
                for j in range(d):
                    if box_hi[j] > box_lo[j]:
                        n_split += 1
            if n_split == 0:
                if m:
                    lo[node, :] = box_lo
                    hi[node, :] = box_hi
                continue
            pick = rng.integers(0, n_split)
            j = 0
            for c in range(d):
                if box_hi[c] > box_lo[c]:
                    if pick == 0:
                        j = c
                        break
                    pick -= 1
            u = rng.random()
            cut = box_lo[j] * (1.0 - u) + box_hi[j] * u
            for c in range(2):
                if n_free:
                    n_free -= 1
                    children[c] = free[n_free]
                elif n_nodes < capacity:
                    children[c] = n_nodes
                    n_nodes += 1
                else:
                    return FULL, n_nodes, n_free
            feature[node], threshold[node] = j, cut
            left[node], right[node] = children[0], children[1]
            lo[node, :] = np.inf
            hi[node, :] = -np.inf
            n_left = 0
            for i in range(start, end):
                if data[order[i], j] < cut:
                    spare[n_left] = order[i]
                    n_left += 1
            n_right = 0
            for i in range(start, end):
                if not data[order[i], j] < cut:
                    spare[n_left + n_right] = order[i]
                    n_right += 1
            order[start:end] = spare[:m]
            for c, first, last in ((1, start + n_left, end), (0, start, start + n_left)):
                top += 1
                stack[top, 0], stack[top, 1] = children[c], first
                stack[top, 2], stack[top, 3] = last, k + 1
    return DONE, n_nodes, n_free


@compiled
def collapse(feature, left, right, count, depth, lo, hi, nodes, eta):
    """Fold back into a leaf, shallowest first, each internal node among ``nodes`` (sorted
    ids) under its split threshold; its box is its leaves' union. Returns the released
    slots in the order they were freed."""
    starving = np.empty(len(nodes), dtype=np.int64)
    m = 0
    for node in nodes:
        if feature[node] >= 0 and count[node] < _threshold(eta, depth[node]):
            starving[m] = node
            m += 1
    for i in range(1, m):  # stable insertion sort by depth (a few nodes; compiles fast)
        node, k = starving[i], i
        while k and depth[starving[k - 1]] > depth[node]:
            starving[k] = starving[k - 1]
            k -= 1
        starving[k] = node
    starving = starving[:m]
    released = np.empty(len(feature), dtype=np.int64)
    k = 0
    for node in starving:
        if feature[node] < 0:  # already folded into a shallower collapse
            continue
        box_lo, box_hi = lo[node].copy(), hi[node].copy()
        stack = [left[node], right[node]]
        while stack:
            child = stack.pop()
            if feature[child] >= 0:
                stack.append(left[child])
                stack.append(right[child])
            else:
                for j in range(lo.shape[1]):
                    if lo[child, j] <= box_lo[j]:
                        box_lo[j] = lo[child, j]
                    if hi[child, j] >= box_hi[j]:
                        box_hi[j] = hi[child, j]
            feature[child], left[child], right[child] = -1, -1, -1
            count[child], depth[child] = 0, 0
            lo[child, :] = np.inf
            hi[child, :] = -np.inf
            released[k] = child
            k += 1
        feature[node], left[node], right[node] = -1, -1, -1
        lo[node, :] = box_lo
        hi[node, :] = box_hi
    return released[:k]


@compiled
def push_window(window, head, n_window, X, size, top, above, ties):
    """Write the rows ``X`` into the feature-major ring buffer ``window`` (``n_window`` rows
    from ``head``, ``size`` slots when full, at least ``min(size, n_window + len(X))`` now;
    ``len(X) <= size``) after its last row; returns the oldest rows they displaced (read
    before they are overwritten) and the new head. The counts :func:`window_top` keeps
    (``top``, ``above``, ``ties``) follow the values that come and go."""
    n, d = X.shape
    n_old = max(0, n_window + n - size)
    old = np.empty((n_old, d))
    for i in range(n_old):
        slot = (head + i) % size
        for j in range(d):
            old[i, j] = window[j, slot]
            _count(top, above, ties, j, window[j, slot], -1)
    for i in range(n):
        slot = (head + n_window + i) % size
        for j in range(d):
            window[j, slot] = X[i, j]
            _count(top, above, ties, j, X[i, j], 1)
    return old, (head + n_old) % size


@compiled
def _count(top, above, ties, j, v, step):
    """Count value ``v`` of feature ``j`` into (``step`` 1) or out of (-1) the window's
    values above and equal to its kept top, where one is kept."""
    if above[j] >= 0:
        if v > top[j]:
            above[j] += step
        elif v == top[j]:
            ties[j] += step


@compiled
def window_top(window, n, k, top, above, ties):
    """Per feature (a row of the feature-major window), the ``k + 1``-th largest of its
    first ``n`` values: ``np.partition(window[:, :n], -k - 1, axis=1)[:, -k - 1]``.

    ``top`` keeps each feature's last answer, ``above`` and ``ties`` how many of the
    window's values lie above it and equal it (``above`` < 0: none kept), counted as rows
    come and go by :func:`push_window`. A kept answer is still the answer while at most
    ``k`` values lie above it and ``k + 1`` or more at or above it: only the other
    features are scanned (3 % of the scorer's on a simulated day), by one pass with the
    ``k + 1`` largest kept in order (``k`` is ~0.5 % of ``n``), then one to count.

    The value is the partition's; where it is a zero, its sign may differ, which no score
    sees (``x - 0.0`` and ``x - -0.0`` differ only in the sign of a zero, clipped at 0).
    """
    best = np.empty(k + 1)  # ascending: best[0] is the answer once k + 1 values are in
    for j in range(window.shape[0]):
        if 0 <= above[j] <= k and above[j] + ties[j] > k:
            continue
        for m in range(k + 1):  # the first k + 1 values, by insertion
            v = window[j, m]
            p = m
            while p and best[p - 1] > v:
                best[p] = best[p - 1]
                p -= 1
            best[p] = v
        for i in range(k + 1, n):
            v = window[j, i]
            if v > best[0]:
                p = 0
                while p < k and best[p + 1] < v:
                    best[p] = best[p + 1]
                    p += 1
                best[p] = v
        top[j], above[j], ties[j] = best[0], 0, 0
        for i in range(n):
            _count(top, above, ties, j, window[j, i], 1)
    return top.copy()
