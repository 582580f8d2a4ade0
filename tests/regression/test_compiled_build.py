"""The optional compiled build (``CHURNGUARD_COMPILE=1``, setup.py) decides exactly what the
interpreted code decides: built the way a release or the Docker image builds it, its
compiled modules give the held-out day's recorded alert ids.

It builds into a temporary directory with the Cython of the dev extras (no download), then
replays in a fresh interpreter that imports churnguard from there, not from ``src``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alert_ids import DAYS, recorded

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = next(day for day in DAYS if day[0].startswith("heldout"))
REPLAY = """
import json, sys
from alert_ids import alert_ids
from churnguard import compiled_modules
from churnguard.profiling.spec import SPEC_DIR
from churnguard.wiring import SHIPPED_BUNDLE
ids = alert_ids({seed}, {hours})
where = sys.modules["churnguard"].__file__
print(json.dumps({{"ids": ids, "compiled": compiled_modules(), "file": where,
                  "specs": str(SPEC_DIR), "bundle": str(SHIPPED_BUNDLE)}}))
"""


@pytest.mark.timeout(1800)  # the build: ~4 min on 2 cores
def test_compiled_build_gives_the_recorded_alert_ids(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(ROOT)],
        env={**os.environ, "CHURNGUARD_COMPILE": "1"},
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    name, seed, hours = HELD_OUT
    env = {k: v for k, v in os.environ.items() if k != "CHURNGUARD_SPEC_DIR"}
    env |= {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests/regression")])}
    run = subprocess.run(
        [sys.executable, "-c", REPLAY.format(seed=seed, hours=hours)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert Path(out["file"]).is_relative_to(site)
    # the wheel carries the feature specs and the model it replays with: nothing to set
    assert Path(out["specs"]) == site / "churnguard/_shipped/features"
    assert Path(out["bundle"]) == site / "churnguard/_shipped/models/default"
    hot = {"churnguard.pipeline", "churnguard.profiling.features", "churnguard.scoring.scorer",
           "churnguard.ingest.cloudtrail", "churnguard.scoring.detectors.oif"}  # fmt: skip
    assert hot <= set(out["compiled"])
    assert out["ids"] == recorded(name)


def test_the_image_installs_the_compiled_wheel() -> None:
    """What the test above builds is what the image runs (there is no docker daemon here)."""
    lines = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copies = [words for words in lines if words[:1] == ["COPY"]]
    assert any("setup.py" in words for words in copies)
    # the builder stage has what the wheel carries; the image sets no path to find it
    assert ["COPY", "features", "./features"] in copies
    assert ["COPY", "models/default", "./models/default"] in copies
    assert "CHURNGUARD_SPEC_DIR" not in (ROOT / "Dockerfile").read_text()
    runs = [" ".join(words) for words in lines if words[:1] == ["RUN"]]
    assert any("CHURNGUARD_COMPILE=1 pip wheel" in run for run in runs)
    assert any("pip install --no-cache-dir /wheels/*.whl" in run for run in runs)
