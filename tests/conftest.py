"""Fixtures the test files share instead of rebuilding: the repo root, the feature spec, the
real telemetry samples (read in place from the shared data set beside the checkout) and a
small model bundle of the spec's width."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from churnguard.profiling.spec import FeatureSpec, load_spec
from shared_samples import REAL_DATA, ROOT


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    """The shipped feature spec (``features/v1.toml``); read-only, so shared by the session."""
    return load_spec()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/real`` (ORIGIN.md there says where each sample comes from)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"the shared real telemetry samples are not checked out at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def write_bundle(spec: FeatureSpec) -> Callable[..., Path]:
    """``write_bundle(path, version)``: a verified-format bundle with one small oif baseline
    learned on zeros, as ``churnguard model build`` would write it."""
    from churnguard.scoring.detectors import make_detector
    from churnguard.store import save_bundle

    def write(path: Path, version: str = "v1", baseline: str = "cluster:pod", **kw) -> Path:
        det = make_detector("oif", len(spec.names), seed=1, **kw)
        det.learn_many(np.zeros((64, len(spec.names))))
        save_bundle(path, {baseline: det}, spec_version=spec.version, bundle_version=version)
        return path

    return write
