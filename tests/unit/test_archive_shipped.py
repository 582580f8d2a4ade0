"""An archive shipped to a host new to the namespace while the workload is still learning.

The hard mix's ``attack-learning-period``: a new Deployment's replicas write an archive and
upload it to a new host, often in the next window, while nothing can judge the workload yet.
Feature-level through the real pipeline (the fact) and guard-level (who it pages for).
"""

from __future__ import annotations

from scoring_fixtures import make_profile, quick_settings

from churnguard.alerts.alert import technique_evidence
from churnguard.ingest.events import Event, EventKind
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import load_spec
from churnguard.scoring.guards import Context, fired
from churnguard.scoring.scorer import Scorer

T0 = 1_767_225_600.0
HOST = "203.0.113.50"
NAME = "shipped-while-learning"
GUARD = "archive-shipped-while-learning"


def _pod_events(pod: str, t: float, *, archive_mb: float, sent_mb: float, gap: float):
    ns, wl = "shop", "Deployment/usage-reporter"
    base = {"namespace": ns, "pod": pod, "workload": wl}
    rs = "system:serviceaccount:kube-system:replicaset-controller"
    return [
        Event(time=t, kind=EventKind.POD_CREATE, format="k8s_audit", actor=rs,
              **base),
        Event(time=t + 20, kind=EventKind.FILE_WRITE, format="tetragon",
              file_path="/tmp/.cache/x.tgz", bytes_written=int(archive_mb * 1e6), **base),
        # the upload lands in a later window than the archive (windows of 5 min)
        Event(time=t + 20 + gap, kind=EventKind.NET_FLOW, format="flow", dst_ip=HOST, dst_port=443,
              dst_external=True, bytes_out=int(sent_mb * 1e6), **base),
    ]  # fmt: skip


def _profiles(events: list[Event]) -> list[Profile]:
    pipe = Pipeline()
    out = pipe.ingest(sorted(events, key=lambda e: e.time))
    out.extend(pipe.finish())
    return out.profiles


def _shipping(profiles: list[Profile]) -> Profile:
    (p,) = [p for p in profiles if p.archive_shipped]
    return p


def test_an_archive_then_its_upload_in_the_next_window_is_one_fact() -> None:
    p = _shipping(_profiles(_pod_events("r-1", T0, archive_mb=80, sent_mb=79, gap=400)))
    (a,) = p.archive_shipped
    assert (a.dest, a.sent, a.archive, a.size) == (HOST, 79_000_000, "/tmp/.cache/x.tgz", 80e6)
    assert p.values["archive_writes"] == 0  # the archive was in the window before
    lines = technique_evidence(p)
    assert any(HOST in line and "/tmp/.cache/x.tgz" in line for line in lines["T1041"])
    assert "T1560.002" in lines


def test_a_small_upload_after_an_archive_is_not_its_shipping() -> None:
    profiles = _profiles(_pod_events("r-1", T0, archive_mb=80, sent_mb=10, gap=400))
    assert not any(p.archive_shipped for p in profiles)


def test_a_host_the_namespace_already_used_is_not_new() -> None:
    known = Event(time=T0 - 3000, kind=EventKind.NET_FLOW, format="flow", namespace="shop",
                  pod="old-1", dst_ip=HOST, dst_port=443, dst_external=True,
                  bytes_out=500)  # fmt: skip
    profiles = _profiles([known, *_pod_events("r-1", T0, archive_mb=80, sent_mb=79, gap=400)])
    assert not any(p.archive_shipped for p in profiles if p.entity.pod == "r-1")


def test_the_guard_pages_only_while_the_workload_learns_and_not_for_shared_hosts() -> None:
    p = _shipping(_profiles(_pod_events("r-1", T0, archive_mb=80, sent_mb=79, gap=400)))
    assert [g.name for g in fired(p, Context(workload_learning=True))] == [GUARD]
    assert [g for g in fired(p, Context(workload_learning=True)) if g.pages]
    assert GUARD not in [g.name for g in fired(p)]  # a mature workload baseline judges it
    cold = Context(workload_learning=True, namespace_learning=True)
    assert GUARD not in [g.name for g in fired(p, cold)]  # a new namespace: every host is new
    shared = Context(workload_learning=True, shared=lambda dest: dest == HOST)
    assert GUARD not in [g.name for g in fired(p, shared)]  # the org's bucket


def test_a_new_deployment_shipping_an_archive_pages_with_nothing_to_judge_it() -> None:
    p = _shipping(_profiles(_pod_events("r-1", T0, archive_mb=80, sent_mb=79, gap=400)))
    scorer = Scorer(quick_settings(), load_spec())
    for k in range(0, 60, 20):  # the namespace's other workload: a mature namespace baseline
        web = [make_profile(ns="shop", pod=f"web-{k + j}", workload="Deployment/web", t=k + j)
               for j in range(20)]  # fmt: skip
        scorer.score(web)
    (scored,) = scorer.score([p])
    assert scored.baseline_key.startswith("ns:shop")  # its own workload judges nothing yet
    assert scored.alert is not None and GUARD in scored.alert.rules
    assert any(HOST in line for line in scored.alert.technique_evidence["T1041"])
    # a story a paging guard told does not lift the namespace's threshold for the others
    _, entities = scorer.thresholds._window("shop")
    assert "shop/r-1" not in entities and "shop/web-40" in entities
