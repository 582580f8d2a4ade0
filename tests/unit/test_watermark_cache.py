"""The watermark's cached value equals the value worked out afresh after every step: an
input moving on above the inputs' minimum leaves it where it was (Watermark.observe)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.ingest.events import Event, EventKind, Origin
from churnguard.ingest.watermark import Watermark

_INPUTS = ["audit.log", "cloudtrail.json", "flows.jsonl"]
_FORMATS = ["k8s_audit", "cloudtrail", "flow"]
_step = st.one_of(
    st.tuples(
        st.just("observe"),
        st.sampled_from(_INPUTS),
        st.sampled_from(_FORMATS),
        st.floats(0, 3600, allow_nan=False),
    ),
    st.tuples(st.just("idle"), st.frozensets(st.sampled_from(_INPUTS))),
    st.tuples(st.just("progress"), st.sampled_from(_INPUTS), st.floats(0, 3600)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_INPUTS), max_size=3), st.booleans(), st.lists(_step))
def test_cached_value_is_the_value_worked_out_afresh(expected, routed, steps):
    cached, fresh = (Watermark(60.0, {"cloudtrail": 900.0}) for _ in range(2))
    for w in (cached, fresh):
        w.expect(expected, routed=routed)
    for step in steps:
        for w in (cached, fresh):
            if step[0] == "observe":
                _, source, fmt, time = step
                ev = Event(
                    time=time, kind=EventKind.API_CALL, format=fmt, origin=Origin(source=source)
                )
                w.observe(ev)
            elif step[0] == "idle":
                w.set_idle(step[1])
            else:
                w.progress(step[1], step[2])
        fresh._value = None  # worked out again from the inputs' progress
        assert cached.value == fresh.value


def test_a_caught_up_inputs_hold_moves_with_the_newest_event() -> None:
    """A caught-up input holds the value by its lateness behind the newest event anywhere, so
    an input above the minimum moving on can move the value: the cache must not keep it."""
    cached = Watermark(60.0, {"cloudtrail": 900.0})
    cached.expect(["audit[0]", "cloudtrail[0]"])
    trail, audit = Origin(source="cloudtrail", partition=0), Origin(source="audit", partition=0)
    cached.observe(Event(time=0.0, kind=EventKind.CLOUD_CALL, format="cloudtrail", origin=trail))
    cached.set_idle(["cloudtrail[0]"])
    cached.observe(Event(time=1000.0, kind=EventKind.API_CALL, format="k8s_audit", origin=audit))
    assert cached.value == 1000.0 - 900.0
    cached.observe(Event(time=2000.0, kind=EventKind.API_CALL, format="k8s_audit", origin=audit))
    assert cached.value == 2000.0 - 900.0
