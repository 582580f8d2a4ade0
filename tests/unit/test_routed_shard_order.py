"""A repartitioned shard gives the same profiles for any interleaving of its inputs.

Routers on different members write one shard's partition, so the records of two input
partitions arrive interleaved in any way that keeps each input's own order, with the
routers' progress markers wherever their timers put them. None of that may change what
the shard emits.
"""

from __future__ import annotations

import itertools

import msgspec

from churnguard.config import Settings
from churnguard.ingest.events import Event, EventKind, Origin
from churnguard.ingest.watermark import input_of
from churnguard.pipeline import Pipeline

T0 = 1_772_409_600.0
A, B = Origin(source="runtime", partition=0), Origin(source="runtime", partition=1)


def _exec(t: float, pod: str, origin: Origin) -> Event:
    return Event(time=T0 + t, kind=EventKind.PROCESS_EXEC, format="falco", namespace="shop",
                 pod=pod, binary="/bin/sh", origin=origin)  # fmt: skip


# input A delivers one record 100 s behind its previous one: later than runtime's own
# lateness (60 s), within the largest (CloudTrail's 900 s) that a marker holds an input to
ON_A = [("ev", _exec(0, "web-1", A)), ("ev", _exec(1000, "web-1", A)),
        ("marker", (A, T0 + 1000)), ("ev", _exec(900, "web-1", A))]  # fmt: skip
ON_B = [("ev", _exec(0, "web-2", B)), ("ev", _exec(1000, "web-2", B))]


def _interleavings(a: list, b: list):
    for slots in itertools.combinations(range(len(a) + len(b)), len(a)):
        ia, ib, out = iter(a), iter(b), []
        for i in range(len(a) + len(b)):
            out.append(next(ia) if i in slots else next(ib))
        yield out


def _run(arrivals: list) -> tuple[list[bytes], int]:
    pipe = Pipeline(Settings())
    pipe.expect_sources([input_of(A), input_of(B)], routed=True)
    out = pipe.ingest([])
    for what, item in arrivals:
        if what == "marker":
            origin, t = item
            pipe.note_progress(input_of(origin), t)
        else:
            out.extend(pipe.ingest([msgspec.structs.replace(item)]))
    out.extend(pipe.set_idle([input_of(A), input_of(B)]))
    out.extend(pipe.finish())
    late = pipe.stats["late.applied.runtime"] + pipe.stats["late.dead_letter.runtime"]
    return [msgspec.json.encode(p) for p in out.profiles], late


def test_every_interleaving_of_two_routed_inputs_gives_the_same_profiles():
    runs = {tuple(_run(order)[0]) for order in _interleavings(ON_A, ON_B)}
    assert len(runs) == 1 and next(iter(runs))
    assert {_run(order)[1] for order in _interleavings(ON_A, ON_B)} == {0}
