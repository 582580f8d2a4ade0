"""Any arrival order within each source's allowed lateness gives the same alert ids.

This is what ``serve`` sees: each topic is its own input, records arrive out of event-time
order by up to their source's lateness (CloudTrail 15 min, the others 1 min by default),
and the pipeline must fold, window and score exactly what a sorted replay does. Delays are
drawn per record below each source's lateness, so nothing may be late, and the alert ids
and feature rows must equal those of the sorted order.
"""

from __future__ import annotations

import random

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.config import Settings
from churnguard.ingest import parse_record
from churnguard.ingest.events import Event, Origin
from churnguard.ingest.watermark import source_kind
from churnguard.pipeline import Pipeline
from churnguard.simulate import SimParams, generate
from churnguard.wiring import make_pipeline

SETTINGS = Settings()


@pytest.fixture(scope="module")
def events() -> list[Event]:
    sim = generate(SimParams(seed=5, hours=3.0, namespaces=6))
    out = []
    for fmt, rows in sim.records.items():
        for row in rows:
            for ev in parse_record(orjson.dumps(row)).events:
                ev.origin = Origin(source=source_kind(fmt), partition=0)  # a topic per source
                out.append(ev)
    return sorted(out, key=lambda e: e.time)


def run(arrivals: list[Event]) -> tuple[list[str], list[bytes]]:
    pipe = make_pipeline(SETTINGS)
    pipe.expect_sources(sorted({f"{e.origin.source}[0]" for e in arrivals}))
    out = pipe.ingest([])
    for i in range(0, len(arrivals), 40):  # polls of 40 records
        out.extend(pipe.ingest(arrivals[i : i + 40]))
    out.extend(pipe.finish())
    assert pipe.stats["late_events"] == 0 and not out.late
    rows = sorted(
        msgspec.json.encode([p.entity, p.window_start, p.window_end, p.values])
        for p in (s.profile for s in out.scored)
    )
    return sorted(a.alert_id for a in out.alerts), rows


@pytest.fixture(scope="module")
def in_order(events: list[Event]) -> tuple[list[str], list[bytes]]:
    ids, rows = run(events)
    assert ids and rows, "the simulated attacks should raise alerts"
    return ids, rows


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.1, 0.999))
def test_any_arrival_order_within_the_lateness_gives_the_same_alert_ids(
    events: list[Event], in_order: tuple[list[str], list[bytes]], seed: int, scale: float
) -> None:
    rng = random.Random(seed)
    clock = Pipeline(SETTINGS).clock
    delay = {e.origin.source: clock.lateness_of(e.origin.source) * scale for e in events}
    arrivals = sorted(events, key=lambda e: e.time + rng.random() * delay[e.origin.source])
    assert arrivals != events
    assert run(arrivals) == in_order
