"""A wheel carries the feature specs and the default model; a checkout uses its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from churnguard import shipped as shipped_module
from churnguard.shipped import shipped

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_reads_the_repositorys_own_features_and_models() -> None:
    assert not shipped_module.PACKAGED.exists()  # never built into src (.gitignore'd)
    assert shipped("features") == ROOT / "features"
    assert shipped("models", "default") == ROOT / "models" / "default"


def test_an_installed_package_reads_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "features").mkdir()
    monkeypatch.setattr(shipped_module, "PACKAGED", tmp_path)
    assert shipped("features") == tmp_path / "features"


@pytest.mark.timeout(300)
def test_the_wheel_carries_every_feature_spec_and_the_default_bundle(tmp_path: Path) -> None:
    """Byte for byte what the repository holds, under ``churnguard/_shipped`` (where
    :func:`shipped` looks), and no compiled module: the plain build stays plain."""
    env = {k: v for k, v in os.environ.items() if k != "CHURNGUARD_COMPILE"}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = tmp_path.glob("churnguard-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        carried = {
            name.removeprefix("churnguard/_shipped/"): zf.read(name)
            for name in zf.namelist()
            if name.startswith("churnguard/_shipped/")
        }
        assert not [n for n in zf.namelist() if n.endswith((".so", ".pyd"))]
    expected = {
        str(p.relative_to(ROOT)): p.read_bytes()
        for tree in ("features", "models/default")
        for p in (ROOT / tree).rglob("*")
        if p.is_file()
    }
    assert "features/v1.toml" in expected and "models/default/manifest.json" in expected
    assert carried == expected
