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


def test_identities_are_named_by_who_they_are_and_remembered_per_namespace() -> None:
    from churnguard.profiling.features import identity_name

    sso = "arn:aws:sts::1:assumed-role/AWSReservedSSO_Dev_9c/frank@corp.example"
    ci = "arn:aws:sts::1:assumed-role/ci-packer-builder/gitlab-123456789"
    assert identity_name(sso, "person") == "role/AWSReservedSSO_Dev_9c/frank@corp.example"
    assert identity_name(ci, "service_account") == "role/ci-packer-builder"  # per-job session
    assert identity_name("maya.sre@corp.example", "person") == "maya.sre@corp.example"
    assert identity_name("system:serviceaccount:kube-system:job-controller", "controller") is None
    assert identity_name("autoscaling.amazonaws.com", "autoscaler") is None

    memory = FirstSeenMemory()
    builder = FeatureBuilder(load_spec(), NetworkClassifier(["10.0.0.0/8"]))
    builder.memory = memory
    p = make_profile(ns="shop", pod="netshoot-1")
    p.identities = ["maya.sre@corp.example"]
    builder.remember([p])
    # per namespace, and cluster-wide for pods (new_identity_in_cluster)
    assert memory.identities == {"shop": {"maya.sre@corp.example"}, "*": {"maya.sre@corp.example"}}
    again = FirstSeenMemory()
    again.restore(memory.snapshot())
    assert again.identities == memory.identities
    # a paged window teaches nothing about who is known
    q = make_profile(ns="shop", pod="netshoot-2")
    q.identities = ["erin@corp.example"]
    builder.remember([], paged=[q])
    assert "erin@corp.example" not in memory.identities["shop"]


def test_a_host_only_an_implant_that_paged_ever_called_is_noted_as_its() -> None:
    """Tuning seed 13 (hard, 10 ns, 6+6 h): a hijacked argocd-repo-server's first beats to
    194.26.29.101, quiet windows before its alert, taught storefront the host; hours later
    two replicas of a new Deployment shipped archives there and the learning-period guard
    found nothing new. Once the implant pages for calling on a schedule, the host only it
    called is noted as an implant's; it stays known (a GitOps poller that paged once must
    not page on every later window: tuning seeds 4-6, gitops-polling 13 -> 17 when it was
    forgotten instead)."""
    builder = FeatureBuilder(load_spec(), NetworkClassifier(["10.0.0.0/8"]))
    memory = builder.memory
    beat = make_profile(ns="storefront", pod="argocd-1", t=0.0)
    beat.destinations = ["194.26.29.101", "api.github.com"]
    builder.remember([beat])
    other = make_profile(ns="storefront", pod="web-1", t=0.0)
    other.destinations = ["api.github.com"]
    builder.remember([other])
    once = make_profile(ns="storefront", pod="argocd-1", t=300.0)
    once.destinations = ["194.26.29.101"]
    builder.remember([], paged=[once])  # a one-off call that paged: not an implant's beat
    assert not memory.is_intruded("storefront", "194.26.29.101")
    alert = make_profile(ns="storefront", pod="argocd-1", t=600.0, values={"beacon_regularity": 1})
    alert.destinations = ["194.26.29.101", "api.github.com"]
    builder.remember([], paged=[alert])
    assert memory.is_intruded("storefront", "194.26.29.101")
    assert not memory.is_intruded("storefront", "api.github.com")  # a quiet pod called it too
    assert memory.destinations["storefront"] == {"194.26.29.101", "api.github.com"}
    again = FirstSeenMemory()
    again.restore(memory.snapshot())
    assert again.is_intruded("storefront", "194.26.29.101")
