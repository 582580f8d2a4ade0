"""Telemetry floods: someone who can write telemetry invents entities to blind the detector.

A compromised pod emitting flows, or a noisy node, can send millions of distinct fake pods
or instances to push the real ones out of the entity table (``pipeline.max_entities``) and
out of memory. The caps keep memory bounded; this module makes the flood itself visible:
it counts *new* entities per namespace per event-time window and reports a :class:`Flood`
once a namespace passes ``flood_new_entities`` in one window, and once per window when the
entity cap had to evict (a flood spread over many namespaces). The pipeline turns each
report into an alert (:func:`churnguard.alerts.alert.flood_alert`). Counting uses event
time only, so replay and serve report the same floods.
"""

from __future__ import annotations

import math
from collections import Counter

import msgspec

CLUSTER = "*"  # the namespace a cap-pressure flood is reported under
_TOP = 5  # namespaces and sources named in a report


class Flood(msgspec.Struct, kw_only=True):
    """One flood report: where the new entities came from, in which window, how many."""

    namespace: str  # the flooding namespace; ``CLUSTER`` when the entity cap was reached
    window_start: float
    window_end: float
    new_entities: int
    top_namespaces: list[tuple[str, int]]
    top_sources: list[tuple[str, int]]  # input topics/files the new entities came from
    evicted: int = 0  # entities profiled early to stay under the cap in this window


class FloodMonitor:
    """Counts new entities per namespace in the current event-time window."""

    def __init__(self, threshold: int, window_s: float) -> None:
        self.threshold = threshold  # 0 disables the per-namespace report
        self.window_s = window_s
        self._window = -math.inf
        self._new: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()
        self._reported: set[str] = set()
        self._evicted = 0

    def _roll(self, t: float) -> None:
        window = math.floor(t / self.window_s) * self.window_s
        if window > self._window:
            self._window = window
            self._new.clear()
            self._sources.clear()
            self._reported.clear()
            self._evicted = 0

    def note_new(self, namespace: str, source: str, t: float) -> Flood | None:
        """Count one new entity; a report the moment its namespace passes the threshold."""
        self._roll(t)
        self._new[namespace] += 1
        self._sources[source] += 1
        if self.threshold and self._new[namespace] == self.threshold + 1:
            self._reported.add(namespace)
            return self._report(namespace)
        return None

    def note_evicted(self, count: int, t: float) -> Flood | None:
        """Count entities evicted by the cap; one cluster-wide report per window."""
        self._roll(t)
        self._evicted += count
        if CLUSTER in self._reported:
            return None
        self._reported.add(CLUSTER)
        return self._report(CLUSTER)

    def snapshot(self) -> dict:
        """The current window's counts, so a restored shard reports the same floods."""
        return {
            "window": self._window if math.isfinite(self._window) else None,
            "new": dict(self._new),
            "sources": dict(self._sources),
            "reported": sorted(self._reported),
            "evicted": self._evicted,
        }

    def restore(self, data: dict) -> None:
        window = data.get("window")
        self._window = window if window is not None else -math.inf
        self._new = Counter(data.get("new", {}))
        self._sources = Counter(data.get("sources", {}))
        self._reported = set(data.get("reported", []))
        self._evicted = int(data.get("evicted", 0))

    def _report(self, namespace: str) -> Flood:
        return Flood(
            namespace=namespace,
            window_start=self._window,
            window_end=self._window + self.window_s,
            new_entities=self._new[namespace] if namespace != CLUSTER else self._new.total(),
            top_namespaces=sorted(self._new.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP],
            top_sources=sorted(self._sources.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP],
            evicted=self._evicted,
        )
