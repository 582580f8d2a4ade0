"""The event-time watermark, with an allowed lateness per source.

Sources are delivered with different delays: CloudTrail files arrive up to ~15 minutes
behind event time and interleave inside a file, while audit webhooks, runtime exporters
and flow logs are a few seconds behind. One lateness for all either loses CloudTrail or
holds everything back by 15 minutes, so each input is held back by the lateness of the
source it carries.

The watermark is the event time up to which input is taken as complete. With one input
(a test feeding events, or files merged by time) it is the newest event minus the largest
lateness of the sources seen. With several inputs (a shard's partitions of several
topics, read at different speeds) it is the minimum over the inputs of *their* newest
event minus *their* lateness: a topic read ahead of the others must not make their
records late, and a CloudTrail topic holds the watermark 15 minutes behind its own
newest record. An input marked idle (caught up) no longer holds it back by its own newest
record, which may be old; it holds it back by its lateness behind the newest record of any
input, since that is how old what it delivers next may be. Without that a CloudTrail topic
read to its end between two files let the others move the watermark on, and the next
file's records were all late. It never moves backwards.

Event time counts only up to the wall clock. Without that one record dated in the future
(a node's clock years off, or a line a compromised container wrote to a log shipper's
stream in a flow record's shape) carried the watermark there for good, and every record
after it was late: a shard made blind by one line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping

import msgspec

from churnguard.ingest.events import Event, Origin

# the source kind of each adapter's events: what lateness defaults and late counts are keyed by
SOURCE_OF_FORMAT: dict[str, str] = {
    "k8s_audit": "audit",
    "cloudtrail": "cloudtrail",
    "falco": "runtime",
    "tetragon": "runtime",
    "flow": "flows",
}
SOURCES: tuple[str, ...] = ("audit", "cloudtrail", "runtime", "flows")


def source_kind(event_format: str) -> str:
    """``audit``, ``cloudtrail``, ``runtime`` or ``flows`` for an adapter's format name."""
    return SOURCE_OF_FORMAT.get(event_format, event_format)


def input_of(origin: Origin) -> str:
    """The input an origin belongs to: ``topic[partition]``, or the file name."""
    return f"{origin.source}[{origin.partition}]" if origin.partition is not None else origin.source


class WatermarkState(msgspec.Struct, kw_only=True):
    """What a checkpoint keeps of a :class:`Watermark` (names as checkpoint format 1 has them)."""

    max_time: float | None = None
    source_time: dict[str, float] = msgspec.field(default_factory=dict)
    input_lateness: dict[str, float] = msgspec.field(default_factory=dict)
    lateness_seen: float = 0.0
    watermark_floor: float | None = None


class Watermark:
    """Event-time progress of one shard's inputs; see the module docstring.

    Parameters
    ----------
    default_lateness:
        seconds for a source or topic not named in ``lateness``.
    lateness:
        seconds per source kind (``audit``, ``cloudtrail``, ``runtime``, ``flows``) or per
        topic name; a topic's entry wins over the kinds of the records on it.
    """

    def __init__(
        self,
        default_lateness: float,
        lateness: Mapping[str, float],
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.default_lateness = default_lateness
        self.lateness = dict(lateness)
        self.max_time = -math.inf
        self._expected: frozenset[str] = frozenset()
        self._idle: frozenset[str] = frozenset()
        self._input_time: dict[str, float] = {}
        self._input_lateness: dict[str, float] = {}
        self._lateness_seen = 0.0
        self._floor = -math.inf
        self._value: float | None = None  # ``value`` until the inputs' progress changes
        self._format_lateness: dict[str, float] = {}  # lateness_of(source_kind(format))
        self._started = False  # every expected input has delivered (or been marked) once
        # per input in ``_input_time`` (same order): its time net of its lateness, updated as
        # either moves, so that the watermark is a ``min`` over it, not a list built each time
        self._net: dict[str, float] = {}
        self._wall = wall
        self.wall_seen = -math.inf  # the wall clock at its last reading

    def ahead_of_wall(self, t: float) -> float:
        """Seconds event time ``t`` is ahead of the wall clock; 0.0 when it is not.

        The clock is read only for a time past its last reading: live, for the newest
        events; replaying history, once."""
        if t <= self.wall_seen:
            return 0.0
        self.wall_seen = self._wall()
        return t - self.wall_seen if t > self.wall_seen else 0.0

    @property
    def max_lateness(self) -> float:
        """The largest lateness any input can have: how far emission may trail ``max_time``."""
        default = self.default_lateness  # no starred list inside max(): Cython rejects it
        return max(default, max(self.lateness.values(), default=default))

    def lateness_of(self, source: str) -> float:
        """Allowed lateness of a source kind or topic."""
        return self.lateness.get(source, self.default_lateness)

    def expect(self, inputs: Iterable[str], *, routed: bool = False) -> None:
        """Name the inputs (``input_of`` names) whose progress aligns the watermark.

        ``routed``: they reach this shard through the route stage, which sends it only some
        of their records; each is held back by the largest lateness from the start, as a
        progress marker holds it (:meth:`progress`). Were it held back by the lateness of the
        first records that happen to arrive before the first marker, whether a record is
        late would depend on when the router's markers were sent.
        """
        self._expected = frozenset(inputs)
        self._started = False
        if routed:
            for name in self._expected:
                self._input_lateness[name] = self.max_lateness
                self._note_net(name)
        self._value = None

    def progress(self, name: str, time: float) -> None:
        """An input read up to ``time`` elsewhere (repartitioned: its records went to other
        shards). Its lateness here is the largest any source has, since the kinds of the
        records that went elsewhere are not known here: never a wrong "late", at worst a
        later emission."""
        if time > self.wall_seen:  # as for an event: up to the wall clock
            time -= self.ahead_of_wall(time)
        if time > self._input_time.get(name, -math.inf):
            self._input_time[name] = time
        self._input_lateness[name] = self.max_lateness
        self._note_net(name)
        # input is complete up to ``time`` here too: once every input is idle, emission
        # reaches where a shard holding every record would be, not this shard's newest event
        self.max_time = max(self.max_time, time)
        self._value = None

    def set_idle(self, inputs: Iterable[str]) -> None:
        """Inputs that have nothing more to read right now."""
        self._idle = frozenset(inputs)
        self._value = None

    def observe(self, ev: Event) -> None:
        """Account for an event that is not late.

        Runs for every event: the running maxima are compares, not ``max`` calls (on
        Python 3.11 a builtin ``max(a, b)`` packs a tuple and iterates it; ``b if b > a
        else a`` is what it returns, NaN and signed zeros included). ``value`` is computed
        again only when one of them moved, and not when an input above the inputs' minimum
        moved on: from the same progress it is the same."""
        t = ev.time
        if t > self.wall_seen:  # ahead of the clock's last reading: counts up to the clock
            t -= self.ahead_of_wall(t)
        moved = False
        if t > self.max_time:
            self.max_time = t
            moved = True
        lateness = self._format_lateness.get(ev.format)
        if lateness is None:
            lateness = self._format_lateness[ev.format] = self.lateness_of(source_kind(ev.format))
        origin = ev.origin
        if not self._expected or origin is None:
            if lateness > self._lateness_seen:
                self._lateness_seen = lateness
                moved = True
        else:
            name = input_of(origin)
            if origin.source in self.lateness:
                lateness = self.lateness[origin.source]
            before = self._input_lateness.get(name)
            if before is None:  # max(0.0, lateness), as it was
                self._input_lateness[name] = lateness if lateness > 0.0 else 0.0
                moved = True
            elif lateness > before:
                self._input_lateness[name] = lateness
                moved = True
            if t > self._input_time.get(name, -math.inf):
                self._input_time[name] = t
                moved = True
            if moved:
                net = self._input_time[name] - self._input_lateness[name]
                old, self._net[name] = self._net.get(name), net
                if old is not None and net >= old and self._holds(name, old):
                    return  # it moved on above the inputs' minimum: the value stays
        if moved:
            self._value = None

    def _holds(self, name: str, net: float) -> bool:
        """Input ``name``, at ``net``, is above the value ``value`` holds, and no input is
        idle: so it is among the inputs the minimum is taken over and not that minimum, and
        no caught-up input's hold moves with the newest event (``_complete_until``)."""
        value = self._value
        return value is not None and self._started and not self._idle and net > value

    @property
    def value(self) -> float:
        """Event time up to which input is complete (already net of the lateness).

        Read for every event and every record; computed again only after a change."""
        if self._value is None:
            self._value = self._complete_until()
        return self._value

    def _complete_until(self) -> float:
        if not self._expected:
            newest = self.max_time - self._lateness_seen
        elif not self._started and not self._expected - self._input_time.keys() <= self._idle:
            return self._floor  # an input that is not idle has not delivered anything yet
        else:
            # inputs are never forgotten (but on restore): once all were there, they stay
            if not self._started:
                self._started = self._expected <= self._input_time.keys()
            idle = self._idle
            active: Collection[float] = self._net.values()  # mostly none idle: no list made
            if idle:
                active = [v for s, v in self._net.items() if s not in idle]
            newest = min(active) if active else self.max_time - self._max_input_lateness()
            if idle and active:
                # caught up is "nothing to read now", not "complete": what a caught-up input
                # delivers next may still be its lateness behind the newest event anywhere
                # (a CloudTrail file lands every ~5 minutes, its events 5-15 minutes old)
                held = [self.max_time - self._input_lateness[s] for s in self._net if s in idle]
                if held:
                    newest = min(newest, min(held))
        if newest > self._floor:  # never backwards (max(floor, newest), as a compare)
            self._floor = newest
        return self._floor

    def _note_net(self, name: str) -> None:
        if name in self._input_time:
            lateness = self._input_lateness.get(name, self.default_lateness)
            self._net[name] = self._input_time[name] - lateness

    def _max_input_lateness(self) -> float:
        return max(self._input_lateness.values(), default=self._lateness_seen)

    def snapshot(self) -> WatermarkState:
        return WatermarkState(
            max_time=_finite(self.max_time),
            source_time=dict(self._input_time),
            input_lateness=dict(self._input_lateness),
            lateness_seen=self._lateness_seen,
            watermark_floor=_finite(self._floor),
        )

    def restore(self, state: WatermarkState) -> None:
        self.max_time = state.max_time if state.max_time is not None else -math.inf
        self._input_time = dict(state.source_time)
        self._started = False
        self._input_lateness = dict(state.input_lateness)
        self._lateness_seen = state.lateness_seen
        self._net = {}
        for name in self._input_time:
            self._note_net(name)
        self._floor = state.watermark_floor if state.watermark_floor is not None else -math.inf
        self._value = None


def _finite(t: float) -> float | None:
    return t if math.isfinite(t) else None
