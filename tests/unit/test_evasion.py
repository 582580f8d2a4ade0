"""Evasion that targets the detector (issue 15, item 7): which signal still sees it.

Feature-level and deterministic (no learned model): each test builds the attacker's events,
runs them through the real pipeline and checks the feature or guard that must still fire.
What no signal catches on today's main is in docs/limitations.md, with why and what would.
"""

from __future__ import annotations

from churnguard.config import PipelineSettings, Settings
from churnguard.ingest.events import Event, EventKind
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.scoring.guards import fired

T0 = 1_767_225_600.0
EXFIL_HOST = "203.0.113.50"


def _pod(ns: str, pod: str, t: float) -> list[Event]:
    return [
        Event(time=t, kind=EventKind.POD_CREATE, format="k8s_audit", namespace=ns, pod=pod,
              actor="alice", workload=None),
    ]  # fmt: skip


def _run(events: list[Event], settings: Settings | None = None) -> list[Profile]:
    pipe = Pipeline(settings)
    out = pipe.ingest(sorted(events, key=lambda e: e.time))
    out.extend(pipe.finish())
    return out.profiles


def _exfil(ns: str, pod: str, t: float, *, tool: str, out_path: str, mb: float) -> list[Event]:
    base = {"format": "tetragon", "namespace": ns, "pod": pod}
    return [
        *_pod(ns, pod, t),
        Event(time=t + 5, kind=EventKind.PROCESS_EXEC, binary=tool,
              args=f"czf {out_path} /var/lib/data", **base),
        Event(time=t + 20, kind=EventKind.FILE_WRITE, file_path=out_path,
              bytes_written=int(mb * 1e6), **base),
        Event(time=t + 30, kind=EventKind.NET_FLOW, format="flow", namespace=ns, pod=pod,
              dst_ip=EXFIL_HOST, dst_port=443, dst_external=True, bytes_out=int(mb * 1e6)),
    ]  # fmt: skip


def test_renamed_archive_tool_is_still_an_archive_by_what_it_writes() -> None:
    """``cp /bin/tar /tmp/.x; /tmp/.x czf out.tgz``: the archive file still names it."""
    (profile,) = _run(_exfil("shop", "dbg", T0, tool="/tmp/.x", out_path="/tmp/o.tgz", mb=80))
    assert profile.values["archive_writes"] == 1 and profile.values["archive_bytes"] == 80e6
    assert [g.name for g in fired(profile)] == ["archive-then-egress-to-new-destination"]


def test_renamed_tool_and_output_leaves_only_the_egress_signals() -> None:
    """Both renamed: no archive feature; the new-destination egress is what remains."""
    (profile,) = _run(_exfil("shop", "dbg", T0, tool="/tmp/.x", out_path="/tmp/o.bin", mb=80))
    v = profile.values
    assert v["archive_writes"] == 0 and not fired(profile)  # docs/limitations.md
    assert v["new_destinations"] == 1 and v["egress_new_destination_bytes"] == 80e6


def test_exfil_spread_over_many_short_pods_is_new_only_in_the_first() -> None:
    """Twenty short pods, 10 MB each (under the guard's 50 MB) to one new host.

    The limitation in docs/limitations.md, pinned: the first pod's window did not page, so
    the first-seen memory learned the host, and for the nineteen after it the host is no
    longer new. Each pod still shows archive + external egress, but no per-pod signal
    says "the same rare host again"; campaign signals (branch detect) are what catch it.
    """
    events = [
        e
        for i in range(20)
        for e in _exfil("shop", f"job-{i}", T0 + i * 400, tool="tar", out_path="/t/a.tgz", mb=10)
    ]
    profiles = sorted(_run(events), key=lambda p: p.window_start)
    assert len(profiles) == 20
    assert [p.values["new_destinations"] for p in profiles] == [1.0] + [0.0] * 19
    assert all(p.values["archive_writes"] == 1 for p in profiles)
    assert all(p.values["egress_external_bytes"] == 10e6 for p in profiles)
    assert not any(fired(p) for p in profiles)  # each alone is under the guard's bytes


def test_flooding_the_learning_window_raises_the_flood_alert() -> None:
    """Hundreds of fake pods to fill a new namespace's learning window: the flood pages."""
    settings = Settings(pipeline=PipelineSettings(flood_new_entities=200))
    pipe = Pipeline(settings)
    fakes = [e for i in range(300) for e in _pod("new-team", f"warmup-{i}", T0 + i * 0.5)]
    out = pipe.ingest([*fakes, *_pod("other", "tick", T0 + 600)])
    assert [a.entity.namespace for a in out.alerts if "telemetry_flood" in a.rules] == ["new-team"]
