"""The emission schedule hands deferred events back in (until, event time, content, arrival)
order, whatever order they were deferred in and however emission steps through time: the
order one heap of ``(until, order_key, seq)`` gave before the heap kept (until, time, seq)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.ingest.events import Event, EventKind
from churnguard.ingest.ordering import order_key
from churnguard.profiling.schedule import EmissionSchedule

_deferral = st.tuples(
    st.sampled_from([0.0, 1.5, 60.0, 61.0, 120.0]),  # few times: many ties
    st.sampled_from([0.0, 30.0]),  # until = time + this
    st.sampled_from(["a", "b", "c"]),  # content
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_deferral, max_size=30), st.lists(st.sampled_from([0.0, 60.0, 90.0, 180.0])))
def test_deferred_events_come_back_in_content_order(deferrals, steps):
    schedule = EmissionSchedule()
    waiting = []
    for seq, (time, lag, pod) in enumerate(deferrals, start=1):
        ev = Event(time=time, kind=EventKind.NET_FLOW, format="flow", pod=pod, namespace="ns")
        schedule.defer(ev, time + lag)
        waiting.append((time + lag, order_key(ev), seq, ev))
    got, expected = [], []
    for t in [*sorted(steps), float("inf")]:
        got += [id(ev) for ev, _ in schedule.deferred_until(t)]
        due = sorted(w for w in waiting if w[0] <= t)  # seq is unique: events never compared
        expected += [id(ev) for _, _, _, ev in due]
        waiting = [w for w in waiting if w[0] > t]
        assert schedule.deferred_count() == len(waiting)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            _deferral,
            st.tuples(st.sampled_from([0.0, 30.0, 60.0, 90.0, 180.0, float("inf")])),
            st.just(("restore",)),
        ),
        max_size=60,
    )
)
def test_deferrals_between_drains_and_restores_keep_the_order(steps):
    """Deferrals out of time order, between drains of part of what waits and checkpoint
    round trips: each drain gives what the reference order gives, and the counts agree."""
    schedule, waiting, seq = EmissionSchedule(), [], 0
    for step in steps:
        if len(step) == 3:
            time, lag, pod = step
            ev = Event(time=time, kind=EventKind.NET_FLOW, format="flow", pod=pod, namespace="ns")
            seq += 1
            schedule.defer(ev, time + lag)
            waiting.append((time + lag, order_key(ev), seq, ev))
        elif step[0] == "restore":
            restored = EmissionSchedule()
            restored.restore(schedule.deferred_snapshot(), schedule.seq, [])
            schedule = restored
        else:
            (t,) = step
            got = [id(ev) for ev, _ in schedule.deferred_until(t)]
            assert got == [id(w[3]) for w in sorted(w for w in waiting if w[0] <= t)]
            waiting = [w for w in waiting if w[0] > t]
        assert schedule.deferred_count() == len(waiting)
        assert schedule.next_time() == min((w[0] for w in waiting), default=float("inf"))
