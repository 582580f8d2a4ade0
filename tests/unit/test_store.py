"""Model bundles: verified before anything is deserialised; refusals are specific and final."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from churnguard import store
from churnguard.cli import main
from churnguard.config import Settings
from churnguard.scoring.detectors import make_detector
from churnguard.store import (
    BundleInvalid,
    BundleTampered,
    BundleWatcher,
    SignatureInvalid,
    SpecMismatch,
    key_from_env,
    load_bundle,
    save_bundle,
    verify_bundle,
)

KEY = b"test-signing-key"
ROWS = np.random.default_rng(0).normal(size=(300, 4))


def write(root: Path, version: str = "v1", *, key: bytes | None = KEY, **kw) -> Path:
    models = {
        "cluster": make_detector("oif", 4, seed=1, n_trees=8).learn_many(ROWS),
        "ns:payments": make_detector("hst", 4, seed=2, height=4).learn_many(ROWS[:50]),
        "wl:payments/Deployment/api": make_detector("iforest", 4, n_estimators=10).learn_many(ROWS),
    }
    save_bundle(
        root,
        models,
        spec_version="1",
        bundle_version=version,
        created_at="2024-06-01T00:00:00Z",
        training={"rows": 300, "seed": 0},
        metrics={"auc": 0.93},
        extra_files={"thresholds.json": b'{"default": 0.6}'},
        key=key,
        **kw,
    )
    return root


def model_file(root: Path, baseline: str = "cluster") -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    return root / manifest["entries"][baseline]["file"]


@pytest.fixture
def never_deserialise(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kw: object) -> None:
        pytest.fail("a model was deserialised from an unverified bundle")

    monkeypatch.setattr(store, "detector_from_bytes", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def test_round_trip(tmp_path: Path) -> None:
    root = write(tmp_path / "b")
    bundle = load_bundle(root, spec_version="1", key=KEY)
    m = bundle.manifest
    assert (m.format, m.bundle_version, m.spec_version, m.detector) == (
        "churnguard-bundle/1",
        "v1",
        "1",
        "mixed",
    )
    assert m.training == {"rows": 300, "seed": 0} and m.metrics == {"auc": 0.93}
    assert m.entries["cluster"].n_seen == 300 and m.entries["ns:payments"].n_seen == 50
    assert bundle.extras == {"thresholds.json": b'{"default": 0.6}'}
    again = make_detector("oif", 4, seed=1, n_trees=8).learn_many(ROWS)
    np.testing.assert_array_equal(bundle.models["cluster"].score_many(ROWS), again.score_many(ROWS))
    assert sorted(bundle.models) == ["cluster", "ns:payments", "wl:payments/Deployment/api"]
    assert verify_bundle(root, spec_version=None, key=None).signature == m.signature


def test_flipped_byte_is_refused_before_anything_is_deserialised(
    tmp_path: Path, never_deserialise: None
) -> None:
    root = write(tmp_path / "b")
    path = model_file(root, "ns:payments")  # the pickled river model
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleTampered, match="does not match its sha256"):
        load_bundle(root, spec_version="1", key=KEY)
    with pytest.raises(BundleTampered):  # no key: hashes are still checked
        load_bundle(root, spec_version="1", key=None)


def test_edited_manifest_is_refused_when_signed(tmp_path: Path, never_deserialise: None) -> None:
    root = write(tmp_path / "b")
    doc = json.loads((root / "manifest.json").read_text())
    doc["metrics"]["auc"] = 0.99
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(SignatureInvalid, match="does not match the configured key"):
        load_bundle(root, spec_version="1", key=KEY)


def test_rehashed_model_swap_is_refused_when_signed(
    tmp_path: Path, never_deserialise: None
) -> None:
    """An attacker who replaces a model *and* fixes its hash still cannot re-sign."""
    root = write(tmp_path / "b")
    path = model_file(root)
    path.write_bytes(b"evil")
    doc = json.loads((root / "manifest.json").read_text())
    doc["files"][path.name] = store._sha256(b"evil")
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(SignatureInvalid):
        load_bundle(root, spec_version="1", key=KEY)


def test_wrong_key_and_unsigned_bundles(tmp_path: Path) -> None:
    signed = write(tmp_path / "signed")
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_bundle(signed, spec_version="1", key=b"other-key")
    unsigned = write(tmp_path / "unsigned", key=None)
    with pytest.raises(SignatureInvalid, match="unsigned"):
        verify_bundle(unsigned, spec_version="1", key=KEY)
    assert verify_bundle(unsigned, spec_version="1", key=None).signature is None


def test_spec_version_mismatch(tmp_path: Path) -> None:
    root = write(tmp_path / "b")
    with pytest.raises(SpecMismatch, match="feature spec v1, expected v2"):
        verify_bundle(root, spec_version="2", key=KEY)


def test_missing_and_extra_files(tmp_path: Path, never_deserialise: None) -> None:
    root = write(tmp_path / "b")
    (root / "notes.txt").write_text("not in the manifest")
    with pytest.raises(BundleTampered, match=r"does not list: \['notes.txt'\]"):
        verify_bundle(root, spec_version="1", key=KEY)
    (root / "notes.txt").unlink()
    model_file(root).unlink()
    with pytest.raises(BundleTampered, match="missing files"):
        load_bundle(root, spec_version="1", key=KEY)


@pytest.mark.parametrize("name", ["../outside.oif", "/etc/passwd", "sub/x", ".hidden", ""])
def test_path_traversal_is_refused(tmp_path: Path, never_deserialise: None, name: str) -> None:
    root = write(tmp_path / "b", key=None)
    doc = json.loads((root / "manifest.json").read_text())
    doc["files"][name] = store._sha256(b"")
    doc["entries"]["cluster"]["file"] = name
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleInvalid, match="unsafe file name"):
        load_bundle(root, spec_version="1", key=None)


def test_not_a_bundle_and_unsafe_extra_names(tmp_path: Path) -> None:
    with pytest.raises(BundleInvalid, match=r"no manifest\.json"):
        verify_bundle(tmp_path, spec_version=None, key=None)
    (tmp_path / "manifest.json").write_text('{"format": "something/2"}')
    with pytest.raises(BundleInvalid, match="expected 'churnguard-bundle/1'"):
        verify_bundle(tmp_path, spec_version=None, key=None)
    with pytest.raises(BundleInvalid, match="unsafe"):
        save_bundle(
            tmp_path / "new", {}, spec_version="1", bundle_version="x", extra_files={"../x": b""}
        )
    with pytest.raises(store.BundleError, match="not empty"):
        write(tmp_path)


def test_key_from_env() -> None:
    settings = Settings()
    assert key_from_env(settings, {"CHURNGUARD_MODEL_KEY": "s3cret"}) == b"s3cret"
    assert key_from_env(settings, {"CHURNGUARD_MODEL_KEY": ""}) is None
    assert key_from_env(settings, {}) is None


def test_watcher_loads_new_bundles_and_keeps_the_last_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    real_load = store.load_bundle

    def counting_load(directory: Path, **kw: object) -> store.Bundle:
        loads.append(directory)
        return real_load(directory, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "load_bundle", counting_load)
    live = tmp_path / "live"
    write(tmp_path / "v1", "v1").rename(live)
    watcher = BundleWatcher(live, spec_version="1", key=KEY)
    first = watcher.poll()
    assert first is not None and first.manifest.bundle_version == "v1"
    assert watcher.poll() is None  # unchanged

    # a new bundle arrives, tampered: refused, reason kept, not re-verified every poll
    write(tmp_path / "v2", "v2")
    path = model_file(tmp_path / "v2")
    path.write_bytes(path.read_bytes()[:-1])
    _swap(live, tmp_path / "v2")
    assert watcher.poll() is None
    assert "does not match its sha256" in (watcher.last_error or "")
    assert watcher.poll() is None
    assert len(loads) == 2  # v1 once, the tampered v2 once

    # then a good one: picked up, error cleared
    write(tmp_path / "v3", "v3")
    _swap(live, tmp_path / "v3")
    third = watcher.poll()
    assert third is not None and third.manifest.bundle_version == "v3"
    assert watcher.last_error is None

    # started with the bundle already loaded: the first poll does not reload it
    assert BundleWatcher(live, "1", KEY, current=third).poll() is None


def test_watcher_survives_a_missing_directory(tmp_path: Path) -> None:
    watcher = BundleWatcher(tmp_path / "absent", spec_version="1", key=None)
    assert watcher.poll() is None
    assert "cannot read" in (watcher.last_error or "")


def _swap(live: Path, new: Path) -> None:
    for f in live.iterdir():
        f.unlink()
    live.rmdir()
    new.rename(live)


def test_cli_verify_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "b")
    monkeypatch.setenv("MY_KEY", KEY.decode())
    assert main(["model", "verify", str(root), "--key-env", "MY_KEY"]) == 0
    out = capsys.readouterr().out
    assert "version    v1" in out and "signature  valid" in out
    assert "wl:payments/Deployment/api" in out and "auc: 0.93" in out

    monkeypatch.setenv("MY_KEY", "wrong")
    assert main(["model", "verify", str(root), "--key-env", "MY_KEY"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "signature does not match" in err

    monkeypatch.delenv("CHURNGUARD_MODEL_KEY", raising=False)
    assert main(["model", "verify", str(root), "--spec-version", "9"]) == 2
    assert "expected v9" in capsys.readouterr().err
    assert main(["model", "verify", str(root)]) == 0
    assert "present, not checked" in capsys.readouterr().out
    assert main(["model", "verify", str(root), "--key-env", "UNSET_VAR_FOR_TEST"]) == 2
