"""Arrival order must not change profiles: ``serve`` and ``replay`` see the same events in
different orders.

``replay`` merges files by event time. ``serve`` reads several topics at different speeds:
one topic can be read far ahead of the watermark (which waits for the slowest input), and
within a topic records may be late by up to the allowed lateness. Whatever the order, the
profiles (hence the alerts) must be the same.
"""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.config import Settings
from churnguard.ingest.events import ActorKind, Event, EventKind, Origin
from churnguard.pipeline import Pipeline
from churnguard.profiling.entities import DEATH_GRACE_S

T0 = 1_772_409_600.0
LATENESS = Settings().pipeline.allowed_lateness_seconds or 60.0
AUDIT, RUNTIME = Origin(source="audit", partition=0), Origin(source="runtime", partition=0)


def ev(t: float, kind: EventKind, pod: str = "db-0", **kw) -> Event:
    kw.setdefault("namespace", "data")
    return Event(time=T0 + t, kind=kind, pod=pod, format="test", **kw)


def profiles(arrivals: list[Event], sources: list[Origin] | None = None) -> list:
    """Feed one event at a time (the watermark moves in small steps), then finish."""
    pipe = Pipeline(Settings())
    if sources:
        pipe.expect_sources(f"{o.source}[{o.partition}]" for o in sources)
    out = pipe.ingest([])
    for e in arrivals:
        out.extend(pipe.ingest([e]))
    out.extend(pipe.finish())
    assert pipe.stats["late_events"] == 0  # every reordering stays within the lateness
    return out.profiles


def encoded(arrivals: list[Event], sources: list[Origin] | None = None) -> list[bytes]:
    return [msgspec.json.encode(p) for p in profiles(arrivals, sources)]


def restart() -> list[Event]:
    """db-0 deleted at 100 s and recreated at 140 s (a StatefulSet), activity on both sides."""
    sts = {"workload": "StatefulSet/db", "service_account": "db"}
    person = {"actor": "alice", "actor_kind": ActorKind.PERSON}
    return [
        ev(0, EventKind.POD_CREATE, **sts, pod_uid="old", image="db:1"),
        ev(50, EventKind.POD_EXEC, **person),
        ev(100, EventKind.POD_DELETE, **person),
        ev(140, EventKind.POD_CREATE, **sts, pod_uid="new", image="db:2"),
        ev(150, EventKind.PROCESS_EXEC, binary="/bin/sh", container_id="c-new"),
        ev(400, EventKind.POD_EXEC, **person),
    ]


def test_the_successors_events_arriving_before_the_deletion_change_nothing() -> None:
    in_order = restart()
    # the new pod's create and exec (40 and 50 s after the delete) arrive before the delete
    delete_last = [in_order[i] for i in (0, 1, 3, 4, 2, 5)]
    assert encoded(delete_last) == encoded(in_order)

    old, new = profiles(in_order)
    assert (old.entity.uid, old.end_reason, old.values["lifetime_s"]) == ("old", "deleted", 100)
    assert old.values["shell_spawned"] == 0  # the successor's shell is not the old pod's
    assert (new.entity.uid, new.entity.image) == ("new", "db:2")
    assert new.values["shell_spawned"] == 1


def test_a_pod_recreated_within_the_grace_is_its_own_life_from_its_creation() -> None:
    """A StatefulSet recreates redis-0 a second after an eviction: the successor's creation
    and start-up (its shell 5 s later, an exec with no uid) are its own, not the dying
    pod's stragglers; the old pod's own late event within the grace stays the old pod's."""
    sts = {"workload": "StatefulSet/db", "service_account": "db"}
    evict = {"actor": "system:serviceaccount:kube-system:cluster-autoscaler",
             "actor_kind": ActorKind.CONTROLLER}  # fmt: skip
    person = {"actor": "alice", "actor_kind": ActorKind.PERSON}
    events = [
        ev(0, EventKind.POD_CREATE, **sts, pod_uid="old", image="db:1"),
        ev(50, EventKind.PROCESS_EXEC, binary="/usr/bin/db", container_id="c-old"),
        ev(100, EventKind.POD_DELETE, pod_uid="old", **evict),
        ev(100.5, EventKind.PROCESS_EXEC, binary="/usr/bin/db-flush", container_id="c-old"),
        ev(101, EventKind.POD_CREATE, **sts, pod_uid="new", image="db:2"),
        ev(106, EventKind.PROCESS_EXEC, binary="/bin/sh", container_id="c-new"),
        ev(110, EventKind.POD_EXEC, **person),
    ]
    old, new = profiles(events)
    assert (old.entity.uid, old.values["lifetime_s"]) == ("old", 100)
    assert (old.values["distinct_binaries"], old.values["shell_spawned"]) == (2, 0)
    assert (new.entity.uid, new.entity.image) == ("new", "db:2")
    assert (new.values["shell_spawned"], new.values["exec_count"]) == (1, 1)
    delete_last = [events[i] for i in (0, 1, 4, 5, 2, 3, 6)]
    assert encoded(delete_last) == encoded(events)


@settings(max_examples=25, deadline=None)
@given(
    gap=st.floats(min_value=0.0, max_value=90.0),
    start_up=st.floats(min_value=0.5, max_value=20.0),
    straggler=st.floats(min_value=0.0, max_value=DEATH_GRACE_S),
)
def test_whatever_the_gap_the_successor_keeps_its_life_and_the_dead_pod_its_own(
    gap: float, start_up: float, straggler: float
) -> None:
    """Recreated any time after the delete (within the grace or not), the new pod's creation
    and start-up are never the old pod's, and the old pod's stragglers before the new
    creation are never the new pod's."""
    sts = {"workload": "StatefulSet/db", "service_account": "db"}
    ctl = {"actor": "sts", "actor_kind": ActorKind.CONTROLLER}
    born = 100 + gap
    events = [
        ev(
            0, EventKind.POD_CREATE, **sts, pod_uid="old", actor="sts", actor_kind=ctl["actor_kind"]
        ),
        ev(100, EventKind.POD_DELETE, pod_uid="old", **ctl),
        ev(born, EventKind.POD_CREATE, **sts, pod_uid="new", image="db:2"),
        ev(born + start_up, EventKind.PROCESS_EXEC, binary="/bin/sh", container_id="c-new"),
    ]
    if 100 + straggler < born:  # the old pod's own last process, before the new one exists
        events.append(ev(100 + straggler, EventKind.PROCESS_EXEC, binary="/usr/bin/flush"))
    events.sort(key=lambda e: e.time)
    old, new = profiles(events)
    assert (old.entity.uid, new.entity.uid) == ("old", "new")
    assert old.values.get("shell_spawned", 0) == 0 and new.values["shell_spawned"] == 1
    assert "/usr/bin/flush" not in new.binaries


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_restarting_pods_with_deletions_arriving_late_give_identical_profiles(seed: int) -> None:
    rng = random.Random(seed)
    events: list[Event] = []
    for k in range(6):  # six StatefulSet pods, each deleted and recreated again and again
        name, t = f"db-{k}", rng.uniform(0, 60)
        for life in range(8):
            events.append(ev(t, EventKind.POD_CREATE, name, pod_uid=f"u{k}.{life}"))
            for _ in range(rng.randint(0, 4)):
                binary = rng.choice(["/bin/sh", "/usr/bin/db"])
                events.append(
                    ev(t + rng.uniform(1, 90), EventKind.PROCESS_EXEC, name, binary=binary)
                )
            t += rng.uniform(60, 120)
            controller = {"actor": "sts", "actor_kind": ActorKind.CONTROLLER}
            events.append(ev(t, EventKind.POD_DELETE, name, **controller))
            t += rng.uniform(5, 60)  # the successor: sometimes within the grace, often not
    events.sort(key=lambda e: e.time)

    def arrival(e: Event) -> float:  # the audit topic lags: deletions arrive up to 54 s late
        lag = 0.9 * LATENESS if e.kind is EventKind.POD_DELETE else 5.0
        return e.time + rng.uniform(0, lag)

    arrivals = sorted(events, key=arrival)
    at = {id(e): i for i, e in enumerate(arrivals)}
    overtaking = [
        e
        for d in events
        if d.kind is EventKind.POD_DELETE
        for e in events
        if e.pod == d.pod and e.time > d.time + DEATH_GRACE_S and at[id(e)] < at[id(d)]
    ]
    assert overtaking  # some successor events do arrive before the deletion ending the past
    assert encoded(arrivals) == encoded(events)


def test_a_deletion_read_ahead_of_the_watermark_does_not_revive_an_idle_pod() -> None:
    """What made serve and replay differ on the simulated cluster of test_serve_pipeline.

    ``web-1`` goes quiet, so event time expires it after the idle timeout; two hours later it
    is deleted (the controller tidying up). Replay expires it first and profiles the
    deletion on its own. Serve, reading the audit topic ahead of the runtime topic, used
    to fold the deletion into the expired pod at once, because the watermark (held back by
    the runtime topic) had not reached the expiry yet: one profile fewer, one alert fewer.
    """
    gc = {"actor": "system:serviceaccount:kube-system:generic-garbage-collector",
          "actor_kind": ActorKind.CONTROLLER}  # fmt: skip
    audit = [
        ev(0, EventKind.POD_CREATE, "web-1", origin=AUDIT),
        ev(4000, EventKind.POD_CREATE, "web-2", origin=AUDIT),
        ev(8000, EventKind.POD_DELETE, "web-1", origin=AUDIT, **gc),
        ev(9000, EventKind.POD_CREATE, "web-3", origin=AUDIT),
    ]
    runtime = [
        ev(10, EventKind.PROCESS_EXEC, "web-1", binary="/app/web", origin=RUNTIME),
        ev(5000, EventKind.PROCESS_EXEC, "web-2", binary="/app/web", origin=RUNTIME),
        ev(9500, EventKind.PROCESS_EXEC, "web-3", binary="/app/web", origin=RUNTIME),
    ]
    by_time = sorted(audit + runtime, key=lambda e: e.time)
    audit_ahead = audit + runtime  # the whole audit partition fetched before the runtime one
    assert encoded(audit_ahead, [AUDIT, RUNTIME]) == encoded(by_time, [AUDIT, RUNTIME])
    web1 = [p for p in profiles(by_time, [AUDIT, RUNTIME]) if p.entity.pod == "web-1"]
    # its first window, then (expired, forgotten) the deletion on its own
    assert [(p.end_reason, p.window_start - T0) for p in web1] == [("window", 0), ("deleted", 8000)]
