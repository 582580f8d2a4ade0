"""The scorer facade: levels, alerting, what it learns, settings/bundle reload, checkpoints."""

from __future__ import annotations

import dataclasses

import msgspec
import numpy as np
import pytest
from scoring_fixtures import ATTACK_VALUES, benign_values, make_profile, quick_settings

from churnguard.config import NamespaceOverride
from churnguard.errors import ConfigError
from churnguard.profiling.spec import load_spec
from churnguard.scoring.detectors import make_detector
from churnguard.scoring.learning import RELEASE_GUARDED_AFTER_S
from churnguard.scoring.scorer import LEARNING, Scorer
from churnguard.store import load_bundle, save_bundle

SPEC = load_spec()


def _benign(n: int, t0: float, *, seed: int = 0, ns: str = "shop") -> list:
    rng = np.random.default_rng(seed)
    return [
        make_profile(
            ns=ns,
            workload=f"Deployment/{('web', 'api')[i % 2]}",
            pod=f"p{int(t0)}-{i}",
            t=t0 + i,
            values=benign_values(rng),
        )
        for i in range(n)
    ]


def _attack(t: float, ns: str = "shop"):
    return make_profile(
        ns=ns, pod=f"evil-{int(t)}", workload="Deployment/web", t=t, values=ATTACK_VALUES
    )


def _trained(settings=None, n: int = 120) -> Scorer:
    scorer = Scorer(settings or quick_settings(), SPEC)
    for start in range(0, n, 40):
        scorer.score(_benign(40, float(start), seed=start))
    return scorer


def test_levels_learning_then_workload_and_attack_alerts() -> None:
    scorer = Scorer(quick_settings(learning_profiles=50), SPEC)
    first = scorer.score(_benign(40, 0.0))
    assert {s.level for s in first} == {LEARNING} and all(s.alert is None for s in first)
    scorer.score(_benign(80, 100.0, seed=1))
    out = scorer.score([*_benign(3, 500.0, seed=2), _attack(600.0)])
    assert [s.level for s in out] == ["workload"] * 4
    assert out[0].baseline_key in ("wl:shop/Deployment/web:pod", "wl:shop/Deployment/api:pod")
    assert all(s.alert is None for s in out[:3])
    alert = out[3].alert
    assert alert is not None and out[3].score >= out[3].threshold
    assert alert.baseline.key == "wl:shop/Deployment/web:pod"
    assert alert.explanation and alert.explanation[0].baseline_percentile in (0.0, 100.0)


def test_model_never_alerts_in_learning_mode() -> None:
    scorer = _trained(quick_settings(learning_seconds=10_000.0))
    out = scorer.score([_attack(600.0)])
    assert out[0].level == LEARNING and out[0].alert is None


def test_alerting_rows_are_not_learned() -> None:
    scorer = _trained()
    before = {k: b.n_learned for k, b in scorer.hierarchy.baselines.items()}
    out = scorer.score([_attack(600.0), _attack(601.0)])
    assert all(s.alert is not None for s in out)
    assert {k: b.n_learned for k, b in scorer.hierarchy.baselines.items()} == before
    out = scorer.score(_benign(4, 700.0, seed=9))
    assert scorer.hierarchy.baselines["cluster:pod"].n_learned == before["cluster:pod"] + 4


def test_high_but_quiet_rows_are_not_learned_when_configured() -> None:
    scorer = _trained(quick_settings(learn_below_score=0.95))
    scorer.use_settings(
        msgspec.structs.replace(
            scorer.settings, namespaces={"shop": NamespaceOverride(threshold=1.01)}
        )
    )
    before = scorer.hierarchy.baselines["cluster:pod"].n_learned
    out = scorer.score([_attack(600.0)])
    assert out[0].alert is None and out[0].score >= 0.95
    assert scorer.hierarchy.baselines["cluster:pod"].n_learned == before


def test_muted_namespace_and_hot_reloaded_fixed_threshold() -> None:
    scorer = _trained()
    muted = msgspec.structs.replace(
        scorer.settings, namespaces={"sh*": NamespaceOverride(mute=True)}
    )
    scorer.use_settings(muted)
    assert scorer.score([_attack(600.0)])[0].alert is None
    fixed = msgspec.structs.replace(
        scorer.settings, namespaces={"shop": NamespaceOverride(threshold=0.999999)}
    )
    scorer.use_settings(fixed)
    out = scorer.score([_attack(601.0)])
    assert out[0].threshold == 0.999999


def test_snapshot_restore_gives_identical_subsequent_scores() -> None:
    scorer = _trained()
    snap = scorer.snapshot()
    again = Scorer(quick_settings(), SPEC)
    again.restore(snap)
    later = [*_benign(30, 900.0, seed=5), _attack(950.0), *_benign(30, 1000.0, seed=6)]
    a, b = scorer.score(later), again.score(later)
    assert [(s.score, s.threshold, s.level, s.baseline_key) for s in a] == [
        (s.score, s.threshold, s.level, s.baseline_key) for s in b
    ]
    assert [s.alert for s in a] == [s.alert for s in b]
    assert scorer.snapshot() == again.snapshot()  # and they keep learning alike


def test_restore_refuses_another_spec_version() -> None:
    scorer = _trained()
    other = Scorer(quick_settings(), dataclasses.replace(SPEC, version="99"))
    with pytest.raises(ValueError):
        other.restore(scorer.snapshot())


def test_bundle_seeds_mature_baselines(tmp_path) -> None:
    det = make_detector("oif", len(SPEC.names), 1, window_size=256, max_leaf_samples=8)
    det.learn_many(SPEC.transform(SPEC.matrix([p.values for p in _benign(100, 0.0)])))
    save_bundle(tmp_path / "b", {"ns:shop:pod": det}, spec_version="1", bundle_version="v-test")
    bundle = load_bundle(tmp_path / "b", spec_version="1", key=None)
    scorer = Scorer(quick_settings(), SPEC, bundle)
    assert scorer.model_version == "v-test+online"
    out = scorer.score([_attack(10.0)])
    assert out[0].level == "namespace" and out[0].alert is not None
    assert out[0].alert.model_version == "v-test+online"


def test_scorers_given_one_bundle_learn_apart(tmp_path) -> None:
    """A hot reload hands one loaded bundle to every shard's scorer: each learns alone."""
    det = make_detector("oif", len(SPEC.names), 1, window_size=256, max_leaf_samples=8)
    det.learn_many(SPEC.transform(SPEC.matrix([p.values for p in _benign(100, 0.0)])))
    save_bundle(tmp_path / "b", {"ns:shop:pod": det}, spec_version="1", bundle_version="v-test")
    bundle = load_bundle(tmp_path / "b", spec_version="1", key=None)
    one, other = Scorer(quick_settings(), SPEC), Scorer(quick_settings(), SPEC)
    one.use_bundle(bundle)
    other.use_bundle(bundle)
    before = other.snapshot()
    one.score(_benign(50, 600.0))
    assert one.snapshot() != before  # the first shard learned its rows ...
    assert other.snapshot() == before  # ... into forests of its own
    assert bundle.models["ns:shop:pod"].to_bytes() == det.to_bytes()  # the bundle is as loaded


def _same_pod_attack(t: float, pod: str = "web-hijacked"):
    return make_profile(ns="shop", pod=pod, workload="Deployment/web", t=t, values=ATTACK_VALUES)


def test_an_entity_that_alerted_teaches_nothing_later_in_its_life() -> None:
    scorer = _trained()
    assert scorer.score([_same_pod_attack(600.0)])[0].alert is not None
    before = scorer.hierarchy.baselines["wl:shop/Deployment/web:pod"].n_learned
    calm = benign_values(np.random.default_rng(3))
    quiet = make_profile(ns="shop", pod="web-hijacked", t=900.0, values=calm)
    out = scorer.score([quiet])
    assert out[0].alert is None
    assert scorer.hierarchy.baselines["wl:shop/Deployment/web:pod"].n_learned == before
    assert [p.entity.pod for p in scorer.gate.withheld["wl:shop/Deployment/web:pod"]] == [
        "web-hijacked",
        "web-hijacked",
    ]


CHANGED_VALUES = {"lifetime_s": 40_000.0, "api_read": 600.0, "distinct_objects_read": 550.0}


def test_withheld_rows_are_learned_once_distinct_entities_of_a_workload_recur() -> None:
    scorer = _trained(quick_settings(release_after_entities=3))
    key = "wl:shop/Deployment/web:pod"
    before = scorer.hierarchy.baselines[key].n_learned

    def changed(t: float):  # the workload now reads far more objects: no guard holds
        return make_profile(pod=f"web-{int(t)}", t=t, values=CHANGED_VALUES)

    for i in range(2):  # two runs of the new behaviour: paged, held back
        assert scorer.score([changed(600.0 + i)])[0].alert is not None
    assert scorer.hierarchy.baselines[key].n_learned == before
    assert len(scorer.gate.withheld[key]) == 2
    scorer.score([changed(602.0)])  # the third distinct entity: the workload's own pattern
    assert key not in scorer.gate.withheld
    assert scorer.hierarchy.baselines[key].n_learned == before + 3


def test_rows_that_hit_a_guard_are_released_only_after_hours_of_recurrence() -> None:
    """Issue 13: a new Deployment whose replicas ship an archive to a new host in its first
    hours must not teach its own baseline that this is normal by repeating it."""
    scorer = _trained(quick_settings(release_after_entities=2))
    key = "wl:shop/Deployment/web:pod"
    before = scorer.hierarchy.baselines[key].n_learned
    for i in range(4):
        out = scorer.score([_attack(600.0 + i)])[0]
        assert out.alert is not None and out.withheld
    assert scorer.hierarchy.baselines[key].n_learned == before
    assert len(scorer.gate.withheld[key]) == 4
    scorer.score([_attack(600.0 + RELEASE_GUARDED_AFTER_S)])  # still recurring hours later
    assert key not in scorer.gate.withheld
    assert scorer.hierarchy.baselines[key].n_learned == before + 5
    assert len(scorer.released) == 5  # the pipeline teaches the first-seen memory these


def test_one_entity_alerting_every_window_pages_once_per_incident() -> None:
    scorer = _trained()
    out = [scorer.score([_same_pod_attack(600.0 + 300 * i)])[0] for i in range(4)]
    assert out[0].alert is not None and not out[0].folded
    assert all(s.alert is None and s.folded for s in out[1:])
    # silent for an hour (no window at all) is not quiet: the same story goes on
    later = scorer.score([_same_pod_attack(600.0 + 300 * 3 + 3600.0)])[0]
    assert later.alert is None and later.folded
    # profiled without alerting for longer than an incident stays open: it pages again
    t = 600.0 + 300 * 4 + 3600.0
    rng = np.random.default_rng(5)
    for i in range(7):
        row = make_profile(ns="shop", pod="web-hijacked", workload="Deployment/web",
                           t=t + 300 * i, values=benign_values(rng))  # fmt: skip
        assert scorer.score([row])[0].alert is None
    again = scorer.score([_same_pod_attack(t + 300 * 7)])[0]
    assert again.alert is not None and not again.folded


def test_bare_pods_and_instances_never_teach_by_repetition() -> None:
    scorer = _trained(quick_settings(release_after_entities=2))
    before = {k: b.n_learned for k, b in scorer.hierarchy.baselines.items()}
    for i in range(4):  # one identity making the same odd bare pod again and again
        bare = make_profile(pod=f"debug-{i}", workload=None, t=600.0 + i, values=ATTACK_VALUES)
        assert scorer.score([bare])[0].alert is not None
    assert {k: b.n_learned for k, b in scorer.hierarchy.baselines.items()} == before
    assert scorer.gate.withheld == {}


def test_an_unknown_detector_is_refused_when_settings_arrive_not_when_scoring() -> None:
    """Settings built in code skip load-time validation; the scorer still refuses them up front
    (``Pipeline.process`` promises never to raise)."""
    bad = msgspec.structs.replace(
        quick_settings(), scoring=msgspec.structs.replace(quick_settings().scoring, detector="oiff")
    )
    with pytest.raises(ConfigError, match="unknown detector 'oiff'"):
        Scorer(bad, SPEC)
    scorer = Scorer(quick_settings(), SPEC)
    with pytest.raises(ConfigError, match="unknown detector 'oiff'"):
        scorer.use_settings(bad)
    assert scorer.settings.scoring.detector == "oif"
