"""Bundles built offline: they verify, seed the scorer, and the same inputs give the same bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from churnguard.cli import main
from churnguard.config import Settings
from churnguard.errors import ConfigError
from churnguard.offline import training
from churnguard.offline.capture import CaptureRow
from churnguard.profiling.spec import FeatureSpec, spec_path
from churnguard.scoring.baselines import baseline_keys
from churnguard.scoring.scorer import Scorer
from churnguard.store import SignatureInvalid, load_bundle, verify_bundle

SEED, HOURS = 11, 3.0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> training.SimulatedRun:
    return training.simulate_to(tmp_path_factory.mktemp("sim"), seed=SEED, hours=HOURS)


@pytest.fixture(scope="module")
def data(run: training.SimulatedRun) -> training.TrainingData:
    return training.from_simulation(run, Settings())


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def build(out: Path, data: training.TrainingData, **kw) -> training.BuildResult:
    return training.build_bundle(out, data, Settings(), **kw)


def test_built_bundle_verifies_and_describes_its_data(
    tmp_path: Path, data: training.TrainingData
) -> None:
    result = build(tmp_path / "b", data)
    manifest = verify_bundle(tmp_path / "b", spec_version="1", key=None)
    assert manifest.bundle_version == result.manifest.bundle_version
    assert manifest.bundle_version.startswith("sha256-")
    assert manifest.created_at is None  # no wall clock in a reproducible bundle
    t = manifest.training
    assert (t["source"], t["seed"], t["hours"], t["detector"]) == ("simulate", SEED, HOURS, "oif")
    assert t["rows"] == len(data.learn) and t["profiles"] == len(data.profiles)
    assert t["start"].startswith("2026-03-02T00:") and t["end"] > t["start"]
    levels = {key.split(":", 1)[0] for key in manifest.entries}
    assert levels == {"wl", "ns", "cluster"}
    s = Settings().scoring
    for key, entry in manifest.entries.items():
        minimum = s.workload_min_profiles if key.startswith("wl:") else s.namespace_min_profiles
        assert entry.n_seen >= minimum, key  # models that could not score are not shipped


def test_same_inputs_same_bytes(tmp_path: Path, data: training.TrainingData) -> None:
    first = build(tmp_path / "one", data)
    second = build(tmp_path / "two", data)
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")
    assert first.manifest.bundle_version == second.manifest.bundle_version
    fewer = training.TrainingData(data.profiles, data.learn[:-50], data.malicious, data.description)
    assert build(tmp_path / "three", fewer).manifest.bundle_version != (
        first.manifest.bundle_version
    )


def test_bundle_seeds_the_scorer_from_the_first_profile(
    tmp_path: Path, data: training.TrainingData, spec: FeatureSpec
) -> None:
    build(tmp_path / "b", data)
    bundle = load_bundle(tmp_path / "b", spec_version=spec.version, key=None)
    scorer = Scorer(Settings(), spec, bundle)
    assert scorer.model_version.startswith(bundle.manifest.bundle_version)
    first = sorted(data.profiles, key=lambda p: p.window_end)[:20]
    scored = scorer.score(first)
    for s in scored:
        # a fresh scorer already picks a shipped baseline, most specific level first
        chosen = next(k for k in baseline_keys(s.profile) if k in bundle.manifest.entries)
        assert s.baseline_key == chosen
        x = spec.transform(spec.vector(s.profile.values))
        expected = load_bundle(tmp_path / "b", spec_version="1", key=None).models[chosen]
        assert s.score == pytest.approx(float(expected.score_many(x)[0]))


def test_cluster_only_bundle_for_other_clusters(
    tmp_path: Path, data: training.TrainingData
) -> None:
    result = build(tmp_path / "b", data, levels=("cluster",))
    assert set(result.manifest.entries) <= {"cluster:pod", "cluster:instance"}
    assert "cluster:pod" in result.manifest.entries
    with pytest.raises(ConfigError, match="unknown baseline level"):
        build(tmp_path / "c", data, levels=("pods",))


def test_sklearn_baselines_are_plain_isolation_forests(
    tmp_path: Path, data: training.TrainingData, spec: FeatureSpec
) -> None:
    # three namespaces keep this fast: one scikit-learn fit per baseline key
    names = sorted({p.entity.namespace for p in data.learn if p.entity.namespace})[:3]
    rows = [p for p in data.learn if p.entity.namespace in names]
    small = training.TrainingData(rows, rows, set(), data.description)
    build(tmp_path / "one", small, detector="iforest", levels=("namespace", "cluster"))
    build(tmp_path / "two", small, detector="iforest", levels=("namespace", "cluster"))
    one = load_bundle(tmp_path / "one", spec_version="1", key=None)
    two = load_bundle(tmp_path / "two", spec_version="1", key=None)
    assert one.manifest.detector == "iforest"
    forest = one.models["cluster:pod"]
    assert isinstance(forest.estimator_, IsolationForest)
    # refit at the end of training: the forest covers every row the reservoir holds
    assert forest.estimator_.n_features_in_ == len(spec.names)
    X = spec.transform(spec.matrix([p.values for p in data.profiles[:300]]))
    for key in one.models:
        np.testing.assert_array_equal(one.models[key].score_many(X), two.models[key].score_many(X))


def test_capture_learns_only_rows_that_did_not_alert(
    tmp_path: Path, data: training.TrainingData, run: training.SimulatedRun
) -> None:
    rows = [
        CaptureRow(
            profile=p,
            score=0.9 if i % 10 == 0 else 0.3,
            threshold=0.8,
            level="namespace",
            baseline_key="ns:x:pod",
            alerted=i % 10 == 0,
        )
        for i, p in enumerate(data.profiles)
    ]
    path = tmp_path / "rows.jsonl"
    enc = msgspec.json.Encoder()
    path.write_bytes(b"".join(enc.encode(r) + b"\n" for r in rows))
    captured = training.from_capture(path, run.labels)
    learnable = [r for r in rows if not r.alerted and r.profile.entity.key() not in data.malicious]
    assert len(captured.learn) == len(learnable)
    assert captured.description["alerted_rows"] == sum(r.alerted for r in rows)
    result = build(tmp_path / "b", captured, labels=run.labels)
    assert result.metrics["evaluated_on"]["source"].startswith("training capture")
    assert result.metrics["benign_entities"] > 0


def test_cli_build_signs_and_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("TEST_BUNDLE_KEY", "s3cret")
    out = tmp_path / "models" / "default"
    argv = ["model", "build", "--out", str(out), "--seed", "5", "--hours", "1",
            "--levels", "cluster", "--key-env", "TEST_BUNDLE_KEY"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "signature  valid (HMAC-SHA256)" in printed and "cluster:pod" in printed
    assert verify_bundle(out, spec_version="1", key=b"s3cret").signature
    with pytest.raises(SignatureInvalid):
        verify_bundle(out, spec_version="1", key=b"other")
    before = files_of(out)
    assert main(argv) == 2  # not empty, no --force
    assert "pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert files_of(out) == before  # rebuilt in place, byte for byte
    assert [p.name for p in out.parent.iterdir()] == ["default"]  # no staging left behind


def test_replay_refuses_a_tampered_bundle_in_one_line(
    tmp_path: Path, data: training.TrainingData, run: training.SimulatedRun, capsys
) -> None:
    bundle = tmp_path / "b"
    build(bundle, data, levels=("cluster",))
    model_file = next(p for p in bundle.iterdir() if p.name.startswith("model-"))
    blob = bytearray(model_file.read_bytes())
    blob[-1] ^= 0xFF
    model_file.write_bytes(bytes(blob))
    code = main(
        ["replay", *run.telemetry, "--alerts", str(tmp_path / "a.jsonl"), "--model", str(bundle)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1 and "does not match its sha256" in err
    assert not (tmp_path / "a.jsonl").exists()


def test_without_labels_no_metrics_and_no_temp_paths(
    tmp_path: Path, data: training.TrainingData
) -> None:
    build(tmp_path / "b", data, levels=("cluster",))
    doc = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert doc["metrics"] == {}  # nothing labelled to evaluate on: no invented numbers
    text = json.dumps(doc)
    assert str(tmp_path.parent) not in text
    assert "churnguard-train" not in text and "churnguard-eval" not in text


def test_evaluation_leaves_the_models_it_was_given_untouched(
    data: training.TrainingData, run: training.SimulatedRun, spec: FeatureSpec
) -> None:
    models = training.select_baselines(
        training.fit_baselines(data.learn, spec, Settings(), detector="oif"),
        Settings(),
        ("cluster",),
    )
    before = {k: m.to_bytes() for k, m in models.items()}
    scorer = training.scorer_for(models, Settings())
    training.rescore(scorer, data.profiles)  # the scorer learns online as it goes
    assert scorer.hierarchy.baselines["cluster:pod"].detector.n_seen > models["cluster:pod"].n_seen
    assert {k: m.to_bytes() for k, m in models.items()} == before


def test_shipped_default_bundle_matches_its_documented_build(spec: FeatureSpec) -> None:
    """models/default verifies, fits today's feature spec, and is what models/README.md says."""
    root = Path(__file__).resolve().parents[2]
    bundle = load_bundle(root / "models" / "default", spec_version=spec.version, key=None)
    t = bundle.manifest.training
    assert (t["seed"], t["hours"], t["levels"], t["detector"]) == (7, 12.0, ["cluster"], "oif")
    documented = "model build --out models/default --seed 7 --hours 12 --levels cluster"
    assert documented in (root / "models" / "README.md").read_text()
    assert sum(p.stat().st_size for p in (root / "models" / "default").iterdir()) < 2_000_000
    current = hashlib.sha256(spec_path(spec.version).read_bytes()).hexdigest()
    assert t["spec_sha256"] == current, f"features changed: rebuild with `churnguard {documented}`"
    x = spec.transform(spec.vector({}))
    assert 0.0 <= float(bundle.models["cluster:pod"].score_many(x)[0]) <= 1.0
    assert bundle.manifest.metrics["labels"] > 0
