"""Wires decode → adapt → entity table → feature windows → scorer. No I/O, no wall clock.

Event time drives everything. The watermark is the highest event time seen minus the
allowed lateness; an event older than the watermark is late (counted, dropped). A profile
is *due* at its window end (or at the entity's deletion, or when it has been idle too long)
and is emitted once the watermark passes it. Due times are grouped into fixed ticks and
emitted tick by tick in (due, entity) order, so what is scored together — and therefore what
the online models learn, in which order — depends only on the events, not on how the input
was interleaved or batched. For the same reason an event is folded into its entity's state
when the watermark passes it, not when it arrives. That is what makes ``replay`` and
``serve`` agree.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from churnguard.config import Settings
from churnguard.ingest import AdapterContext, Parsed, parse_record
from churnguard.ingest.events import EntityKey, EntityKind, Event, EventKind, Origin, Rejected
from churnguard.profiling.entities import DEATH_GRACE_S, IP_BINDING_LAG_S, EntityState, EntityTable
from churnguard.profiling.features import FeatureBuilder, NetworkClassifier
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import FeatureSpec, load_spec
from churnguard.scoring.learning import LearningGate

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer

TICK_S = 60.0  # profiles due within one tick are scored together: bigger batches, fewer calls
_SNAPSHOT_FORMAT = 1


class Output(msgspec.Struct):
    """What one step of the pipeline produced."""

    alerts: list[Any] = msgspec.field(default_factory=list)  # churnguard.alerts.alert.Alert
    rejected: list[Rejected] = msgspec.field(default_factory=list)
    scored: list[Any] = msgspec.field(default_factory=list)  # churnguard.scoring.scorer.Scored
    profiles: list[Profile] = msgspec.field(default_factory=list)  # when no scorer is set

    def extend(self, other: Output) -> None:
        self.alerts.extend(other.alerts)
        self.rejected.extend(other.rejected)
        self.scored.extend(other.scored)
        self.profiles.extend(other.profiles)


class Pipeline:
    """One shard's whole detection state: entities, windows, first-seen memory, scorer."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        scorer: Scorer | None = None,
        spec: FeatureSpec | None = None,
    ) -> None:
        self.settings = settings or Settings()
        ps = self.settings.pipeline
        self.spec = spec or load_spec(version=ps.spec_version)
        self.window_s = ps.window_seconds or self.spec.window_seconds
        self.lateness_s = (
            ps.allowed_lateness_seconds
            if ps.allowed_lateness_seconds is not None
            else self.spec.allowed_lateness_seconds
        )
        self.idle_s = ps.idle_expiry_seconds or self.spec.idle_expiry_seconds
        self.ctx = AdapterContext(
            cluster_cidrs=list(ps.cluster_cidrs),
            role_map=dict(ps.role_map),
            max_record_bytes=ps.max_record_bytes,
        )
        self.table = EntityTable()
        self.features = FeatureBuilder(self.spec, NetworkClassifier(ps.cluster_cidrs))
        self.scorer = scorer
        self.max_time = -math.inf
        self._due: list[tuple[float, EntityKey]] = []  # heap of (due time, entity)
        self._deferred: list[tuple[float, int, Event]] = []  # (resolve at, seq, event)
        self._seq = 0
        self._successors: dict[EntityKey, list[Event]] = {}
        # multi-input alignment (the Kafka driver): latest event time per input partition
        self._expected: frozenset[str] = frozenset()
        self._idle: frozenset[str] = frozenset()
        self._source_time: dict[str, float] = {}
        self._watermark_floor = -math.inf
        self.stats: Counter[str] = Counter()

    # ---- input ----------------------------------------------------------------------------
    @property
    def watermark(self) -> float:
        """Event time up to which input is complete, minus the allowed lateness.

        With one input (files merged by time) that is the newest event seen. With several
        inputs (a shard's partitions of several topics, read at different speeds) it is the
        *slowest* input's newest event: a topic consumed ahead of the others must not make
        the others' records late. Inputs that are caught up (``set_idle``) do not hold it back.
        """
        if not self._expected:
            return self.max_time - self.lateness_s
        if any(s not in self._source_time and s not in self._idle for s in self._expected):
            return self._watermark_floor  # an input has not delivered anything yet
        active = [t for s, t in self._source_time.items() if s not in self._idle]
        newest = min(active) if active else self.max_time
        # never backwards: an input that was idle and delivers again cannot reopen the past
        self._watermark_floor = max(self._watermark_floor, newest - self.lateness_s)
        return self._watermark_floor

    def expect_sources(self, sources: Iterable[str]) -> None:
        """Name the inputs whose event times align the watermark (``source_of`` names)."""
        self._expected = frozenset(sources)

    def set_idle(self, sources: Iterable[str]) -> Output:
        """Mark inputs that have nothing more to read; emits what that makes due."""
        self._idle = frozenset(sources)
        return self._advance(self._tick_floor(self.watermark))

    def parse(self, raw: bytes | str, origin: Origin | None, pinned: str | None = None) -> Parsed:
        """Decode and adapt one record, counting what came out of it."""
        parsed = parse_record(raw, origin, pinned, self.ctx)
        self.stats["records"] += 1
        for ev in parsed.events:
            self.stats[f"events.{ev.format}"] += 1
            if ev.origin is None and origin is not None:
                ev.origin = origin
        for ig in parsed.ignored:
            self.stats[f"ignored.{ig.format}.{ig.reason}"] += 1
        for rej in parsed.rejected:
            self.stats[f"rejected.{rej.reason}"] += 1
        return parsed

    def process(
        self, raw: bytes | str, origin: Origin | None = None, pinned: str | None = None
    ) -> Output:
        """One raw record in; whatever profiles and alerts became due out. Never raises."""
        parsed = self.parse(raw, origin, pinned)
        out = self.ingest(parsed.events)
        out.rejected.extend(parsed.rejected)
        return out

    def ingest(self, events: Iterable[Event]) -> Output:
        """Fold events in; advance the watermark; emit what became due."""
        for ev in events:
            self._add(ev)
        out = self._advance(self._tick_floor(self.watermark))
        if len(self.table.states) > self.settings.pipeline.max_entities:
            out.extend(self._evict())
        return out

    def _evict(self) -> Output:
        """Memory bound: past ``max_entities``, profile and forget the idlest 1% early."""
        cap = self.settings.pipeline.max_entities
        excess = len(self.table.states) - cap + max(1, cap // 100)
        idlest = sorted(self.table.states.values(), key=lambda s: (s.last_seen, s.key))[:excess]
        profiles = [self._final(s, "evicted", s.last_seen) for s in idlest]
        for s in idlest:
            self._bury(s)
        self.stats["evicted"] += len(idlest)
        return self._score([p for p in profiles if p is not None])

    def finish(self) -> Output:
        """End of input: emit every window up to the last event, then profile what is open."""
        if not math.isfinite(self.max_time):
            return Output()
        end = self._tick_of(self.max_time + IP_BINDING_LAG_S)
        out = self._advance(end)
        self._resolve_deferred(math.inf)
        out.extend(self._advance(end))
        while self.table.states:
            closing = sorted(self.table.states.values(), key=lambda s: s.key)
            profiles = [self._final(s, "end_of_input", s.last_seen) for s in closing]
            for s in closing:
                self._bury(s)
            out.extend(self._score([p for p in profiles if p is not None]))
        self._due.clear()
        return out

    # ---- routing ----------------------------------------------------------------------------
    def _add(self, ev: Event) -> None:
        if not math.isfinite(ev.time):
            self.stats["dropped.bad_time"] += 1
            return
        if ev.time < self.watermark:
            self.stats["late_events"] += 1
            return
        self.max_time = max(self.max_time, ev.time)
        if self._expected and ev.origin is not None:
            source = source_of(ev.origin)
            if ev.time > self._source_time.get(source, -math.inf):
                self._source_time[source] = ev.time
        key = self.table.subject_key(ev)
        if key is None:
            if self.table.needs_resolution(ev):
                self._defer(ev, ev.time + IP_BINDING_LAG_S)
            else:
                self.stats["unattributed"] += 1
            return
        # Folded in once the watermark has passed it, not on arrival: a record read ahead
        # of the watermark (a topic consumed faster than the others, or a successor's
        # event before the deletion that ends the previous pod of that name) must not
        # change a state before the emissions that precede it in event time (windows,
        # idle expiry, the previous incarnation's end). Arrival order cannot matter then.
        self._defer(ev, ev.time)

    def _defer(self, ev: Event, until: float) -> None:
        """Route ``ev`` when emission reaches event time ``until``, in that order."""
        self._seq += 1
        heapq.heappush(self._deferred, (until, self._seq, ev))

    def _route(self, key: EntityKey, ev: Event) -> None:
        if self.table.is_dead(key, ev.time):
            self.stats["after_end_events"] += 1
            return
        state = self.table.states.get(key)
        if (
            state is not None
            and state.deleted_at is not None
            and ev.time > state.deleted_at + (DEATH_GRACE_S)
        ):
            # same name, later life (a StatefulSet pod recreated): held until the old
            # incarnation is profiled, then routed to a fresh state
            self._successors.setdefault(key, []).append(ev)
            return
        state = self.table.state_for(key, ev)
        if state.emitted_until is not None and ev.time < state.emitted_until:
            self.stats["late_events"] += 1
            return
        if key.kind is EntityKind.POD and ev.namespace and ev.pod:
            if ev.pod_ip:
                self.table.bind_ip(ev.pod_ip, key, ev.time)
            if ev.container_id:
                self.table.bind_container(ev.container_id, key)
        self.table.apply(state, ev)
        heapq.heappush(self._due, (self._next_due(state), key))

    def _next_due(self, state: EntityState) -> float:
        candidates = [state.last_seen + self.idle_s]
        if state.deleted_at is not None:
            candidates.append(state.deleted_at)
        if state.pending:
            start = state.window_start()
            first = min(ev.time for ev in state.pending)
            k = max(0, math.floor((first - start) / self.window_s))
            candidates.append(start + (k + 1) * self.window_s)
        return min(candidates) + IP_BINDING_LAG_S

    # ---- emission ---------------------------------------------------------------------------
    def _tick_floor(self, t: float) -> float:
        return math.floor(t / TICK_S) * TICK_S if math.isfinite(t) else t

    def _tick_of(self, due: float) -> float:
        return math.ceil(due / TICK_S) * TICK_S

    def _advance(self, limit: float) -> Output:
        out = Output()
        while True:
            next_deferred = self._deferred[0][0] if self._deferred else math.inf
            next_due = self._due[0][0] if self._due else math.inf
            first = min(next_deferred, next_due)
            if first > limit or first == math.inf:
                return out
            tick = self._tick_of(first)
            self._resolve_deferred(tick)
            out.extend(self._score(self._emit_due(tick)))

    def _resolve_deferred(self, tick: float) -> None:
        while self._deferred and self._deferred[0][0] <= tick:
            _, _, ev = heapq.heappop(self._deferred)
            key = self.table.subject_key(ev) or self.table.resolve(ev)
            if key is None:
                self.stats["unattributed"] += 1
                continue
            self._route(key, ev)

    def _emit_due(self, tick: float) -> list[Profile]:
        keys: set[EntityKey] = set()
        while self._due and self._due[0][0] <= tick:
            _, key = heapq.heappop(self._due)
            keys.add(key)
        profiles: list[Profile] = []
        for key in sorted(keys):
            state = self.table.states.get(key)
            if state is None:
                continue
            profiles.extend(self._emit_entity(state, tick))
            if key in self.table.states:
                heapq.heappush(self._due, (self._next_due(state), key))
        return profiles

    def _emit_entity(self, state: EntityState, tick: float) -> list[Profile]:
        out: list[Profile] = []
        # complete windows strictly before the end of life
        while state.pending:
            start = state.window_start()
            first = min(ev.time for ev in state.pending)
            k = max(0, math.floor((first - start) / self.window_s))
            w_start, w_end = start + k * self.window_s, start + (k + 1) * self.window_s
            ends_inside = state.deleted_at is not None and state.deleted_at <= w_end
            if w_end + IP_BINDING_LAG_S > tick or ends_inside:
                break
            events = [ev for ev in state.pending if ev.time < w_end]
            state.pending = [ev for ev in state.pending if ev.time >= w_end]
            out.append(self._profile(state, events, w_start, w_end, final=False, reason="window"))
        if state.deleted_at is not None and state.deleted_at + IP_BINDING_LAG_S <= tick:
            reason = "terminated" if state.key.kind is EntityKind.INSTANCE else "deleted"
            final = self._final(state, reason, state.deleted_at)
            if final is not None:
                out.append(final)
            self._bury(state)
        elif state.last_seen + self.idle_s + IP_BINDING_LAG_S <= tick:
            final = self._final(state, "expired", state.last_seen) if state.pending else None
            if final is not None:
                out.append(final)
            self._bury(state)
        return out

    def _bury(self, state: EntityState) -> None:
        self.table.bury(state)
        for ev in sorted(self._successors.pop(state.key, []), key=lambda e: e.time):
            self.stats["reincarnations"] += ev.kind is EventKind.POD_CREATE
            self._route(state.key, ev)

    def _final(self, state: EntityState, reason: str, end: float) -> Profile | None:
        events, state.pending = state.pending, []
        if not events and state.deleted_at is None:
            return None
        start = state.window_start()
        return self._profile(state, events, start, max(end, start), final=True, reason=reason)

    def _profile(
        self,
        state: EntityState,
        events: list[Event],
        start: float,
        end: float,
        *,
        final: bool,
        reason: str,
    ) -> Profile:
        profile = self.features.build(state, events, start, end, final=final, end_reason=reason)
        state.emitted_until = end
        state.windows_emitted += 1
        self.stats["profiles"] += 1
        return profile

    def _score(self, profiles: list[Profile]) -> Output:
        if not profiles:
            return Output()
        if self.scorer is None:
            self.features.remember(profiles)
            return Output(profiles=profiles)
        scored = self.scorer.score(profiles)
        self.stats["alerts_folded"] += sum(1 for s in scored if s.folded)
        teaches = LearningGate.teaches_memory
        known = [teaches(s.alert is not None or s.folded or s.campaign is not None) for s in scored]
        released = list(getattr(self.scorer, "released", ()))  # recurred: now the workload's
        self.features.remember(
            [s.profile for s, ok in zip(scored, known, strict=True) if ok] + released,
            paged=[s.profile for s, ok in zip(scored, known, strict=True) if not ok],
        )
        alerts = [a for s in scored for a in (s.alert, s.campaign) if a is not None]
        return Output(alerts=alerts, scored=scored)

    # ---- checkpoints ------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """All shard state (entities, bindings, memory, watermark, scorer) as msgpack."""
        table = self.table
        doc = {
            "format": _SNAPSHOT_FORMAT,
            "spec_version": self.spec.version,
            "max_time": self.max_time if math.isfinite(self.max_time) else None,
            "seq": self._seq,
            "states": list(table.states.values()),
            "ip_bindings": table._ip_bindings,
            "containers": table._containers,
            "tombstones": list(table._tombstones.items()),
            "deferred": [(t, s, ev) for t, s, ev in self._deferred],
            "successors": list(self._successors.items()),
            "memory": self.features.memory.snapshot(),
            "stats": dict(self.stats),
            "source_time": self._source_time,
            "watermark_floor": self._watermark_floor
            if math.isfinite(self._watermark_floor)
            else None,
            "scorer": self.scorer.snapshot() if self.scorer is not None else None,
        }
        return msgspec.msgpack.encode(doc)

    def restore(self, data: bytes) -> None:
        """Inverse of :meth:`snapshot`; the due-heap is rebuilt from the restored states."""
        doc = msgspec.msgpack.decode(data, type=_Snapshot)
        if doc.format != _SNAPSHOT_FORMAT or doc.spec_version != self.spec.version:
            raise ValueError("checkpoint was written by another pipeline or feature spec version")
        self.max_time = doc.max_time if doc.max_time is not None else -math.inf
        self._seq = doc.seq
        self.table = EntityTable()
        for state in doc.states:
            self.table.states[state.key] = state
        self.table._ip_bindings = {ip: [tuple(b) for b in v] for ip, v in doc.ip_bindings.items()}
        self.table._containers = dict(doc.containers)
        for key, died in doc.tombstones:
            self.table._tombstones[key] = died
        self._successors = dict(doc.successors)
        self._deferred = [(t, s, ev) for t, s, ev in doc.deferred]
        heapq.heapify(self._deferred)
        self._due = [(self._next_due(s), s.key) for s in self.table.states.values()]
        heapq.heapify(self._due)
        self.features.memory.restore(doc.memory)
        self.stats = Counter(doc.stats)
        self._source_time = dict(doc.source_time)
        wf = doc.watermark_floor
        self._watermark_floor = wf if wf is not None else -math.inf
        if self.scorer is not None and doc.scorer is not None:
            self.scorer.restore(doc.scorer)


def source_of(origin: Origin) -> str:
    """The input an origin belongs to: ``topic[partition]``, or the file name."""
    return f"{origin.source}[{origin.partition}]" if origin.partition is not None else origin.source


class _Snapshot(msgspec.Struct):
    format: int
    spec_version: str
    max_time: float | None
    seq: int
    states: list[EntityState]
    ip_bindings: dict[str, list[tuple[float, EntityKey]]]
    containers: dict[str, EntityKey]
    tombstones: list[tuple[EntityKey, float]]
    deferred: list[tuple[float, int, Event]]
    successors: list[tuple[EntityKey, list[Event]]]
    memory: dict
    stats: dict[str, int]
    source_time: dict[str, float]
    watermark_floor: float | None
    scorer: bytes | None
