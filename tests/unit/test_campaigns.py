"""Campaigns: short-lived pods sending to one destination new to their namespace."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from scoring_fixtures import make_profile

from churnguard.scoring.campaigns import (
    CAMPAIGN_MIN,
    CAMPAIGN_WINDOW_S,
    NEW_AFTER_S,
    Campaigns,
    CampaignState,
)

T = 10 * 3600.0  # well after the namespace was first seen


def _short(pod: str, t: float, dest: str, lifetime: float = 120.0, sent: int = 20_000_000,
           got: int = 3_000):  # fmt: skip
    p = make_profile(ns="shop", pod=pod, workload="Job/export", t=t, final=True,
                     values={"lifetime_s": lifetime})  # fmt: skip
    p.first_seen = t
    p.destinations = [dest]
    p.destination_bytes = {dest: [sent, got]}
    return p


def _start(c: Campaigns) -> None:
    first = make_profile(ns="shop", pod="web-1", t=0.0)
    first.destinations = ["github.com"]
    c.observe(first)


def test_short_pods_to_one_new_destination_become_one_campaign_with_every_member() -> None:
    c = Campaigns()
    _start(c)
    got = [c.observe(_short(f"x-{i}", T + 200 * i, "files-drop.cc")) for i in range(6)]
    assert got[: CAMPAIGN_MIN - 1] == [None] * (CAMPAIGN_MIN - 1)
    key, members = got[CAMPAIGN_MIN - 1]
    assert key == "shop|files-drop.cc"
    assert [m.entity.pod for m in members] == [f"x-{i}" for i in range(CAMPAIGN_MIN)]
    assert [m.entity.pod for m in got[5][1]] == [f"x-{i}" for i in range(6)]  # an update
    again = Campaigns()
    again.load(msgspec.msgpack.decode(msgspec.msgpack.encode(c.export()), type=CampaignState))
    assert again.observe(_short("x-9", T + 1300, "files-drop.cc")) is not None


def test_what_is_not_a_campaign() -> None:
    c = Campaigns()
    _start(c)
    # a destination the namespace used from its first hours (CI runners and GitHub)
    assert all(c.observe(_short(f"r-{i}", T + i, "github.com")) is None for i in range(9))
    # builds pulling from a mirror the namespace had not used before: they receive
    assert all(
        c.observe(_short(f"b-{i}", T + i, "deb.debian.org", sent=2_000_000, got=9e8)) is None
        for i in range(9)
    )
    # long-lived pods polling a new endpoint
    assert all(
        c.observe(_short(f"l-{i}", T + i, "api.segment.io", lifetime=3 * 86400)) is None
        for i in range(9)
    )
    # too far apart to be one campaign
    spread = [_short(f"s-{i}", T + i * (CAMPAIGN_WINDOW_S + 1), "rare.example") for i in range(5)]
    assert all(c.observe(p) is None for p in spread)
    # a cold start: every destination appears with the namespace itself
    cold = Campaigns()
    assert all(cold.observe(_short(f"c-{i}", i * 60.0, "new.example")) is None for i in range(9))
    assert NEW_AFTER_S > 0


def test_a_destination_other_namespaces_use_all_along_is_shared_not_rare() -> None:
    """CI runners of a namespace that first pushes to the cluster's registry hours in."""
    c = Campaigns()
    _start(c)
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    for ns in ("ci-platform", "ci-data"):
        other = make_profile(ns=ns, pod="runner-0", t=60.0)
        other.destinations = [ecr]
        c.observe(other)
    assert all(c.observe(_short(f"r-{i}", T + 60 * i, ecr)) is None for i in range(9))
    # while a destination no namespace used before still forms a campaign
    got = [c.observe(_short(f"x-{i}", T + 60 * i, "files-drop.cc")) for i in range(CAMPAIGN_MIN)]
    assert got[-1] is not None


def test_one_other_namespace_early_does_not_make_an_exfil_host_shared() -> None:
    """An intrusion in the cluster's first hours used the host once; the next one reuses it."""
    c = Campaigns()
    _start(c)
    early = make_profile(ns="web-portal", pod="cache-warmup-1", t=120.0)
    early.destinations = ["files-drop.cc"]
    c.observe(early)
    got = [c.observe(_short(f"x-{i}", T + 60 * i, "files-drop.cc")) for i in range(CAMPAIGN_MIN)]
    assert got[-1] is not None


def test_early_contacts_of_pods_that_paged_do_not_make_a_host_shared() -> None:
    """A hijacked exporter beaconing from the cluster's first hours and a debug pod both
    called the host; the exporter paged later, so the host is not a service of the cluster
    and the sharded exfiltration to it is one campaign."""
    c = Campaigns()
    _start(c)
    for ns, pod in (("observability", "node-exporter-x"), ("ci-runners", "netshoot-1")):
        early = make_profile(ns=ns, pod=pod, t=600.0)
        early.destinations = ["telemetry-edge.io"]
        c.observe(early)
    assert c.shared("telemetry-edge.io", "shop")
    c.paged("observability/node-exporter-x")
    assert not c.shared("telemetry-edge.io", "shop")
    c.paged("observability/node-exporter-x")  # again, or a pod that gave no vote: no change
    c.paged("shop/web-1")
    assert c.early_namespaces["telemetry-edge.io"] == ["ci-runners"]
    got = [c.observe(_short(f"x-{i}", T + 60 * i, "telemetry-edge.io")) for i in range(4)]
    assert got[-1] is not None


def test_a_persons_bare_pod_does_not_make_a_host_shared() -> None:
    """Two debug pods run by people (or by whoever holds their credentials) in the cluster's
    first hours called the host: it is not one of the cluster's services."""
    c = Campaigns()
    _start(c)
    for ns in ("ci-runners", "observability"):
        debug = make_profile(ns=ns, pod="netshoot-1", workload=None, t=600.0)
        debug.creator_kind = "person"
        debug.destinations = ["telemetry-edge.io"]
        c.observe(debug)
    assert not c.shared("telemetry-edge.io", "shop")
    for ns in ("ci-runners", "observability"):  # their workloads' pods do vote
        pod = make_profile(ns=ns, pod="exporter-1", t=700.0)
        pod.creator_kind = "controller"
        pod.destinations = ["telemetry-edge.io"]
        c.observe(pod)
    assert c.shared("telemetry-edge.io", "shop")


def test_a_namespace_keeps_its_vote_while_one_of_its_early_pods_stayed_quiet() -> None:
    """One CI runner that paged does not make the registry its namespace pushes to rare."""
    c = Campaigns()
    _start(c)
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    for ns in ("ci-platform", "ci-data"):
        for i in range(2):
            runner = make_profile(ns=ns, pod=f"runner-{i}", t=60.0 + i)
            runner.destinations = [ecr]
            c.observe(runner)
    c.paged("ci-platform/runner-0")
    assert c.shared(ecr, "shop")
    again = Campaigns()
    again.load(msgspec.msgpack.decode(msgspec.msgpack.encode(c.export()), type=CampaignState))
    again.paged("ci-platform/runner-1")  # restored: the withdrawal still applies
    assert not again.shared(ecr, "shop")
    # a snapshot from before votes were recorded: its early namespaces stay shared
    old = msgspec.structs.replace(c.export(), voters={}, votes={})
    kept = Campaigns()
    kept.load(old)
    kept.paged("ci-platform/runner-1")
    assert kept.shared(ecr, "shop")


def _by(pod: str, ns: str, t: float, who: str, new_in_cluster: float = 1.0):
    values = {"lifetime_s": 240.0, "new_identity_in_cluster": new_in_cluster}
    p = make_profile(ns=ns, pod=pod, workload=None, t=t, final=True, values=values)
    p.first_seen = t
    p.identities = [who]
    return p


def test_short_pods_by_one_identity_new_to_the_cluster_are_one_campaign_across_namespaces() -> None:
    from churnguard.alerts.alert import campaign_alert

    c = Campaigns()
    _start(c)
    spaces = ["shop", "billing", "search", "web", "api"]
    got = [
        c.observe(_by(f"debug-{i}", ns, T + 600 * i, "erin@corp.example"))
        for i, ns in enumerate(spaces)
    ]
    assert got[: CAMPAIGN_MIN - 1] == [None] * (CAMPAIGN_MIN - 1)
    key, members = got[-1]
    assert key == "*|identity:erin@corp.example"
    assert [m.entity.namespace for m in members] == spaces
    p = _by("debug-9", "web", T, "erin@corp.example")
    from churnguard.alerts.alert import Alert, BaselineRef, Window

    base = Alert(alert_id="a", summary="s", entity=p.entity, score=0.5, threshold=0.9,
                 baseline=BaselineRef(level="namespace", key="ns:web:pod"), severity="low",
                 techniques=[], explanation=[], evidence=[], first_seen="", last_seen="",
                 emitted_at="", window=Window(start=T, end=T + 300), response=[])  # fmt: skip
    alert = campaign_alert(base, key, [m.entity for m in members])
    assert alert.summary.startswith("campaign: 5 short-lived pods by erin@corp.example")
    assert "an identity new to the cluster" in alert.technique_evidence["T1078"][0]
    # the same pods by an identity the cluster knows (an SRE's routine): no campaign
    known = Campaigns()
    _start(known)
    assert all(
        known.observe(_by(f"netshoot-{i}", ns, T + 600 * i, "maya.sre@corp.example", 0.0)) is None
        for i, ns in enumerate(spaces)
    )


def test_a_person_draining_a_node_is_not_an_identity_campaign() -> None:
    c = Campaigns()
    _start(c)
    drained = []
    for i in range(6):
        p = _by(f"web-{i}", "shop", T + i, "dana@corp.example")
        p.deleted_by, p.deleter_kind = "dana@corp.example", "person"
        p.created_by, p.creator_kind = "system:serviceaccount:kube-system:rs", "controller"
        drained.append(c.observe(p))
    assert drained == [None] * 6


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),  # namespace
            st.integers(0, 2),  # pod
            st.sampled_from(["h1", "h2"]),  # host
            st.booleans(),  # True: the pod pages instead of calling
        ),
        max_size=30,
    )
)
def test_a_host_is_shared_while_two_other_namespaces_have_an_early_pod_that_never_paged(
    ops: list[tuple[str, int, str, bool]],
) -> None:
    """Whatever the order of early calls and pages: a namespace votes for a host while one
    of the pods that called it early has not paged (and pages before a call do not count
    against that call's later pod; a pod that paged and calls again votes again)."""
    c = Campaigns()
    _start(c)
    voting: dict[tuple[str, str], set[str]] = {}
    for ns, i, host, pages in ops:
        entity = f"{ns}/p-{i}"
        if pages:
            c.paged(entity)
            for pods in voting.values():
                pods.discard(entity)
            continue
        p = make_profile(ns=ns, pod=f"p-{i}", t=600.0)
        p.destinations = [host]
        c.observe(p)
        voting.setdefault((ns, host), set()).add(entity)
    for host in ("h1", "h2"):
        others = {ns for (ns, h), pods in voting.items() if h == host and pods and ns != "shop"}
        assert c.shared(host, "shop") == (len(others) >= 2)


def test_other_shards_namespaces_contacting_a_host_early_make_it_shared_by_the_rows_time() -> None:
    """Sharded: the registry the CI namespaces of other shards push to is a shared service
    here too, from the time their first contacts were made, not before; a contact after the
    cluster's first hours is not a vote; and a snapshot keeps them."""
    c = Campaigns()
    _start(c)  # the cluster is born at 0
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    c.note_remote(ecr, "ci-data", 900.0)
    c.note_remote(ecr, "ci-data", 1200.0)  # a later contact of the same namespace: no change
    assert not c.shared(ecr, "shop", T)  # one other namespace is not enough
    c.note_remote(ecr, "ci-platform", 1800.0)
    assert c.shared(ecr, "shop", T)
    assert not c.shared(ecr, "shop", 1000.0)  # judged before the second contact was made
    assert not c.shared(ecr, "ci-platform", T)  # its own contact does not count for it
    c.note_remote("late.example", "ci-data", 60.0)
    c.note_remote("late.example", "ci-platform", NEW_AFTER_S + 1.0)
    assert not c.shared("late.example", "shop", T)
    again = Campaigns()
    again.load(msgspec.msgpack.decode(msgspec.msgpack.encode(c.export()), type=CampaignState))
    assert again.shared(ecr, "shop", T)
    got = [c.observe(_short(f"r-{i}", T + 60 * i, ecr)) for i in range(CAMPAIGN_MIN)]
    assert got == [None] * CAMPAIGN_MIN  # the shared registry is no campaign


@settings(max_examples=50, deadline=None)
@given(st.permutations([(f"ns-{i}", 100.0 * (i % 7) + i) for i in range(12)]))
def test_remote_contacts_keep_the_earliest_whatever_order_they_come_in(contacts) -> None:
    """A shard may hear other shards' contacts in any order (routers run apart): it keeps
    the same earliest namespaces per host, so its answers do not depend on the order."""
    c = Campaigns()
    for ns, t in contacts:
        c.note_remote("registry.example", ns, t)
    expected = dict(sorted(contacts, key=lambda nt: (nt[1], nt[0]))[:8])
    assert c.remote["registry.example"] == expected
