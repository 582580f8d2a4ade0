"""Wires decode → adapt → entity table → feature windows → scorer. No I/O, no wall clock.

Event time drives everything. The :class:`~churnguard.ingest.watermark.Watermark` says up
to which event time input is complete, with an allowed lateness per source. An event older
than the watermark is late: it is still applied to its entity if the entity is held (it
counts in the entity's next profile, so a late update may raise or update an alert);
otherwise it becomes a dead letter with reason ``late``. Both are counted per source. A profile
is *due* at its window end (or at the entity's deletion, or when it has been idle too long)
and is emitted once the watermark passes it. Due times are grouped into fixed ticks and
emitted tick by tick in (due, entity) order, so what is scored together — and therefore what
the online models learn, in which order — depends only on the events, not on how the input
was interleaved or batched. For the same reason an event is folded into its entity's state
when the watermark passes it, not when it arrives. That is what makes ``replay`` and
``serve`` agree. The watermark and the emission schedule are their own classes
(``ingest/watermark.py``, ``profiling/schedule.py``); this module wires the stages and
keeps the shard's checkpoint, which spans all of them (hence its length).

Over 400 lines on purpose: it is the one place the stages meet (routing an event to its
entity, the emission ticks, the caps and the checkpoint of every stage's state); each stage's
own logic lives in its module.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from churnguard.alerts.alert import flood_alert
from churnguard.config import Settings
from churnguard.ingest import FORMATS, AdapterContext, Parsed, parse_record
from churnguard.ingest.common import truncate
from churnguard.ingest.events import (  # the members, read without the enum hook
    INSTANCE_ENTITY,
    POD_CREATE_EVENT,
    POD_ENTITY,
    EntityKey,
    Event,
    Origin,
    Rejected,
)
from churnguard.ingest.watermark import Watermark, WatermarkState, input_of, source_kind
from churnguard.profiling.entities import (
    IP_BINDING_LAG_S,
    Dormant,
    EntityState,
    EntityTable,
    OldestPending,
    of_next_life,
)
from churnguard.profiling.features import FeatureBuilder, NetworkClassifier
from churnguard.profiling.floods import Flood, FloodMonitor
from churnguard.profiling.profile import Profile
from churnguard.profiling.schedule import TICK_S, EmissionSchedule, tick_floor, tick_of
from churnguard.profiling.spec import FeatureSpec, load_spec
from churnguard.scoring.learning import LearningGate

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer

# enum members as module constants: on Python 3.11 a member read through its class goes
# through EnumType.__getattr__'s slow attribute hook (see churnguard.ingest.events)

__all__ = ["TICK_S", "Output", "Pipeline"]
_SNAPSHOT_FORMAT = 1
_EVENT_STATS = {fmt: "events." + fmt for fmt in FORMATS}  # the counter's names, made once


class Output(msgspec.Struct):
    """What one step of the pipeline produced."""

    alerts: list[Any] = msgspec.field(default_factory=list)  # churnguard.alerts.alert.Alert
    rejected: list[Rejected] = msgspec.field(default_factory=list)
    scored: list[Any] = msgspec.field(default_factory=list)  # churnguard.scoring.scorer.Scored
    profiles: list[Profile] = msgspec.field(default_factory=list)  # when no scorer is set
    late: list[tuple[str, str]] = msgspec.field(default_factory=list)  # (source, outcome)

    def extend(self, other: Output) -> None:
        self.alerts.extend(other.alerts)
        self.rejected.extend(other.rejected)
        self.scored.extend(other.scored)
        self.profiles.extend(other.profiles)
        self.late.extend(other.late)


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
        default_lateness = (
            ps.allowed_lateness_seconds
            if ps.allowed_lateness_seconds is not None
            else self.spec.allowed_lateness_seconds
        )
        self.clock = Watermark(default_lateness, ps.lateness_seconds)
        self.max_future_s = ps.max_future_seconds
        self.idle_s = ps.idle_expiry_seconds or self.spec.idle_expiry_seconds
        self.ctx = AdapterContext(
            cluster_cidrs=list(ps.cluster_cidrs),
            role_map=dict(ps.role_map),
            max_record_bytes=ps.max_record_bytes,
        )
        self.table = EntityTable()
        self.features = FeatureBuilder(self.spec, NetworkClassifier(ps.cluster_cidrs))
        self.scorer = scorer
        self.schedule = EmissionSchedule()
        self._oldest = OldestPending()
        self._successors: dict[EntityKey, list[Event]] = {}
        self._late: list[tuple[str, str]] = []
        # counted in a plain dict: a Counter's item assignment runs through Python (it
        # defines __delitem__, so its mapping slot is the generic one), ~0.21 us a count
        # against ~0.09
        self._stats: dict[str, int] = {}
        # what the caps produced since the last emission (docs/reliability.md "Caps")
        self.floods = FloodMonitor(ps.flood_new_entities, self.window_s)
        self._capped_profiles: list[Profile] = []
        self._flood_reports: list[Flood] = []
        self._overflow: list[Rejected] = []
        self._tick_of_watermark = (math.nan, math.nan)  # (watermark, tick_floor of it)

    # ---- input ----------------------------------------------------------------------------
    @property
    def watermark(self) -> float:
        """Event time up to which input is complete (see :class:`Watermark`)."""
        return self.clock.value

    @property
    def stats(self) -> Counter[str]:
        """What the shard counted (records, events per format, dead letters by reason, caps,
        profiles ...), as a copy: a name never counted reads 0."""
        return Counter(self._stats)

    def _count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to stat ``name``; adding 0 still names it (as a Counter did)."""
        self._stats[name] = self._stats.get(name, 0) + n

    @property
    def max_time(self) -> float:
        """The newest event time accepted so far."""
        return self.clock.max_time

    @property
    def lateness_s(self) -> float:
        """The largest allowed lateness of any source: how far emission may trail input."""
        return self.clock.max_lateness

    def expect_sources(self, sources: Iterable[str], *, routed: bool = False) -> None:
        """Name the inputs whose event times align the watermark (``input_of`` names);
        ``routed``: through the route stage (see :meth:`Watermark.expect`)."""
        self.clock.expect(sources, routed=routed)

    def note_progress(self, source: str, time: float) -> None:
        """An expected input has been read up to ``time`` by the route stage."""
        self.clock.progress(source, time)

    def note_remote_contact(self, destination: str, namespace: str, time: float) -> None:
        """Another shard's ``namespace`` first contacted ``destination`` at ``time`` (the
        route stage's contact facts, :func:`~churnguard.service.bindings.contacts_of`):
        campaign memory's view of the hosts the whole cluster shares."""
        campaigns = getattr(self.scorer, "campaigns", None)  # the static rules keep none
        if campaigns is not None:
            campaigns.note_remote(destination, namespace, time)

    def set_idle(self, sources: Iterable[str]) -> Output:
        """Mark inputs that have nothing more to read; emits what that makes due."""
        self.clock.set_idle(sources)
        return self._advance(tick_floor(self.watermark))

    def parse(self, raw: bytes | str, origin: Origin | None, pinned: str | None = None) -> Parsed:
        """Decode and adapt one record, counting what came out of it."""
        parsed = parse_record(raw, origin, pinned, self.ctx)
        stats = self._stats  # ``_count`` inlined: this runs for every record and event
        stats["records"] = stats.get("records", 0) + 1
        for ev in parsed.events:
            name = _EVENT_STATS.get(ev.format) or "events." + ev.format
            stats[name] = stats.get(name, 0) + 1
        for ig in parsed.ignored:
            self._count(f"ignored.{ig.format}.{ig.reason}")
        for rej in parsed.rejected:
            self._count(f"rejected.{rej.reason}")
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
        """Fold events in; advance the watermark; emit what became due.

        Runs for every record in the service: a loop, not a comprehension's frame, and the
        emission tick worked out again only when the watermark moved."""
        rejected = []
        for ev in events:
            if (r := self._add(ev)) is not None:
                rejected.append(r)
        watermark = self.clock.value
        if watermark != self._tick_of_watermark[0]:
            self._tick_of_watermark = (watermark, tick_floor(watermark))
        out = self._advance(self._tick_of_watermark[1])
        out.rejected.extend(rejected)
        if self._late:  # rare: no new list per record otherwise
            out.late, self._late = self._late, []
        if len(self.table.states) > self.settings.pipeline.max_entities:
            out.extend(self._evict())
        self._drain(out)
        return out

    def _evict(self) -> Output:
        """Memory bound: past ``max_entities``, profile and forget 1% early.

        The idlest entities of the namespace holding the most go first: a flood of fake
        pods pushes out its own fakes, not the quiet real entities of other namespaces
        (idlest-first alone evicted a real attacker's instance in benchmarks/bench_flood.py).
        """
        cap = self.settings.pipeline.max_entities
        excess = len(self.table.states) - cap + max(1, cap // 100)
        held = Counter(key.namespace for key in self.table.states)
        idlest = sorted(
            self.table.states.values(),
            key=lambda s: (-held[s.key.namespace], s.last_seen, s.key),
        )[:excess]
        profiles = [self._final(s, "evicted", s.last_seen) for s in idlest]
        for s in idlest:
            self._bury(s)
        self._count("evicted", len(idlest))
        if (flood := self.floods.note_evicted(len(idlest), self.max_time)) is not None:
            self._flood_reports.append(flood)
        return self._score([p for p in profiles if p is not None])

    def _drain(self, out: Output) -> None:
        """Add to ``out`` what a cap cut early (scored), flood alerts, pending-cap dead letters."""
        if not (self._capped_profiles or self._flood_reports or self._overflow):
            return  # the common case: once per record in the service
        out.extend(self._score(self._capped_profiles))
        self._capped_profiles = []
        threshold = self.settings.pipeline.flood_new_entities
        version = self.spec.version
        out.alerts.extend(
            flood_alert(f, threshold=threshold, spec_version=version) for f in self._flood_reports
        )
        self._count("floods", len(self._flood_reports))
        out.rejected.extend(self._overflow)
        self._flood_reports, self._overflow = [], []

    def finish(self) -> Output:
        """End of input: emit every window up to the last event, then profile what is open."""
        if not math.isfinite(self.max_time):
            return Output()
        end = tick_of(self.max_time + IP_BINDING_LAG_S)
        out = self._advance(end)
        self._resolve_deferred(math.inf)
        out.extend(self._advance(end))
        while self.table.states:
            closing = sorted(self.table.states.values(), key=lambda s: s.key)
            profiles = [self._final(s, "end_of_input", s.last_seen) for s in closing]
            for s in closing:
                self._bury(s)
            out.extend(self._score([p for p in profiles if p is not None]))
        self.schedule.clear_due()
        self._drain(out)
        return out

    # ---- routing ----------------------------------------------------------------------------
    def _add(self, ev: Event) -> Rejected | None:
        if not math.isfinite(ev.time):
            self._count("dropped.bad_time")
            return None
        if ev.time > self.clock.wall_seen:
            ahead = self.clock.ahead_of_wall(ev.time)
            if ahead > self.max_future_s:
                return self._reject_future(ev, ahead)
        watermark = self.clock.value
        if ev.time < watermark:
            return self._add_late(ev, watermark)
        self.clock.observe(ev)
        key = self.table.subject_key(ev)
        if key is None:
            if self.table.needs_resolution(ev):
                self._defer(ev, ev.time + IP_BINDING_LAG_S)
            else:
                self._count("unattributed")
            return None
        # Folded in once the watermark has passed it, not on arrival: a record read ahead
        # of the watermark (a topic consumed faster than the others, or a successor's
        # event before the deletion that ends the previous pod of that name) must not
        # change a state before the emissions that precede it in event time (windows,
        # idle expiry, the previous incarnation's end). Arrival order cannot matter then.
        self._defer(ev, ev.time, key)
        return None

    def _add_late(self, ev: Event, watermark: float) -> Rejected | None:
        """Behind the watermark: applied if its entity is still held, else a dead letter."""
        source = source_kind(ev.format)
        key = self.table.subject_key(ev) or self.table.resolve(ev)
        state = self.table.states.get(key) if key is not None else None
        if key is not None and state is not None and not self.table.is_dead(key, ev):
            self._route(key, ev)
            self._count(f"late.applied.{source}")
            self._late.append((source, "applied"))
            return None
        self._count("late_events")
        self._count(f"late.dead_letter.{source}")
        self._count("rejected.late")
        self._late.append((source, "dead_letter"))
        behind = watermark - ev.time
        return Rejected(
            reason="late",
            detail=f"{source} event {behind:.0f} s behind the watermark, later than its"
            " input's allowed lateness, and its entity is no longer held",
            origin=ev.origin,
            record=msgspec.json.encode(ev).decode(),
        )

    def _reject_future(self, ev: Event, ahead: float) -> Rejected:
        """``ahead`` seconds ahead of the wall clock, more than ``max_future_seconds``: a
        dead letter."""
        source = source_kind(ev.format)
        self._count(f"future.dead_letter.{source}")
        self._count("rejected.future")
        return Rejected(
            reason="future",
            detail=f"{source} event {ahead:.0f} s ahead of the wall clock, more than"
            f" pipeline.max_future_seconds ({self.max_future_s:.0f}): a skewed clock or a"
            " forged record",
            origin=ev.origin,
            record=truncate(msgspec.json.encode(ev).decode(), 2048),
        )

    def _defer(self, ev: Event, until: float, key: EntityKey | None = None) -> None:
        """Route ``ev`` when emission reaches event time ``until``, in content order.

        Past ``max_pending_records`` waiting events (a flood, or an input stalled far
        behind the others) the event is dead-lettered with reason ``pending_cap``.
        """
        if self.schedule.defer(ev, until, key, self.settings.pipeline.max_pending_records):
            return
        self._count("capped.pending")
        self._overflow.append(
            Rejected(
                reason="pending_cap",
                detail=f"{self.schedule.deferred_count()} records wait for the watermark",
                origin=ev.origin,
                record=truncate(msgspec.json.encode(ev).decode(), 2048),
            )
        )

    def _route(self, key: EntityKey, ev: Event) -> None:
        table = self.table
        if table.is_dead(key, ev):
            self._count("after_end_events")
            return
        state = table.states.get(key)
        if state is None:
            self._note_new_entity(key, ev)
            state = table.state_for(key, ev)
        elif state.deleted_at is not None and of_next_life(
            state, ev, self._successors.get(key, ())
        ):
            # same name, later life (a StatefulSet pod recreated): held until the old
            # incarnation is profiled, then routed to a fresh state (only a deleted one has
            # a next life: the test first spares the call for every other event)
            self._successors.setdefault(key, []).append(ev)
            return
        if key.kind is POD_ENTITY and ev.namespace and ev.pod:
            if ev.pod_ip:
                table.bind_ip(ev.pod_ip, key, ev.time)
            if ev.container_id:
                table.bind_container(ev.container_id, key)
        if not table.apply(state, ev):
            self._count("duplicate_actions")
        if len(state.pending) >= self.settings.pipeline.max_events_per_entity:
            self._capped_profiles.append(self._cut_evidence(state))
        self.schedule.due(key, self._next_due(state))

    def _note_new_entity(self, key: EntityKey, ev: Event) -> None:
        namespace = key.namespace or "(instances)"
        source = input_of(ev.origin) if ev.origin is not None else "-"
        if (flood := self.floods.note_new(namespace, source, ev.time)) is not None:
            self._flood_reports.append(flood)

    def _cut_evidence(self, state: EntityState) -> Profile:
        """Evidence cap: profile the entity's pending events now, as a window of their own.

        The events are scored (an attacker cannot hide an exfil behind 20,000 noise
        events), memory per entity stays bounded; the entity's next window starts here.
        """
        self._count("capped.evidence")
        events, state.pending = state.pending, []
        start = state.window_start()
        end = max(start, max(e.time for e in events))
        return self._profile(state, events, start, end, final=False, reason="evidence_cap")

    def _next_due(self, state: EntityState) -> float:
        """The earliest of: idle expiry, deletion, the end of the oldest pending window.

        Runs for every routed event: ``min``/``max`` of two values as compares (what the
        builtins return, ties and NaN included, without their call and argument tuple)."""
        due = state.last_seen + self.idle_s
        deleted = state.deleted_at
        if deleted is not None and deleted < due:
            due = deleted
        if state.pending:
            start = state.window_start()
            end = start + (self._window_index(state, start) + 1) * self.window_s
            if end < due:
                due = end
        return due + IP_BINDING_LAG_S

    def _window_index(self, state: EntityState, start: float) -> int:
        """Which window after ``start`` the entity's next window starts in (>= 0): from its
        oldest pending event, but never before what was already emitted (a late event joins
        the next profile, not a past one)."""
        first = self._oldest.of(state)
        emitted = state.emitted_until
        if emitted is not None and emitted > first:
            first = emitted
        k = math.floor((first - start) / self.window_s)
        return k if k > 0 else 0

    # ---- emission ---------------------------------------------------------------------------
    def _advance(self, limit: float) -> Output:
        out = Output()
        while True:
            first = self.schedule.next_time()
            if first > limit or first == math.inf:
                return out
            tick = tick_of(first)
            self._resolve_deferred(tick)
            due = self._emit_due(tick)
            out.extend(self._score(self._capped_profiles + due))
            self._capped_profiles = []

    def _resolve_deferred(self, tick: float) -> None:
        for ev, known in self.schedule.deferred_until(tick):
            key = known or self.table.subject_key(ev) or self.table.resolve(ev)
            if key is None:
                self._count("unattributed")
                continue
            self._route(key, ev)

    def _emit_due(self, tick: float) -> list[Profile]:
        profiles: list[Profile] = []
        for key in self.schedule.due_until(tick):
            state = self.table.states.get(key)
            if state is None:
                continue
            profiles.extend(self._emit_entity(state, tick))
            if key in self.table.states:
                self.schedule.due(key, self._next_due(state))
        return profiles

    def _emit_entity(self, state: EntityState, tick: float) -> list[Profile]:
        out: list[Profile] = []
        # complete windows strictly before the end of life
        while state.pending:
            start = state.window_start()
            k = self._window_index(state, start)
            w_start, w_end = start + k * self.window_s, start + (k + 1) * self.window_s
            ends_inside = state.deleted_at is not None and state.deleted_at <= w_end
            if w_end + IP_BINDING_LAG_S > tick or ends_inside:
                break
            events = [ev for ev in state.pending if ev.time < w_end]
            state.pending = [ev for ev in state.pending if ev.time >= w_end]
            out.append(self._profile(state, events, w_start, w_end, final=False, reason="window"))
        if state.deleted_at is not None and state.deleted_at + IP_BINDING_LAG_S <= tick:
            reason = "terminated" if state.key.kind is INSTANCE_ENTITY else "deleted"
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
        self._oldest.forget(state.key)
        for ev in sorted(self._successors.pop(state.key, []), key=lambda e: e.time):
            self._count("reincarnations", ev.kind is POD_CREATE_EVENT)
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
        self._stats["profiles"] = self._stats.get("profiles", 0) + 1  # ``_count``, inlined
        return profile

    def _score(self, profiles: list[Profile]) -> Output:
        if not profiles:
            return Output()
        if self.scorer is None:
            self.features.remember(profiles)
            return Output(profiles=profiles)
        scored = self.scorer.score(profiles)
        self._count("alerts_folded", sum(1 for s in scored if s.folded))
        teaches = LearningGate.teaches_memory
        known = [
            teaches(s.profile, s.alert is not None or s.folded or s.campaign is not None)
            for s in scored
        ]
        released = list(getattr(self.scorer, "released", ()))  # recurred: now the workload's
        pairs = list(zip(scored, known, strict=True))
        self.features.remember(
            [_without(s.profile, getattr(s, "kept_hosts", ())) for s, ok in pairs if ok] + released,
            paged=[s.profile for s, ok in pairs if not ok],
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
            "seq": self.schedule.seq,
            "states": list(table.states.values()),
            "ip_bindings": table._ip_bindings,
            "containers": table._containers,
            "launches": table.launches,
            "tombstones": list(table._tombstones.items()),
            "dormant": list(table._dormant.items()),
            "deferred": self.schedule.deferred_snapshot(),
            "successors": list(self._successors.items()),
            "memory": self.features.memory.snapshot(),
            "stats": dict(self._stats),
            **msgspec.structs.asdict(self.clock.snapshot()),
            "scorer": self.scorer.snapshot() if self.scorer is not None else None,
            "floods": self.floods.snapshot(),
        }
        return msgspec.msgpack.encode(doc)

    def restore(self, data: bytes) -> None:
        """Inverse of :meth:`snapshot`; the due-heap is rebuilt from the restored states."""
        doc = msgspec.msgpack.decode(data, type=_Snapshot)
        if doc.format != _SNAPSHOT_FORMAT or doc.spec_version != self.spec.version:
            raise ValueError("checkpoint was written by another pipeline or feature spec version")
        self.table = EntityTable()
        self._oldest = OldestPending()
        for state in doc.states:
            self.table.states[state.key] = state
        self.table._ip_bindings = {ip: [tuple(b) for b in v] for ip, v in doc.ip_bindings.items()}
        self.table._containers = dict(doc.containers)
        self.table.launches = dict(doc.launches)
        for key, died in doc.tombstones:
            self.table._tombstones[key] = died
        for key, dormant in doc.dormant:
            self.table._dormant[key] = dormant
        self._successors = dict(doc.successors)
        due = [(self._next_due(s), s.key) for s in self.table.states.values()]
        self.schedule.restore(doc.deferred, doc.seq, due)
        self.features.memory.restore(doc.memory)
        self._stats = dict(doc.stats)
        self.clock.restore(
            WatermarkState(
                max_time=doc.max_time,
                source_time=doc.source_time,
                input_lateness=doc.input_lateness,
                lateness_seen=doc.lateness_seen,
                watermark_floor=doc.watermark_floor,
            )
        )
        if self.scorer is not None and doc.scorer is not None:
            self.scorer.restore(doc.scorer)
        self.floods.restore(doc.floods or {})


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
    input_lateness: dict[str, float] = {}
    lateness_seen: float = 0.0
    launches: dict[str, list[Event]] = msgspec.field(default_factory=dict)
    floods: dict | None = None  # absent in checkpoints written before the flood monitor
    dormant: list[tuple[EntityKey, Dormant]] = msgspec.field(default_factory=list)


def _without(profile: Profile, hosts: Iterable[str]) -> Profile:
    """``profile`` as the first-seen memory may learn it: without the hosts the learning
    gate keeps from it (:meth:`LearningGate.kept_from_memory`)."""
    drop = set(hosts)
    if not drop:
        return profile
    kept = [d for d in profile.destinations if d not in drop]
    return msgspec.structs.replace(profile, destinations=kept)
