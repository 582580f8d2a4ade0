"""Caps against telemetry floods (issue 15, item 2): what happens at each, and the alert."""

from __future__ import annotations

from churnguard.config import PipelineSettings, Settings
from churnguard.ingest.events import Event, EventKind, Origin
from churnguard.pipeline import Pipeline
from churnguard.profiling import entities
from churnguard.profiling.entities import EntityTable
from churnguard.profiling.floods import CLUSTER

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def pipeline(**caps: int) -> Pipeline:
    return Pipeline(Settings(pipeline=PipelineSettings(**caps)))


def create(ns: str, pod: str, t: float, source: str = "k8s-audit") -> Event:
    return _event(EventKind.POD_CREATE, ns, pod, t, source, 0, actor="replicaset-controller")


def exec_(ns: str, pod: str, t: float, i: int) -> Event:
    return _event(EventKind.PROCESS_EXEC, ns, pod, t, "runtime", i, binary=f"/usr/bin/tool{i}")


def _event(kind: EventKind, ns: str, pod: str, t: float, source: str, offset: int, **more) -> Event:
    origin = Origin(source=source, partition=0, offset=offset)
    return Event(time=t, kind=kind, format="test", namespace=ns, pod=pod, origin=origin, **more)


def test_evidence_cap_scores_every_event_in_windows_of_their_own() -> None:
    pipe = pipeline(max_events_per_entity=50)
    events = [create("shop", "web-1", T0)] + [
        exec_("shop", "web-1", T0 + i * 0.01, i) for i in range(1, 400)
    ]
    out = pipe.ingest(events)
    out.extend(pipe.ingest([create("shop", "web-2", T0 + 2000)]))
    out.extend(pipe.finish())
    web1 = [p for p in out.profiles if p.entity.pod == "web-1"]
    capped = [p for p in web1 if p.end_reason == "evidence_cap"]
    assert len(capped) == 400 // 50
    assert sum(p.events for p in web1) == 400  # nothing dropped: every event was profiled
    assert pipe.stats["capped.evidence"] == len(capped)
    ends = [p.window_end for p in web1]
    assert ends == sorted(ends)


def test_pending_cap_dead_letters_with_a_reason_and_count() -> None:
    pipe = pipeline(max_pending_records=10)
    # a second input that never delivers holds the watermark: everything waits
    pipe.expect_sources(["k8s-audit[0]", "cloudtrail[0]"])
    out = pipe.ingest([create("shop", f"web-{i}", T0 + i) for i in range(25)])
    assert [r.reason for r in out.rejected] == ["pending_cap"] * 15
    assert all(r.origin is not None and '"pod":"web-' in r.record for r in out.rejected)
    assert pipe.stats["capped.pending"] == 15 and pipe.schedule.deferred_count() == 10


def test_flood_of_new_entities_raises_one_alert_naming_namespace_and_source() -> None:
    quiet = [create("shop", f"web-{i}", T0 + i) for i in range(20)]
    flood = [create("evil", f"fake-{i}", T0 + 1 + i * 0.05, "flows") for i in range(1000)]
    stream = [*sorted(quiet + flood, key=lambda e: e.time), create("shop", "ping", T0 + 3600)]
    pipe = pipeline(flood_new_entities=100)
    out = pipe.ingest(stream)
    floods = [a for a in out.alerts if "telemetry_flood" in a.rules]
    assert len(floods) == 1  # one page per namespace per window, not one per fake pod
    (alert,) = floods
    assert alert.entity.namespace == "evil" and alert.entity.kind == "namespace"
    assert "flows[0]" in alert.summary and alert.techniques == ["T1562"]
    assert pipe.stats["floods"] == 1
    # the same input gives the same id: a redelivered flood does not page twice
    assert alert.alert_id in [
        a.alert_id for a in pipeline(flood_new_entities=100).ingest(stream).alerts
    ]


def test_entity_cap_profiles_the_evicted_and_reports_the_flood() -> None:
    pipe = pipeline(max_entities=200, flood_new_entities=0)  # only the cap reports
    real = create("shop", "db-0", T0)
    fakes = [create(f"ns-{i}", "x", T0 + 1 + i * 0.5) for i in range(2000)]
    out = pipe.ingest([real])
    evicted = []
    for i in range(0, len(fakes), 100):
        step = pipe.ingest([*fakes[i : i + 100], exec_("shop", "db-0", fakes[i].time, i)])
        evicted += [p for p in step.profiles if p.end_reason == "evicted"]
        out.extend(step)
        assert len(pipe.table.states) <= 200 + 100  # bounded between two calls
    assert evicted and pipe.stats["evicted"] >= len(evicted)
    assert ("shop", "db-0") in {(k.namespace, k.name) for k in pipe.table.states}  # active stays
    floods = [a for a in out.alerts if "telemetry_flood" in a.rules]
    assert floods and all(a.entity.namespace == CLUSTER for a in floods)
    assert len({a.window.start for a in floods}) == len(floods)  # one per window at most
    assert all("entities profiled early" in a.summary for a in floods)


def test_flood_counts_survive_a_checkpoint() -> None:
    pipe = pipeline(flood_new_entities=50)
    fakes = [create("evil", f"fake-{i}", T0 + i * 0.1) for i in range(40)]
    assert not pipe.ingest([*fakes, create("shop", "ping", T0 + 100)]).alerts
    restored = pipeline(flood_new_entities=50)
    restored.restore(pipe.snapshot())
    more = [create("evil", f"more-{i}", T0 + 110 + i * 0.1) for i in range(20)]
    out = restored.ingest([*more, create("shop", "ping-2", T0 + 200)])
    assert [a.entity.namespace for a in out.alerts] == ["evil"]  # 40 before + 20 after


def test_binding_tables_forget_the_oldest_not_the_newest(monkeypatch) -> None:
    monkeypatch.setattr(entities, "_IP_BINDINGS_MAX", 100)
    monkeypatch.setattr(entities, "_CONTAINERS_MAX", 100)
    table = EntityTable()
    key = create("shop", "web", T0)
    for i in range(1000):
        pod = table.subject_key(create("evil", f"fake-{i}", T0))
        table.bind_ip(f"10.1.{i // 250}.{i % 250}", pod, T0 + i)
        table.bind_container(f"{i:012d}", pod)
    real = table.subject_key(key)
    table.bind_ip("10.9.9.9", real, T0 + 2000)
    table.bind_container("feedfacecafe", real)
    assert len(table._ip_bindings) == 100 and len(table._containers) == 100
    assert table.owner_of_ip("10.9.9.9", T0 + 2001) == real
    assert table._containers["feedfacecafe"] == real
