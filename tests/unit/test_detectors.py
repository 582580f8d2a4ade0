"""Detectors: rank outliers above inliers, forget old regimes, round-trip, never NaN."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, ParameterGrid

from churnguard.errors import ConfigError, ModelError
from churnguard.scoring.detectors import (
    DETECTORS,
    Detector,
    detector_from_bytes,
    make_detector,
    prepare_detector,
)

D = 8
N_CONSTANT = 2  # trailing all-zero columns, like flags that never fire
# small but real settings so the suite stays fast; the defaults are benchmarked instead
FAST = {
    "oif": {"n_trees": 32},
    "hst": {"n_trees": 10, "height": 6, "window_size": 100},
    "iforest": {"n_estimators": 50},
}


def clusters_with_outliers(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters (95 %) and uniform outliers around them (5 %), shuffled."""
    rng = np.random.default_rng(seed)
    live = D - N_CONSTANT
    a = rng.normal(2.0, 0.5, size=(950, live))
    b = rng.normal(-2.0, 0.5, size=(950, live))
    outliers = rng.uniform(-6.0, 6.0, size=(100, live))
    X = np.hstack([np.vstack([a, b, outliers]), np.zeros((2000, N_CONSTANT))])
    y = np.r_[np.zeros(1900), np.ones(100)]
    order = rng.permutation(len(X))
    return X[order], y[order]


def fitted(name: str, X: np.ndarray, seed: int = 0) -> Detector:
    return make_detector(name, n_features=X.shape[1], seed=seed, **FAST[name]).learn_many(X)


@pytest.mark.parametrize(("name", "min_auc"), [("oif", 0.9), ("iforest", 0.9), ("hst", 0.75)])
def test_outliers_rank_above_inliers(name: str, min_auc: float) -> None:
    X, y = clusters_with_outliers()
    det = fitted(name, X)
    scores = det.score_many(X)
    assert det.n_seen == len(X)
    assert roc_auc_score(y, scores) > min_auc
    # fresh points from the same distributions rank the same way
    fresh, fresh_y = clusters_with_outliers(seed=1)
    assert roc_auc_score(fresh_y, det.score_many(fresh)) > min_auc


def test_oif_forgets_an_old_regime() -> None:
    rng = np.random.default_rng(3)
    old = rng.normal(0.0, 1.0, size=(1500, 4))
    new = rng.normal(6.0, 1.0, size=(1500, 4))
    probe = rng.normal(0.0, 1.0, size=(200, 4))
    det = make_detector("oif", n_features=4, seed=0, window_size=512)
    det.learn_many(old)
    before = det.score_many(probe)
    det.learn_many(new)  # three windows of the new regime: the old one is fully unlearned
    after = det.score_many(probe)
    assert after.mean() > before.mean() + 0.1
    assert after.mean() > det.score_many(new[-200:]).mean()


def test_oif_tree_bookkeeping_stays_exact_while_sliding() -> None:
    """The window holds the newest rows, roots count exactly it, no node slot leaks."""
    rng = np.random.default_rng(4)
    det = make_detector("oif", n_features=3, seed=0, n_trees=8, window_size=300)
    for shift in (0.0, 5.0, -5.0, 0.0):
        rows = rng.normal(shift, 1.0, size=(400, 3))
        det.learn_many(rows)
        assert det.n_window_ == 300
        window = np.roll(det.window_, -det.window_head_, axis=1).T  # one row per feature
        np.testing.assert_array_equal(window, rows[-300:])
        assert (det.count_[det.roots_] == 300).all()
        reachable, stack = 0, det.roots_.tolist()
        while stack:
            node = stack.pop()
            reachable += 1
            if det.feature_[node] >= 0:
                stack += [int(det.left_[node]), int(det.right_[node])]
        assert reachable + len(det.free_) == det.n_nodes_


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_round_trip_gives_identical_scores_and_learning(name: str) -> None:
    X, _ = clusters_with_outliers()
    det = fitted(name, X[:1500])
    again = detector_from_bytes(name, det.to_bytes())
    np.testing.assert_array_equal(again.score_many(X), det.score_many(X))
    assert again.n_seen == det.n_seen
    # the random state travels too: both continue identically
    det.learn_many(X[1500:])
    again.learn_many(X[1500:])
    np.testing.assert_array_equal(again.score_many(X), det.score_many(X))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_unfitted_round_trip_and_neutral_score(name: str) -> None:
    det = make_detector(name, n_features=3, seed=2, **FAST[name])
    again = detector_from_bytes(name, det.to_bytes())
    assert again.n_seen == 0
    assert again.score_one(np.zeros(3)) == det.score_one(np.zeros(3)) == 0.5
    assert type(again) is type(det)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_same_seed_same_scores(name: str) -> None:
    X, _ = clusters_with_outliers()
    np.testing.assert_array_equal(
        fitted(name, X, seed=5).score_many(X), fitted(name, X, seed=5).score_many(X)
    )
    assert not np.array_equal(
        fitted(name, X, seed=5).score_many(X), fitted(name, X, seed=6).score_many(X)
    )


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_all_constant_columns(name: str) -> None:
    det = fitted(name, np.ones((300, 5)))
    scores = det.score_many(np.vstack([np.ones((3, 5)), np.full((1, 5), 9.0)]))
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert scores[0] == scores[1] == scores[2]


def test_learn_one_and_score_one_match_the_batch_forms() -> None:
    X, _ = clusters_with_outliers()
    one = make_detector("oif", n_features=D, seed=1, learn_chunk=1)
    for row in X[:300]:
        one.learn_one(row)
    many = make_detector("oif", n_features=D, seed=1, learn_chunk=1).learn_many(X[:300])
    assert one.n_seen == 300
    assert one.score_one(X[0]) == many.score_many(X[:1])[0]


def test_bad_names_widths_and_blobs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        make_detector("nope", n_features=3)
    with pytest.raises(ConfigError, match="bad parameters"):
        make_detector("oif", n_features=3, n_tree=4)
    det = fitted("oif", np.random.default_rng(0).normal(size=(100, 3)))
    with pytest.raises(ValueError, match="expected 3 features"):
        det.score_many(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        det.learn_many(np.full((1, 3), np.nan))
    with pytest.raises(ModelError, match="not a serialised hst"):
        detector_from_bytes("hst", det.to_bytes())
    with pytest.raises(ModelError):
        detector_from_bytes("oif", b"\x00garbage")


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def learn_and_score(draw: st.DrawFn) -> tuple[str, np.ndarray, np.ndarray]:
    name = draw(st.sampled_from(sorted(DETECTORS)))
    d = draw(st.integers(1, 5))
    learn = draw(arrays(float, (draw(st.integers(0, 40)), d), elements=finite))
    score = draw(arrays(float, (draw(st.integers(1, 10)), d), elements=finite))
    return name, learn, score


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(learn_and_score())
def test_scores_are_finite_and_in_unit_interval(case: tuple[str, np.ndarray, np.ndarray]) -> None:
    name, learn, score = case
    det = make_detector(name, n_features=learn.shape[1], seed=0, **FAST[name])
    det.learn_many(learn)
    scores = det.score_many(score)
    assert scores.shape == (len(score),)
    assert np.isfinite(scores).all()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detectors_follow_scikit_learn_estimator_conventions(name: str) -> None:
    """Constructor arguments stored as given, learned state ends with ``_``, clone is unfitted."""
    X, _ = clusters_with_outliers()
    det = fitted(name, X[:300], seed=5)
    params = det.get_params()
    assert params["seed"] == 5 and all(params[k] == v for k, v in FAST[name].items())
    learned = [a for a in vars(det) if not a.startswith("_")]
    assert set(learned) - set(params), "a fitted detector holds learned state"
    assert all(a.endswith("_") for a in set(learned) - set(params))

    twin = clone(det)
    assert twin.get_params() == params and twin.n_seen == 0
    assert not any(a.endswith("_") for a in vars(twin))
    assert np.array_equal(twin.fit(X[:300]).score_many(X[:50]), det.score_many(X[:50]))
    assert np.array_equal(det.score_samples(X[:5]), -det.score_many(X[:5]))

    det.set_params(seed=9)
    assert det.get_params()["seed"] == 9 and det.seed == 9
    det.fit(X[:100])
    assert det.n_seen == 100  # fit starts over; learn_many would have added to 300


def test_grid_search_picks_parameters_with_scikit_learn_tools() -> None:
    """What a notebook does: a ParameterGrid loop over clones, and GridSearchCV itself."""
    X, y = clusters_with_outliers()
    base = make_detector("oif", n_features=D, seed=0, n_trees=8)

    def auc(estimator: Detector, X_: np.ndarray, y_: np.ndarray) -> float:
        return float(roc_auc_score(y_, estimator.score_many(X_)))

    grid = {"max_leaf_samples": [8, 32], "window_size": [256, 1024]}
    by_hand = {
        tuple(sorted(p.items())): auc(clone(base).set_params(**p).fit(X), X, y)
        for p in ParameterGrid(grid)
    }
    assert len(by_hand) == 4 and all(0.5 < v <= 1.0 for v in by_hand.values())

    search = GridSearchCV(base, grid, scoring=auc, cv=2).fit(X, y)
    assert set(search.best_params_) == set(grid)
    assert search.best_estimator_.n_seen == len(X) and search.best_score_ > 0.8


def _tick_rows(rng: np.random.Generator, n_detectors: int, step: int) -> list[np.ndarray]:
    """One tick's rows per detector: mostly 0 to 4 (a lone row is the common case), a burst
    of up to 300 every 40 ticks (several learn chunks), skewed and with a constant column."""
    big = step % 40 == 39
    out = []
    for i in range(n_detectors):
        n = int(rng.integers(0, 300 if big else 5))
        X = rng.gamma(1.0, 1.0 + i % 3, size=(n, 5))
        X[:, -1] = 0.0
        out.append(X)
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16))
def test_grouped_scoring_and_learning_are_bit_identical_to_one_call_each(seed: int) -> None:
    """The scorer's one pass over a tick's baselines gives exactly each detector's own
    ``score_many``/``learn_many``: same scores, same learned bytes (the alert ids rest on it).
    Four of the grouped forests share one node pool, as the scorer's baselines do (their
    blocks move and the pool is rebuilt as they grow); two keep their own."""
    from churnguard.scoring.detectors.grouped import learn_groups, score_groups
    from churnguard.scoring.detectors.pool import NodePool

    scopes = [
        {"window_size": 64, "max_leaf_samples": 4, "learn_chunk": 16},
        {"window_size": 256, "max_leaf_samples": 8},
        {"window_size": 128, "max_leaf_samples": 16, "range_novelty": False},
    ]

    def fresh() -> list[Detector]:
        oifs = [make_detector("oif", 5, seed=seed + i, **scopes[i % 3]) for i in range(6)]
        return [*oifs, make_detector("hst", 5, seed=seed, **FAST["hst"])]

    one, grouped = fresh(), fresh()
    pool = NodePool(5)
    for det in grouped[:4]:
        pool.adopt(det)
    rng = np.random.default_rng(seed)
    for step in range(120):
        rows = _tick_rows(rng, len(one), step)
        expected = [d.score_many(X) for d, X in zip(one, rows, strict=True)]
        got = score_groups(grouped, rows)
        for e, g in zip(expected, got, strict=True):
            assert e.shape == g.shape and np.array_equal(e, g)
        for d, X in zip(one, rows, strict=True):
            d.learn_many(X)
        learn_groups(grouped, rows)
    assert [d.to_bytes() for d in one] == [d.to_bytes() for d in grouped]
    assert all(d.pool_ is pool for d in grouped[:4])


def test_a_forest_in_a_shared_pool_keeps_its_bytes_when_moved_copied_or_reloaded() -> None:
    """The pool is storage only: adopting a learned forest, growing it inside the pool,
    deep-copying it and reading its bytes back all leave the same learned bytes."""
    import copy
    import pickle

    from churnguard.scoring.detectors.oif import OnlineIsolationForest
    from churnguard.scoring.detectors.pool import NodePool

    rng = np.random.default_rng(3)
    X = rng.normal(size=(900, 4))
    alone = OnlineIsolationForest(n_trees=8, max_leaf_samples=4, window_size=256, seed=5)
    pooled = OnlineIsolationForest(n_trees=8, max_leaf_samples=4, window_size=256, seed=5)
    neighbour = OnlineIsolationForest(n_trees=8, max_leaf_samples=4, window_size=256, seed=6)
    pool = NodePool(4)
    alone.learn_many(X[:100])
    pooled.learn_many(X[:100])
    pool.adopt(pooled)  # learned first, then moved in
    pool.adopt(neighbour)  # not learned yet: placed on its first rows
    for start in range(100, 900, 50):  # blocks outgrow the pool: moved, pool rebuilt
        alone.learn_many(X[start : start + 50])
        pooled.learn_many(X[start : start + 50])
        neighbour.learn_many(-X[start : start + 50])
    assert pooled.pool_ is pool and neighbour.pool_ is pool
    assert pooled.feature_.base is pool.feature_  # a view of the pool, not a copy
    assert pooled.to_bytes() == alone.to_bytes()
    assert np.array_equal(pooled.score_many(X[:50]), alone.score_many(X[:50]))
    copied = copy.deepcopy(pooled)
    assert copied.pool_ is not pool and copied.to_bytes() == alone.to_bytes()
    copied.learn_many(X[:30])  # learning the copy leaves the pooled forest alone
    assert pooled.to_bytes() == alone.to_bytes()
    assert pickle.loads(pickle.dumps(pooled)).to_bytes() == alone.to_bytes()
    reloaded = OnlineIsolationForest.from_bytes(pooled.to_bytes())
    pool.adopt(reloaded)
    assert reloaded.to_bytes() == alone.to_bytes()
    with pytest.raises(ValueError, match="features"):
        NodePool(3).adopt(reloaded)


def test_a_pool_rebuilt_around_gaps_keeps_every_live_forests_nodes() -> None:
    """Dropped forests and moved blocks leave gaps; a rebuild packs the live blocks (runs of
    adjacent ones copied together) and every forest keeps its nodes, as views of the pool,
    with free slots after the packed blocks."""
    import gc

    from churnguard.scoring.detectors.oif import OnlineIsolationForest
    from churnguard.scoring.detectors.pool import NODE_FIELDS, NodePool

    rng = np.random.default_rng(4)
    pool = NodePool(3)
    forests = [OnlineIsolationForest(n_trees=4, max_leaf_samples=2, seed=i) for i in range(6)]
    for f in forests:
        pool.adopt(f)
        f.learn_many(rng.normal(size=(40, 3)))
    forests[1]._grow()  # its old block is a gap
    del forests[3]  # a dropped baseline: its block too
    gc.collect()
    before = [{name: np.array(getattr(f, name)) for name in NODE_FIELDS} for f in forests]
    pool._rebuild(0)
    assert pool.end == sum(len(f.feature_) for f in forests)
    for f, nodes in zip(forests, before, strict=True):
        assert f.feature_.base is pool.feature_
        for name, values in nodes.items():
            assert getattr(f, name).tobytes() == values.tobytes()
    assert (pool.feature_[pool.end :] == -1).all() and (pool.lo_[pool.end :] == np.inf).all()


def test_grouped_learning_refuses_a_detector_twice_and_bad_rows() -> None:
    from churnguard.scoring.detectors.grouped import learn_groups

    det = make_detector("oif", 3, seed=0)
    with pytest.raises(ValueError, match="appears twice"):
        learn_groups([det, det], [np.ones((1, 3)), np.ones((1, 3))])
    with pytest.raises(ValueError, match="NaN"):
        learn_groups([det], [np.full((1, 3), np.nan)])
    assert det.n_seen == 0


def test_box_widening_row_by_row_keeps_the_bits_of_a_per_leaf_reduction() -> None:
    """Boxes widened one row at a time hold the bits of reducing each leaf's rows first,
    signed zeros included (the feature spec negates "low" features: 0.0 and -0.0 occur)."""
    from churnguard.scoring.detectors import _kernels

    rng = np.random.default_rng(3)
    rows = rng.choice([0.0, -0.0, 1.0, -1.0], size=(300, 4))
    nodes = rng.integers(0, 20, len(rows))
    lo = rng.choice([np.inf, 0.0, -0.0], size=(20, 4))
    hi = -lo
    expected_lo, expected_hi = lo.copy(), hi.copy()
    for node in np.unique(nodes):
        mine = rows[nodes == node]
        expected_lo[node] = np.minimum(lo[node], np.minimum.reduce(mine, axis=0))
        expected_hi[node] = np.maximum(hi[node], np.maximum.reduce(mine, axis=0))
    # 20 one-leaf forests: row r is learned by forest nodes[r], whose root is node nodes[r]
    feature, left = np.full(20, -1, np.int32), np.full(20, -1, np.int32)
    count, depth = np.zeros(20, np.int64), np.zeros(20, np.int32)
    roots = np.arange(20, dtype=np.int64).reshape(1, -1)
    ripe, _ = _kernels.learn_route(
        *(feature, np.zeros(20), left, left, count, depth, lo, hi, rows, roots),
        *(nodes.astype(np.int64), np.zeros(20, np.int64), np.ones(20, np.int64), np.zeros(20)),
    )
    assert len(ripe) == 0 and count.sum() == len(rows)
    assert lo.tobytes() == expected_lo.tobytes()
    assert hi.tobytes() == expected_hi.tobytes()


def test_prepare_detector_readies_the_named_kind_and_refuses_unknown_names(monkeypatch):
    readied: list[str] = []
    for cls in DETECTORS.values():
        monkeypatch.setattr(cls, "prepare", classmethod(lambda c: readied.append(c.name)))
    prepare_detector("oif")
    prepare_detector("hst")
    assert readied == ["oif", "hst"]
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        prepare_detector("nope")
