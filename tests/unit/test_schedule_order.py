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
