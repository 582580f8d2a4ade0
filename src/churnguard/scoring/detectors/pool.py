"""One store for the node arrays of many online isolation forests.

The scorer routes a tick's ~11 forests, a few rows each, in one pass
(:mod:`~churnguard.scoring.detectors.grouped`). That pass needs their node arrays side by
side; copying them side by side twice a tick, and writing counts and boxes back forest by
forest, cost as much as the routing. Here the pool *is* the storage: each forest's node
arrays are views of one block of the pool's arrays. Node ids stay local to the forest
(child links too), so a forest's own code is unchanged and its bytes are the same; a
grouped pass adds each forest's block start as it descends, and counts and widens boxes
in the pool's arrays directly.

A forest that outgrows its block moves to a new one at the pool's end; when the end is
reached, the pool is rebuilt with the live blocks packed (blocks of forests that moved,
were dropped or re-fitted are left out) and every forest's views rebound.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

# the forest attributes held here: (dtype, value of a free slot); lo_ and hi_ are d wide
NODE_FIELDS: dict[str, tuple[type, float]] = {
    "feature_": (np.int32, -1),  # -1 = leaf (or free slot)
    "threshold_": (np.float64, 0.0),
    "left_": (np.int32, -1),
    "right_": (np.int32, -1),
    "count_": (np.int64, 0),
    "depth_": (np.int32, 0),
    "lo_": (np.float64, np.inf),  # leaf bounding boxes; internal rows unused
    "hi_": (np.float64, -np.inf),
}
_BOXES = ("lo_", "hi_")


class NodePool:
    """The node arrays (:data:`NODE_FIELDS`) of forests of row width ``d``, one block each.

    The arrays are attributes named as the forest's (``pool.count_`` holds every forest's
    ``count_``); :meth:`base` is where a forest's block starts.
    """

    def __init__(self, d: int) -> None:
        self.d = d
        self.end = 0  # slots before it were handed out; after it, free slots
        # id(forest) -> (the forest, weakly: a dropped baseline frees its block, start, size)
        self.blocks: dict[int, tuple[weakref.ref[Any], int, int]] = {}
        self._allocate(0)

    def base(self, forest: Any) -> int:
        """Where ``forest``'s block starts (its node ``i`` is the pool's ``base + i``)."""
        return self.blocks[id(forest)][1]

    def place(self, forest: Any, capacity: int, nodes: dict[str, np.ndarray] | None = None) -> None:
        """Give ``forest`` a block of ``capacity`` free slots, start it with ``nodes`` (its
        arrays as they are, up to ``capacity`` long) and bind its attributes to views."""
        if nodes is not None:
            width = {len(v) for v in nodes.values()}
            if len(width) != 1 or max(width) > capacity:
                raise ValueError("inconsistent node arrays")
        self.blocks.pop(id(forest), None)  # moving: the old block is garbage
        if self.end + capacity > len(self.feature_):
            self._rebuild(capacity)
        base = self.end
        self.end += capacity
        self.blocks[id(forest)] = (weakref.ref(forest), base, capacity)
        forest.pool_ = self
        for name in NODE_FIELDS:
            if nodes is not None:
                getattr(self, name)[base : base + len(nodes[name])] = nodes[name]
            setattr(forest, name, getattr(self, name)[base : base + capacity])

    def adopt(self, forest: Any) -> None:
        """Move ``forest``'s nodes here (from its own pool, or from none yet: then its first
        learned rows place it here)."""
        if getattr(forest, "pool_", None) is self:
            return
        if not hasattr(forest, "roots_"):
            forest.pool_ = self
            return
        if forest.lo_.shape[1] != self.d:
            raise ValueError(f"a forest of {forest.lo_.shape[1]} features in a pool of {self.d}")
        nodes = {name: getattr(forest, name) for name in NODE_FIELDS}
        self.place(forest, len(forest.feature_), nodes)

    def grow(self, forest: Any, capacity: int) -> None:
        """Move ``forest`` to a block of ``capacity`` slots, its nodes first."""
        nodes = {name: getattr(forest, name) for name in NODE_FIELDS}
        self.place(forest, capacity, nodes)

    def _allocate(self, size: int, used: int = 0) -> None:
        """Arrays of ``size`` slots, free from ``used`` on (the caller fills those before)."""
        for name, (dtype, free) in NODE_FIELDS.items():
            shape = (size, self.d) if name in _BOXES else (size,)
            pooled = np.empty(shape, dtype=dtype)
            pooled[used:] = free
            setattr(self, name, pooled)

    def _rebuild(self, extra: int) -> None:
        """New arrays with room for the live blocks, packed, and ``extra`` more slots.

        Blocks adjacent before stay adjacent: each run of them is copied with one slice per
        field, not block by block (~100 forests, a few gaps where moved ones were).
        """
        live = []
        for ref, base, size in self.blocks.values():
            forest = ref()
            if forest is not None and forest.pool_ is self:
                live.append((forest, base, size))
        old = {name: getattr(self, name) for name in NODE_FIELDS}
        used = sum(size for _, _, size in live)
        # half more as room: each rebuild copies every live block, and a quarter more
        # rebuilt 19 times a simulated day (28 ms) where half more rebuilds 11 (18 ms)
        self._allocate(max(64, 3 * (used + extra) // 2), used)
        self.blocks, self.end = {}, 0
        runs: list[list[int]] = []  # [old start, new start, size] of adjacent live blocks
        for forest, base, size in live:
            if runs and runs[-1][0] + runs[-1][2] == base:
                runs[-1][2] += size
            else:
                runs.append([base, self.end, size])
            self.blocks[id(forest)] = (weakref.ref(forest), self.end, size)
            self.end += size
        for name in NODE_FIELDS:
            pooled = getattr(self, name)
            for base, start, size in runs:
                pooled[start : start + size] = old[name][base : base + size]
            for forest, _, _ in live:
                _, start, size = self.blocks[id(forest)]
                setattr(forest, name, pooled[start : start + size])
