"""The notebooks run top to bottom in a fresh kernel and leave their key outputs behind.

Each executes with nbclient in the venv's own ``python3`` kernel (ipykernel's native spec,
so the kernel is the interpreter running the tests), writing under a temporary directory.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

nbformat = pytest.importorskip("nbformat", reason="pip install '.[notebooks]'")
nbclient = pytest.importorskip("nbclient", reason="pip install '.[notebooks]'")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 120


def make_notebooks():
    """The generator module (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


def execute(name: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run one notebook; the kernel inherits the environment that points its outputs at ``out``."""
    monkeypatch.setenv("CHURNGUARD_NB_OUT", str(out))
    monkeypatch.delenv("CHURNGUARD_NB_IMG", raising=False)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return out / name


def test_committed_notebooks_match_the_generator() -> None:
    module = make_notebooks()
    for filename, make in module.NOTEBOOKS.items():
        committed = (NOTEBOOKS / filename).read_text()
        assert committed == module.render(make), f"{filename}: run notebooks/make_notebooks.py"
        nb = nbformat.reads(committed, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_01_explore_features(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churnguard.offline.capture import read_capture

    result = execute("01_explore_features", out, monkeypatch)
    rows = read_capture(result / "capture.jsonl")
    summary = json.loads((result / "summary.json").read_text())
    assert summary["windows"] == len(rows) > 500
    assert summary["labelled_windows"] > 0
    for png in ("01_features_by_namespace.png", "01_scores_by_namespace.png"):
        assert (result / "img" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_02_retrain_baselines(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churnguard.store import load_bundle, verify_bundle

    result = execute("02_retrain_baselines", out, monkeypatch)
    key = b"notebook-demo-key"
    manifest = verify_bundle(result / "bundle", spec_version="1", key=key)
    assert manifest.detector == "iforest"
    assert {k.split(":", 1)[0] for k in manifest.entries} == {"wl", "ns", "cluster"}
    assert manifest.training["source"] == "capture"
    assert 0.0 <= manifest.metrics["recall"] <= 1.0
    assert manifest.metrics["evaluated_on"]["seed"] == 4  # the held-out simulation
    bundle = load_bundle(result / "bundle", spec_version="1", key=key)
    assert type(bundle.models["cluster:pod"].estimator_).__name__ == "IsolationForest"
    assert (result / "img" / "02_retrained_vs_online.png").exists()


def test_03_tune_thresholds(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churnguard.config import load_settings
    from churnguard.offline import tuning
    from churnguard.offline.capture import read_capture

    result = execute("03_tune_thresholds", out, monkeypatch)
    settings = load_settings(result / "thresholds.toml")
    floor = load_settings().thresholds.min_score
    thresholded = tuning.by_namespace(read_capture(result / "capture.jsonl"))
    assert set(settings.namespaces) == set(thresholded)  # one override per tuned namespace
    for ns in thresholded:
        override = settings.namespace_override(ns)
        assert override is not None and override.threshold >= floor
    for png in ("03_threshold_curves.png", "03_alert_volume.png"):
        assert (result / "img" / png).exists()
