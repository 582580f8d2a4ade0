"""Baseline hierarchy: keys, fallback, maturity, learning mode, poisoning cap, state."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scoring_fixtures import benign_values, make_profile, quick_settings

from churnguard.errors import ModelError
from churnguard.profiling.profile import image_repository
from churnguard.profiling.spec import load_spec
from churnguard.scoring.baselines import (
    CLOUD_NAMESPACE,
    Hierarchy,
    RecentRows,
    baseline_keys,
    gather,
    level_of_key,
    normalise_workload,
    workload_of,
)
from churnguard.scoring.detectors import make_detector
from churnguard.scoring.learning import LearningGate

SPEC = load_spec()


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ("ReplicaSet/web-5d8f7c9b6", "Deployment/web"),  # hex pod-template-hash
        ("ReplicaSet/web-portal-qkhxcsbxp2", "Deployment/web-portal"),  # k8s safe alphabet
        ("Job/backup-29012345", "CronJob/backup"),
        ("Job/migrate", "Job/migrate"),  # a one-off Job stays itself
        ("ReplicaSet/web-server", "ReplicaSet/web-server"),  # vowels: not a hash
        ("StatefulSet/db", "StatefulSet/db"),
        (None, None),
    ],
)
def test_normalise_workload(owner: str | None, expected: str | None) -> None:
    assert normalise_workload(owner) == expected


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("nginx:1.25", "nginx"),
        ("registry.local:5000/team/app:2@sha256:abc", "registry.local:5000/team/app"),
        ("registry.local:5000/team/app", "registry.local:5000/team/app"),
        ("nginx", "nginx"),
        (None, ""),
    ],
)
def test_one_image_repository_rule_for_memory_and_baselines(image: str | None, repo: str) -> None:
    assert image_repository(image) == repo


def test_keys_per_kind_and_owner_fallback() -> None:
    bare = make_profile(workload=None, image="alpine:3.19")
    assert workload_of(bare) == "image/alpine"
    assert baseline_keys(bare) == ("wl:shop/image/alpine:pod", "ns:shop:pod", "cluster:pod")
    rs = make_profile(workload="ReplicaSet/web-5d8f7c9b6")
    assert baseline_keys(rs)[0] == "wl:shop/Deployment/web:pod"
    inst = make_profile(kind="instance", instance_id="i-1")
    assert baseline_keys(inst) == (
        f"wl:{CLOUD_NAMESPACE}/instances:instance",
        f"ns:{CLOUD_NAMESPACE}:instance",
        "cluster:instance",
    )
    assert [level_of_key(k) for k in baseline_keys(inst)] == ["workload", "namespace", "cluster"]


def _learn(h: Hierarchy, profiles: list) -> None:
    """Learn as the scorer does: through the learning gate's share cap."""
    raw = SPEC.matrix([p.values for p in profiles])
    h.learn(profiles, SPEC.transform(raw), raw, LearningGate(h.settings).admits)


def _rows(n: int, *, ns: str = "shop", workload: str = "Deployment/web", t0: float = 0.0):
    rng = np.random.default_rng(n)
    return [
        make_profile(
            ns=ns, workload=workload, pod=f"{workload}-{i}", t=t0 + i, values=benign_values(rng)
        )
        for i in range(n)
    ]


def test_fallback_workload_then_namespace_then_cluster() -> None:
    s = quick_settings().scoring  # workload 20, namespace 40
    h = Hierarchy(s, len(SPEC.names))
    assert h.choose(make_profile()) is None  # nothing learned anywhere
    _learn(h, _rows(25, workload="Deployment/web") + _rows(10, workload="Deployment/api"))
    assert h.choose(make_profile(workload="Deployment/web")).key == "wl:shop/Deployment/web:pod"
    assert h.choose(make_profile(workload="Deployment/api")) is None  # ns has 35 < 40
    _learn(h, _rows(10, workload="CronJob/report", t0=100))
    assert h.choose(make_profile(workload="Deployment/api")).key == "ns:shop:pod"
    assert h.choose(make_profile(ns="other", workload="Deployment/x")).key == "cluster:pod"
    assert h.choose(make_profile(kind="instance", instance_id="i-9")) is None  # per kind


def test_hierarchy_off_learns_and_scores_only_the_cluster_model() -> None:
    h = Hierarchy(quick_settings(hierarchy=False).scoring, len(SPEC.names))
    _learn(h, _rows(45))
    assert set(h.baselines) == {"cluster:pod"}
    assert h.choose(make_profile()).key == "cluster:pod"


def test_baseline_matures_by_event_time_too() -> None:
    h = Hierarchy(quick_settings(learning_seconds=3600.0).scoring, len(SPEC.names))
    _learn(h, _rows(50))  # all within the first minute
    assert h.choose(make_profile(t=600)) is None
    assert h.choose(make_profile(t=3600)).key == "wl:shop/Deployment/web:pod"


def test_learning_mode_by_count_and_by_time() -> None:
    settings = quick_settings(learning_profiles=5, learning_seconds=1000.0)
    h = Hierarchy(settings.scoring, len(SPEC.names))
    assert h.in_learning(make_profile(t=0), settings)  # never seen
    h.note_seen([make_profile(t=float(i)) for i in range(3)])
    assert h.in_learning(make_profile(t=5000), settings)  # old enough, too few profiles
    h.note_seen([make_profile(t=float(i)) for i in range(3)])
    assert h.in_learning(make_profile(t=600), settings)  # enough profiles, too young
    assert not h.in_learning(make_profile(t=1000), settings)
    assert h.in_learning(make_profile(ns="new", t=1000), settings)  # per namespace


def test_workload_flood_cannot_exceed_its_share_of_the_namespace() -> None:
    s = quick_settings(max_workload_share=0.2).scoring
    h = Hierarchy(s, len(SPEC.names))
    quiet = [w for k in range(6) for w in _rows(20, workload=f"Deployment/svc{k}", t0=k * 100)]
    _learn(h, quiet)
    flood = _rows(2000, workload="Deployment/noisy", t0=1000)
    for start in range(0, len(flood), 100):
        _learn(h, flood[start : start + 100])
    ns = h.baselines["ns:shop:pod"]
    assert ns.share_of("Deployment/noisy") <= 0.2 + 1 / len(ns.recent_workloads)
    assert ns.n_learned < 120 + 0.3 * 2000  # most of the flood was refused
    # its own workload baseline is its own business: it learns every row
    assert h.baselines["wl:shop/Deployment/noisy:pod"].n_learned == 2000
    # a namespace of a single workload still learns it (fair share = 1)
    _learn(h, _rows(300, ns="solo", workload="Deployment/only"))
    assert h.baselines["ns:solo:pod"].n_learned == 300


def test_export_load_round_trip_scores_identically() -> None:
    h = Hierarchy(quick_settings().scoring, len(SPEC.names))
    _learn(h, _rows(60))
    again = Hierarchy(quick_settings().scoring, len(SPEC.names))
    again.load(h.export())
    X = SPEC.transform(SPEC.matrix([p.values for p in _rows(5, t0=99)]))
    for key, b in h.baselines.items():
        np.testing.assert_array_equal(
            b.detector.score_many(X), again.baselines[key].detector.score_many(X)
        )
        np.testing.assert_array_equal(b.recent_values(), again.baselines[key].recent_values())
        assert b.workload_counts == again.baselines[key].workload_counts


def test_seed_from_bundle_models_is_mature_and_checks_keys() -> None:
    h = Hierarchy(quick_settings(learning_seconds=3600.0).scoring, len(SPEC.names))
    det = make_detector("oif", len(SPEC.names), 1)
    X = SPEC.transform(SPEC.matrix([p.values for p in _rows(50)]))
    det.learn_many(X)
    h.seed_from({"ns:shop:pod": det}, {})
    assert h.choose(make_profile(t=0)).key == "ns:shop:pod"
    settings = quick_settings(learning_profiles=100)
    assert not h.in_learning(make_profile(t=0), settings)  # the bundle knows the namespace
    assert h.in_learning(make_profile(ns="fresh", t=0), settings)
    with pytest.raises(ModelError):
        h.seed_from({"team:shop": det}, {})
    narrow = make_detector("oif", len(SPEC.names) - 1, 1)  # a bundle from before a feature
    narrow.learn_many(X[:, 1:])
    with pytest.raises(ModelError, match="rebuild the bundle"):
        h.seed_from({"cluster:pod": narrow}, {})


def test_a_bare_pod_without_an_image_groups_under_unknown() -> None:
    p = make_profile(workload=None, image=None)
    assert workload_of(p) == "image/unknown"


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=30), limit=st.integers(1, 24))
def test_recent_rows_keep_what_a_bounded_deque_keeps(sizes: list[int], limit: int) -> None:
    """The baseline's recent-rows window holds exactly the last ``limit`` rows, in order."""
    recent, expected, n = RecentRows(limit), deque(maxlen=limit), 0
    for k in sizes:
        rows = np.arange(n, n + k, dtype=float)[:, None] * [1.0, -1.0]
        n += k
        recent.extend(rows)
        expected.extend(rows.tolist())
        assert len(recent) == len(expected)
        assert recent.values().tolist() == list(expected)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.one_of(st.integers(0, 40), st.none()), max_size=30),
    limit=st.integers(1, 24),
)
def test_recent_rows_view_is_the_window_transformed(steps: list[int | None], limit: int) -> None:
    """The model view kept beside the window (None: an alert reads it) is its transform."""
    recent, n = RecentRows(limit), 0
    for k in steps:
        if k is None:
            if len(recent):
                got = recent.view(SPEC.transform)
                assert got.tobytes() == SPEC.transform(recent.values()).tobytes()
            continue
        d = len(SPEC.names)
        recent.extend(np.arange(n, n + k * d, dtype=float).reshape(k, d) / 7)
        n += k * d


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.lists(st.floats(allow_nan=True), min_size=3, max_size=3), min_size=n, max_size=n
            ),
            st.lists(st.lists(st.integers(0, n - 1), max_size=n), max_size=6),
        )
    )
)
def test_gather_is_a_take_per_group_to_the_bit(case) -> None:
    """Signed zeros, NaNs and repeated or empty groups: the same bytes and shapes."""
    rows, groups = case
    X = np.array(rows, dtype=float)
    got = gather(X, groups)
    assert len(got) == len(groups)
    for g, part in zip(groups, got, strict=True):
        want = X.take(g, axis=0)
        assert part.shape == want.shape and part.dtype == want.dtype
        assert part.tobytes() == want.tobytes() and part.flags.c_contiguous
