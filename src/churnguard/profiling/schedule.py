"""The emission schedule: which events wait to be routed, and when each entity is next due.

Both are keyed by event time and drained in fixed ticks as the watermark advances, so what
is folded and scored together depends only on the events, never on how the input was
interleaved or batched. Events that resolve at the same time are routed in an order of
their own content (:func:`~churnguard.ingest.ordering.order_key`), never their arrival.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator

from churnguard.ingest.events import EntityKey, Event
from churnguard.ingest.ordering import order_key

_Deferred = tuple[float, float, int, Event, EntityKey | None]  # (until, time, seq, event, key)
TICK_S = 60.0  # profiles due within one tick are scored together: bigger batches, fewer calls


def tick_floor(t: float) -> float:
    """The last tick boundary at or before ``t`` (infinities stay as they are)."""
    return math.floor(t / TICK_S) * TICK_S if math.isfinite(t) else t


def tick_of(due: float) -> float:
    """The tick in which something due at ``due`` is emitted."""
    return math.ceil(due / TICK_S) * TICK_S


class EmissionSchedule:
    """Two event-time heaps: deferred events (to route) and entities' due times (to emit)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, EntityKey]] = []
        # the entries in ``_due``: an entity is looked at again after each event routed to
        # it, mostly at the same time (its window's end); one entry per (time, key) pops
        # the same keys at the same tick as many would, with a heap a third the size
        self._queued: set[tuple[float, EntityKey]] = set()
        # deferred events: a heap of (until, event time, seq, event, its entity when already
        # known at deferral). Events waiting at one (until, event time) are put in content
        # order when they are routed: an event's content is encoded for that only when
        # another waits at the same time, not for every event
        self._deferred: list[_Deferred] = []
        self.seq = 0

    def defer(
        self, ev: Event, until: float, key: EntityKey | None = None, cap: float = math.inf
    ) -> bool:
        """Route ``ev`` when emission reaches event time ``until``; ``key``: its entity, when
        the event names it (kept so that it is not worked out twice). False, and nothing
        queued, when ``cap`` events wait already (the cap checked here: one call an event)."""
        if len(self._deferred) >= cap:
            return False
        self.seq += 1
        heapq.heappush(self._deferred, (until, ev.time, self.seq, ev, key))
        return True

    def deferred_count(self) -> int:
        """Events waiting for emission to reach their time (bounded by the pending cap)."""
        return len(self._deferred)

    def due(self, key: EntityKey, at: float) -> None:
        """Look at entity ``key`` again when emission reaches event time ``at``."""
        entry = (at, key)
        if entry not in self._queued:
            self._queued.add(entry)
            heapq.heappush(self._due, entry)

    def next_time(self) -> float:
        """The earliest event time anything is scheduled at (``inf`` when nothing is).

        Read once a record in the service: ``min`` of the two as a compare."""
        next_deferred = self._deferred[0][0] if self._deferred else math.inf
        next_due = self._due[0][0] if self._due else math.inf
        return next_due if next_due < next_deferred else next_deferred

    def deferred_until(self, t: float) -> Iterator[tuple[Event, EntityKey | None]]:
        """Pop the deferred events due at or before ``t``, in schedule order, each with the
        key it was deferred with (None: to be resolved)."""
        heap = self._deferred
        while heap and heap[0][0] <= t:
            first = heapq.heappop(heap)
            until, at = first[0], first[1]
            if not (heap and heap[0][0] == until and heap[0][1] == at):
                yield first[3], first[4]  # most events: alone at their time
                continue
            # (until, order_key, seq): what one heap of events sorted by
            same = [first]
            while heap and heap[0][0] == until and heap[0][1] == at:
                same.append(heapq.heappop(heap))
            same.sort(key=_content_order)
            for _, _, _, ev, key in same:
                yield ev, key

    def due_until(self, t: float) -> list[EntityKey]:
        """Pop the entities due at or before ``t``, each once, sorted."""
        keys: set[EntityKey] = set()
        while self._due and self._due[0][0] <= t:
            entry = heapq.heappop(self._due)
            self._queued.discard(entry)
            keys.add(entry[1])
        return sorted(keys)

    def clear_due(self) -> None:
        self._due.clear()
        self._queued.clear()

    def deferred_snapshot(self) -> list[tuple[float, int, Event]]:
        """The deferred events as a checkpoint keeps them: ``(until, seq, event)``."""
        return [(until, seq, ev) for until, _, seq, ev, _ in self._deferred]

    def restore(
        self,
        deferred: Iterable[tuple[float, int, Event]],
        seq: int,
        due: Iterable[tuple[float, EntityKey]],
    ) -> None:
        """Inverse of :meth:`deferred_snapshot`, with the due times recomputed by the caller."""
        self.seq = seq
        self._deferred = [(t, ev.time, s, ev, None) for t, s, ev in deferred]
        heapq.heapify(self._deferred)
        self._queued = set(due)
        self._due = list(self._queued)
        heapq.heapify(self._due)


def _content_order(waiting: _Deferred) -> tuple[tuple[float, bytes], int]:
    """Events deferred to one time: by content (:func:`order_key`), then arrival."""
    return order_key(waiting[3]), waiting[2]
