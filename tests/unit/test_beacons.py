"""Beacons versus polling (issue 13, item 6): a long-running pod that starts calling a host
new to it on a schedule, however jittery, is a beacon; a poller calling its endpoint from
its first minutes, and irregular calls, are not."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.alerts.alert import technique_evidence
from churnguard.config import Settings
from churnguard.ingest.events import ActorKind, Event, EventKind
from churnguard.pipeline import Pipeline
from churnguard.profiling.features import LATE_AFTER_S, POLLED_FOR_S, FirstSeenMemory
from churnguard.profiling.profile import Profile
from churnguard.scoring.guards import fired

T0 = 1_772_409_600.0
HOUR = 3600.0


def _ev(t: float, kind: EventKind, pod: str, **kw) -> Event:
    return Event(time=T0 + t, kind=kind, format="test", namespace="shop", pod=pod, **kw)


def _run(pod: str, host: str, times: list[float], until: float) -> list[Profile]:
    """``pod`` created by its ReplicaSet at 0, calling ``host`` at ``times``, busy until."""
    events = [
        _ev(
            0,
            EventKind.POD_CREATE,
            pod,
            actor="system:serviceaccount:kube-system:replicaset-controller",
            actor_kind=ActorKind.CONTROLLER,
            workload="ReplicaSet/web-5d8f7c9b6",
        ),
        *(
            _ev(t, EventKind.NET_FLOW, pod, dst_fqdn=host, dst_external=True, bytes_out=400)
            for t in times
        ),
        # its own work every ten minutes: a running pod is never idle long enough to expire
        *(
            _ev(t, EventKind.PROCESS_EXEC, pod, binary="/app/server")
            for t in range(60, int(until) + 1, 600)
        ),
    ]
    pipe = Pipeline(Settings())
    out = pipe.ingest(sorted(events, key=lambda ev: ev.time))
    out.extend(pipe.finish())
    return [p for p in out.profiles if p.entity.pod == pod]


def _jittered(start: float, every: float, jitter: float, n: int, seed: int = 7) -> list[float]:
    rng, t, out = random.Random(seed), start, []
    for _ in range(n):
        out.append(t)
        t += every + rng.uniform(-jitter, jitter)
    return out


def test_a_long_running_pod_calling_a_new_host_with_minutes_of_jitter_is_a_beacon() -> None:
    # every 50 min with up to 20 min of jitter, starting three hours into the pod's life
    times = _jittered(3 * HOUR, 3000.0, 1200.0, 10)
    profiles = _run("web-1", "c2.example", times, times[-1] + 600)
    flagged = [p for p in profiles if p.late_beacons]
    assert flagged, "no window of the implant's pod was taken for a beacon"
    first = flagged[0]
    assert set(first.late_beacons) == {"c2.example"}
    assert 0.5 <= first.late_beacons["c2.example"] < 1.0
    assert [g.name for g in fired(first)] == ["beacon-to-a-new-destination"]
    c2_lines = technique_evidence(first)["T1071"]
    assert any("calls c2.example on a schedule" in line for line in c2_lines)
    # the fourth call is the first with enough gaps to tell
    assert first.window_end >= T0 + times[3]


def test_a_poller_from_its_first_minutes_and_irregular_calls_are_not_beacons() -> None:
    poller = _jittered(60.0, 300.0, 3.0, 60)  # every 5 min, +-1 %, from birth
    assert not any(p.late_beacons for p in _run("argocd-1", "api.github.com", poller, 6 * HOUR))
    rng = random.Random(3)
    irregular = sorted(3 * HOUR + rng.expovariate(1 / 1800.0) * k for k in range(1, 12))
    assert not any(p.late_beacons for p in _run("web-2", "pypi.org", irregular, 12 * HOUR))


def test_a_late_host_stops_being_news_once_the_namespace_polls_it() -> None:
    memory = FirstSeenMemory()
    memory.note_contacts("shop", "shop/web-1", ["c2.example"])
    memory.note_first_contact("shop", ["c2.example"], 3 * HOUR)
    born = 0.0
    assert memory.is_late("shop", "c2.example", "shop/web-1", born, 4 * HOUR)
    assert not memory.is_late("shop", "c2.example", "shop/web-1", born + 2 * HOUR, 4 * HOUR)
    # unknown to the memory (every window with it paged): as new as now
    assert memory.is_late("shop", "never.example", "shop/web-1", born, LATE_AFTER_S)
    # two pods polling it for half a day: the namespace's own endpoint now
    memory.note_contacts("shop", "shop/web-2", ["c2.example"])
    assert not memory.is_late("shop", "c2.example", "shop/web-2", born, 3 * HOUR + POLLED_FOR_S)
    again = FirstSeenMemory()
    again.restore(memory.snapshot())  # in the pipeline's snapshot: it survives restarts
    assert again.is_late("shop", "c2.example", "shop/web-1", born, 4 * HOUR)


WEB = "shop/ReplicaSet/web-5d8f7c9b6"


def test_a_host_new_to_an_old_workload_is_late_for_its_young_replica() -> None:
    """An implant in a replica a rollout started an hour ago: the host is news to the
    workload, whose first pod was seen hours before; the pod's own age does not hide it."""
    memory = FirstSeenMemory()
    memory.note_workload(WEB, 0.0, ["api.stripe.com"], 60.0)
    young = 5 * HOUR  # the replica was born five hours into the workload's life
    memory.note_contacts("shop", "shop/web-9", ["c2.example"])
    memory.note_first_contact("shop", ["c2.example"], young + 600)
    assert not memory.is_late("shop", "c2.example", "shop/web-9", young, young + HOUR)
    assert memory.is_late("shop", "c2.example", "shop/web-9", young, young + HOUR, WEB)
    # the workload's own endpoint, called from its first pod, is not news to a replica
    assert not memory.is_late("shop", "api.stripe.com", "shop/web-9", young, young + HOUR, WEB)
    again = FirstSeenMemory()
    again.restore(memory.snapshot())  # the workload's clock survives restarts
    assert again.is_late("shop", "c2.example", "shop/web-9", young, young + HOUR, WEB)


def test_a_one_replica_poller_is_baseline_after_half_a_day_an_implant_never() -> None:
    """A GitOps controller with one replica polls its endpoint from its first minutes: after
    ``POLLED_FOR_S`` it is the workload's baseline (no longer rare), though no second pod
    ever called it. A host first called hours into the workload's life stays rare."""
    memory = FirstSeenMemory()
    memory.note_workload(WEB, 0.0, ["api.github.com"], 120.0)
    memory.note_workload(WEB, 0.0, ["c2.example"], 3 * HOUR)
    for dest in ("api.github.com", "c2.example"):
        memory.note_contacts("shop", "shop/web-1", [dest])
    assert memory.is_rare("shop", "api.github.com", "shop/web-1", 6 * HOUR, WEB)
    assert not memory.is_rare("shop", "api.github.com", "shop/web-1", 13 * HOUR, WEB)
    assert memory.is_rare("shop", "c2.example", "shop/web-1", 48 * HOUR, WEB)
    assert memory.is_late("shop", "c2.example", "shop/web-1", 0.0, 48 * HOUR, WEB)


def _hijacked(
    pod: str, *, implant: str, exec_first: bool, later: str | None = None
) -> list[Profile]:
    """``pod`` of the web workload runs its server for three hours (quiet windows teach the
    workload its program), then ``implant`` starts and calls a host once, and the pod is
    deleted minutes later (a replica scaled down before any schedule shows)."""
    create = _ev(
        0,
        EventKind.POD_CREATE,
        pod,
        actor="system:serviceaccount:kube-system:replicaset-controller",
        actor_kind=ActorKind.CONTROLLER,
        workload="ReplicaSet/web-5d8f7c9b6",
    )
    work = [
        _ev(t, EventKind.PROCESS_EXEC, pod, binary="/app/server") for t in range(60, 11_000, 300)
    ]
    at = 3 * HOUR + 100
    story = [
        _ev(at, EventKind.PROCESS_EXEC, pod, binary=implant, args="-c import socket"),
        _ev(at + 5, EventKind.NET_FLOW, pod, dst_fqdn="c2.example", dst_external=True,
            bytes_out=400, opens_connection=True),
        _ev(at + 400, EventKind.POD_DELETE, pod, actor="system:serviceaccount:kube-system:"
            "replicaset-controller", actor_kind=ActorKind.CONTROLLER),
    ]  # fmt: skip
    if later is not None:  # the pod lives on and calls another new host an hour later
        story[-1] = _ev(
            at + 2 * HOUR,
            EventKind.POD_DELETE,
            pod,
            actor="system:serviceaccount:kube-system:replicaset-controller",
            actor_kind=ActorKind.CONTROLLER,
        )
        story.append(
            _ev(
                at + HOUR,
                EventKind.NET_FLOW,
                pod,
                dst_fqdn=later,
                dst_external=True,
                bytes_out=400,
                opens_connection=True,
            )
        )
        work += [
            _ev(t, EventKind.PROCESS_EXEC, pod, binary="/app/server")
            for t in range(int(at) + 60, int(at + 2 * HOUR), 300)
        ]
    if exec_first:
        story.insert(0, _ev(at - 30, EventKind.POD_EXEC, pod, actor="alice",
                            actor_kind=ActorKind.PERSON))  # fmt: skip
    pipe = Pipeline(Settings())
    out: list[Profile] = []
    events = sorted([create, *work, *story], key=lambda ev: ev.time)
    for hour in range(6):  # batch by batch: the memory learns between batches
        batch = [ev for ev in events if hour * HOUR <= ev.time - T0 < (hour + 1) * HOUR]
        out.extend(pipe.ingest(batch).profiles)
    out.extend(pipe.finish().profiles)
    return [p for p in out if p.entity.pod == pod]


def test_an_unfamiliar_program_calling_a_new_host_pages_before_any_schedule() -> None:
    profiles = _hijacked("web-3", implant="/tmp/.kworkerd", exec_first=False)
    flagged = [p for p in profiles if p.unfamiliar_callers]
    assert [p.unfamiliar_callers for p in flagged] == [{"c2.example": "/tmp/.kworkerd"}]
    assert "unfamiliar-program-calls-a-new-host" in [g.name for g in fired(flagged[0])]
    assert any(
        "calls c2.example, a host its workload never called, after starting /tmp/.kworkerd" in line
        for line in technique_evidence(flagged[0])["T1071"]
    )
    assert not any(p.binaries and "/tmp/.kworkerd" in p.binaries for p in profiles)
    assert any("/app/server" in p.binaries for p in profiles)


def test_a_program_run_through_kubectl_exec_is_judged_by_who_ran_it() -> None:
    profiles = _hijacked("web-4", implant="/usr/bin/curl", exec_first=True)
    assert not any(p.unfamiliar_callers for p in profiles)


def test_a_host_called_long_after_the_unfamiliar_program_is_not_tied_to_it() -> None:
    """The implant's host pages once, in the window of its first call; a host the pod first
    calls an hour later (its own code's new dependency) does not page it again."""
    profiles = _hijacked("web-5", implant="/tmp/.kworkerd", exec_first=False, later="api.x.io")
    flagged = [p.unfamiliar_callers for p in profiles if p.unfamiliar_callers]
    assert flagged == [{"c2.example": "/tmp/.kworkerd"}]
    assert any("api.x.io" in p.destinations for p in profiles)


def _replicas(implant_times: list[float], *, exec_into: bool = False) -> list[Profile]:
    """Three replicas of the web workload, created at 12 h, each calling its payment API
    every five minutes; ``web-3`` also calls ``c2.example`` at ``implant_times``. Twelve
    hours before, an earlier intrusion's pod called ``c2.example`` once in a quiet window:
    the namespace knows the host (attackers reuse hosts)."""
    rs = dict(
        actor="system:serviceaccount:kube-system:replicaset-controller",
        actor_kind=ActorKind.CONTROLLER,
        workload="ReplicaSet/web-5d8f7c9b6",
    )
    start, end = 12 * HOUR, 12 * HOUR + 7 * HOUR
    events = [
        _ev(60, EventKind.POD_CREATE, "backup-x1", actor="alice", actor_kind=ActorKind.PERSON),
        _ev(120, EventKind.NET_FLOW, "backup-x1", dst_fqdn="c2.example", dst_external=True,
            bytes_out=900),
        _ev(600, EventKind.POD_DELETE, "backup-x1", actor="alice", actor_kind=ActorKind.PERSON),
    ]  # fmt: skip
    rng = random.Random(5)
    for pod in ("web-1", "web-2", "web-3"):
        events.append(_ev(start, EventKind.POD_CREATE, pod, **rs))
        events += [
            _ev(t + rng.uniform(0, 5), EventKind.NET_FLOW, pod, dst_fqdn="api.stripe.com",
                dst_external=True, bytes_out=1200)
            for t in range(int(start) + 30, int(end), 300)
        ]  # fmt: skip
        events += [
            _ev(t, EventKind.PROCESS_EXEC, pod, binary="/usr/local/bin/python3")
            for t in range(int(start) + 60, int(end), 600)
        ]
    if exec_into:
        events.append(_ev(implant_times[0] - 30, EventKind.POD_EXEC, "web-3", actor="alice",
                          actor_kind=ActorKind.PERSON))  # fmt: skip
    events += [
        _ev(t, EventKind.NET_FLOW, "web-3", dst_fqdn="c2.example", dst_external=True,
            bytes_out=400)
        for t in implant_times
    ]  # fmt: skip
    pipe = Pipeline(Settings())
    out: list[Profile] = []
    events.sort(key=lambda ev: ev.time)
    for hour in range(20):  # batch by batch: the memory learns between batches
        batch = [ev for ev in events if hour * HOUR <= ev.time - T0 < (hour + 1) * HOUR]
        out.extend(pipe.ingest(batch).profiles)
    out.extend(pipe.finish().profiles)
    return [p for p in out if (p.entity.pod or "").startswith("web-")]


def test_a_beacon_only_one_replica_calls_pages_though_the_namespace_knows_its_host() -> None:
    """An implant in one replica of a busy Deployment calls every 30 min +-10 % a host an
    earlier intrusion used: the namespace's memory holds the host as "polled" by two pods
    for half a day, so it is neither rare nor late; no other replica ever called it."""
    times = _jittered(14 * HOUR, 1800.0, 180.0, 9)
    profiles = _replicas(times)
    assert not any(p.late_beacons for p in profiles)  # what escaped before (det9)
    flagged = [p for p in profiles if p.lone_beacons]
    assert flagged and {p.entity.pod for p in flagged} == {"web-3"}
    first = flagged[0]
    assert set(first.lone_beacons) == {"c2.example"}
    assert first.lone_beacons["c2.example"] >= 0.8
    assert "beacon-from-one-replica" in [g.name for g in fired(first)]
    assert any(
        "none of the other pods of its workload called meanwhile" in line
        for line in technique_evidence(first)["T1071"]
    )
    # the fourth beat is the first with enough gaps to tell
    assert first.window_end >= T0 + times[3]


def test_what_all_replicas_poll_or_a_person_runs_in_one_is_not_a_lone_beacon() -> None:
    # the payment API every replica calls every five minutes is the workload's baseline
    times = _jittered(14 * HOUR, 1800.0, 180.0, 9)
    assert not any("api.stripe.com" in p.lone_beacons for p in _replicas(times))
    # a person's loop in a pod they exec'd into is judged by who they are
    assert not any(p.lone_beacons for p in _replicas(times, exec_into=True))
    # calls at random moments are no schedule
    rng = random.Random(3)
    irregular = sorted(14 * HOUR + rng.uniform(0, 4 * HOUR) for _ in range(9))
    assert not any(p.lone_beacons for p in _replicas(irregular))


def test_the_replicas_memory_needs_two_live_siblings_and_survives_restarts() -> None:
    memory = FirstSeenMemory()
    memory.note_replica(WEB, "shop/web-0", ["c2.example"], 1 * HOUR)  # an earlier intrusion
    memory.note_replica(WEB, "shop/web-1", ["api.stripe.com"], 13 * HOUR)
    memory.note_replica(WEB, "shop/web-3", ["c2.example"], 13 * HOUR)
    # one live sibling is not enough to tell a replica's code from the workload's
    assert not memory.is_lone_call(WEB, "c2.example", "shop/web-3", 12 * HOUR)
    memory.note_replica(WEB, "shop/web-2", ["api.stripe.com"], 13 * HOUR)
    # web-0's call hours before this schedule began does not make the host the workload's
    assert memory.is_lone_call(WEB, "c2.example", "shop/web-3", 12 * HOUR)
    assert not memory.is_lone_call(WEB, "c2.example", "shop/web-3", 0.0)
    assert not memory.is_lone_call(WEB, "api.stripe.com", "shop/web-3", 12 * HOUR)
    assert not memory.is_lone_call("shop/ReplicaSet/other", "c2.example", "shop/web-3", 0.0)
    again = FirstSeenMemory()
    again.restore(memory.snapshot())
    assert again.is_lone_call(WEB, "c2.example", "shop/web-3", 12 * HOUR)
    memory.note_replica(WEB, "shop/web-1", ["c2.example"], 14 * HOUR)  # a live sibling too
    assert not memory.is_lone_call(WEB, "c2.example", "shop/web-3", 12 * HOUR)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 80),  # which pod
            st.booleans(),  # it called the host
            st.floats(0, 48 * HOUR, allow_nan=False),  # when
        ),
        max_size=200,
    ),
    st.floats(0, 48 * HOUR, allow_nan=False),
)
def test_a_lone_call_means_no_live_sibling_called_and_the_memory_stays_bounded(
    seen: list[tuple[int, bool, float]], since: float
) -> None:
    memory = FirstSeenMemory()
    for pod, called, when in seen:
        memory.note_replica(WEB, f"shop/web-{pod}", ["c2.example"] if called else [], when)
    assert len(memory.replicas.get(WEB, {})) <= 64
    assert all(len(who) <= 4 for who in memory.replica_calls.get(WEB, {}).values())
    lone = memory.is_lone_call(WEB, "c2.example", "shop/web-0", since)
    latest_call = max((w for p, c, w in seen if c and p != 0 and w >= since), default=None)
    if latest_call is not None:  # the latest caller is always kept
        assert not lone
