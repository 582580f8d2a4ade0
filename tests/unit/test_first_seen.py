"""First-seen memory: a rare destination (beacons) versus a workload's polled endpoint."""

from __future__ import annotations

from scoring_fixtures import make_profile

from churnguard.profiling.features import (
    POLLED_FOR_S,
    FeatureBuilder,
    FirstSeenMemory,
    NetworkClassifier,
)
from churnguard.profiling.spec import load_spec

HOST = "api.github.com"


def _polled(memory: FirstSeenMemory, pod: str, t: float) -> None:
    builder = FeatureBuilder(load_spec(), NetworkClassifier(["10.0.0.0/8"]))
    builder.memory = memory
    p = make_profile(ns="monitoring", pod=pod, t=t)
    p.destinations = [HOST]
    builder.remember([p])


def test_a_destination_polled_by_a_workloads_pods_for_half_a_day_is_not_rare() -> None:
    memory = FirstSeenMemory()
    _polled(memory, "argocd-1", 0.0)
    # the same pod alone, however long: still rare (a slow beacon in one pod stays visible)
    assert memory.is_rare("monitoring", HOST, "monitoring/argocd-1", POLLED_FOR_S + 10)
    # a replacement pod of the workload, only an hour later: still rare
    assert memory.is_rare("monitoring", HOST, "monitoring/argocd-2", 3600.0)
    # ... but after half a day of polling by two of its pods, it is the namespace's baseline
    assert not memory.is_rare("monitoring", HOST, "monitoring/argocd-2", POLLED_FOR_S + 10)
    # and it survives a restart (the memory is in the pipeline's snapshot)
    again = FirstSeenMemory()
    again.restore(memory.snapshot())
    assert not again.is_rare("monitoring", HOST, "monitoring/argocd-2", POLLED_FOR_S + 10)


def test_windows_that_paged_do_not_start_the_polling_clock() -> None:
    memory = FirstSeenMemory()
    builder = FeatureBuilder(load_spec(), NetworkClassifier(["10.0.0.0/8"]))
    builder.memory = memory
    p = make_profile(ns="web", pod="web-1", t=0.0)
    p.destinations = ["c2.example"]
    builder.remember([], paged=[p])
    assert memory.is_rare("web", "c2.example", "web/web-2", POLLED_FOR_S * 3)
