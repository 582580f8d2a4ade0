"""Campaigns: short-lived pods sending to one destination new to their namespace."""

from __future__ import annotations

import msgspec
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
