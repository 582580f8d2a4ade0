"""Per-namespace thresholds: target-rate quantile, floor, early fallback, glob overrides."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.config import NamespaceOverride, Settings, ThresholdSettings
from churnguard.scoring.thresholds import MIN_TAIL, Thresholds


def _settings(window: int = 5000, **overrides: NamespaceOverride) -> Settings:
    return Settings(
        thresholds=ThresholdSettings(target_alert_rate=0.01, min_score=0.0, window_profiles=window),
        namespaces=dict(overrides),
    )


def test_quantile_converges_to_the_target_rate() -> None:
    rng = np.random.default_rng(0)
    t = Thresholds(_settings(window=20_000))  # 200 scores in the 1% tail
    for _ in range(40):  # 20,000 scores in pipeline-sized batches
        t.observe("shop", rng.beta(2, 8, size=500).tolist())
    threshold = t.threshold("shop")
    fresh = rng.beta(2, 8, size=200_000)
    assert abs(float(np.mean(fresh >= threshold)) - 0.01) < 0.002


def test_window_is_bounded_and_follows_drift() -> None:
    t = Thresholds(_settings())
    t.observe("shop", [0.9] * 5000)
    t.observe("shop", list(np.linspace(0.0, 0.5, 5000)))  # the old scores fall out
    assert len(t.windows["shop"]) == 5000
    assert 0.49 < t.threshold("shop") <= 0.5


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["shop", "ci"]),
            st.lists(st.floats(0.0, 1.0) | st.sampled_from([0.5, 0.99]), min_size=40, max_size=150),
        ),
        min_size=8,
        max_size=20,
    )
)
def test_a_window_read_between_batches_gives_the_thresholds_of_a_restored_one(
    batches: list[tuple[str, list[float]]],
) -> None:
    """The quantile reads each window through an array kept up to date batch by batch;
    it must be the window's own scores, as a restore (which rebuilds from them) reads them,
    across the window's wrap."""
    t = Thresholds(_settings(window=300))
    for i, (namespace, scores) in enumerate(batches):
        t.observe(namespace, scores, [f"{namespace}-{i}-{j % 7}" for j in range(len(scores))])
        restored = Thresholds(t.settings)
        restored.load(t.export())
        for name in ("shop", "ci", "new"):
            assert t.threshold(name) == restored.threshold(name)


def test_floor_and_early_fallback_to_cluster_then_floor() -> None:
    s = Settings(thresholds=ThresholdSettings(target_alert_rate=0.01, min_score=0.6))
    t = Thresholds(s)
    needed = MIN_TAIL * 100  # 10 scores beyond the 1% quantile
    assert t.threshold("new") == 0.6  # nothing anywhere: the floor
    t.observe("big", list(np.linspace(0.0, 0.95, 2000)))
    t.observe("new", [0.1] * (needed - 1))
    assert t.threshold("new") > 0.9  # the cluster's quantile, not its own few scores
    t.observe("new", [0.1])
    assert t.threshold("new") == 0.6  # now its own quantile (0.1), floored


def test_one_outlier_in_a_small_window_does_not_become_the_threshold() -> None:
    s = Settings(thresholds=ThresholdSettings(target_alert_rate=0.002, min_score=0.6))
    t = Thresholds(s)
    t.observe("shop", [0.3] * 400 + [1.0])  # an attack scored earlier
    assert t.threshold("shop") == 0.6  # too few scores for a 0.2% quantile: the floor


def test_overrides_by_glob_fixed_rate_and_mute() -> None:
    s = _settings(
        **{
            "ci-*": NamespaceOverride(threshold=0.5),
            "data-*": NamespaceOverride(target_alert_rate=0.2),
            "sandbox": NamespaceOverride(mute=True),
        }
    )
    t = Thresholds(s)
    scores = list(np.linspace(0.0, 1.0, 1001))
    for ns in ("ci-runners", "data-lake", "shop", "sandbox"):
        t.observe(ns, scores)
    assert t.threshold("ci-runners") == 0.5
    assert abs(t.threshold("data-lake") - 0.8) < 0.002
    assert abs(t.threshold("shop") - 0.99) < 0.002
    assert t.muted("sandbox") and not t.muted("shop")


def test_export_load_round_trip() -> None:
    t = Thresholds(_settings())
    t.observe("shop", list(np.linspace(0.0, 1.0, 500)))
    again = Thresholds(_settings())
    again.load(t.export())
    assert again.threshold("shop") == t.threshold("shop")


def test_one_persistent_entity_cannot_lift_the_threshold_over_its_own_scores() -> None:
    s = Settings(thresholds=ThresholdSettings(target_alert_rate=0.01, min_score=0.0))
    t = Thresholds(s)
    rng = np.random.default_rng(1)
    t.observe("shop", rng.uniform(0.0, 0.8, 4000).tolist(), [f"pod-{i}" for i in range(4000)])
    calm = t.threshold("shop")
    # an implant scoring 0.97 in 200 windows: counted per profile it would fill the 1 % tail
    t.observe("shop", [0.97] * 200, ["shop/implant"] * 200)
    assert t.threshold("shop") < 0.97
    assert abs(t.threshold("shop") - calm) < 0.01


def test_a_threshold_follows_every_window_it_reads_from() -> None:
    """A namespace too young for its own quantile reads the cluster's window: scores
    observed in another namespace move its threshold, and its own scores move it again."""
    t = Thresholds(_settings())
    t.observe("shop", list(np.linspace(0.0, 0.5, 2000)))
    before = t.threshold("shop")
    assert t.threshold("new") == before < 0.5
    t.observe("billing", [0.9] * 100)  # through the cluster's window only
    assert t.threshold("new") == 0.9
    assert t.threshold("shop") == before
    t.observe("shop", [0.7] * 200)  # now enough of its own
    assert t.threshold("shop") == 0.7
