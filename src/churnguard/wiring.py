"""Build what a driver runs: settings + verified model bundle + scorer → a Pipeline.

Shared by ``replay``, ``serve`` and ``evaluate`` so every driver scores with the same
objects. The bundle is verified (sha256 of every file, HMAC when a key is configured)
before anything in it is deserialised.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from churnguard.config import Settings
from churnguard.pipeline import Pipeline
from churnguard.profiling.spec import FeatureSpec, load_spec
from churnguard.shipped import shipped

log = logging.getLogger(__name__)

SHIPPED_BUNDLE = shipped("models", "default")  # the wheel's copy, or the repository's


def bundle_dir(settings: Settings, model_dir: str | None) -> Path | None:
    """The bundle to start from: --model, else the config's, else the shipped one if present."""
    if model_dir:
        return Path(model_dir)
    if settings.model.bundle_dir:
        return Path(settings.model.bundle_dir)
    if (SHIPPED_BUNDLE / "manifest.json").exists():
        return SHIPPED_BUNDLE
    return None


def load_bundle_for(settings: Settings, spec: FeatureSpec, directory: Path | None):
    """Verify and load a bundle (None when there is none to load)."""
    if directory is None:
        return None
    from churnguard.store import key_from_env, load_bundle

    return load_bundle(directory, spec_version=spec.version, key=key_from_env(settings))


def make_scorer(
    settings: Settings, spec: FeatureSpec, *, model_dir: str | None = None, use_bundle: bool = True
):
    """The configured scorer, seeded from the bundle when there is one."""
    from churnguard.scoring.scorer import Scorer

    bundle = (
        load_bundle_for(settings, spec, bundle_dir(settings, model_dir)) if use_bundle else None
    )
    if bundle is not None:
        log.info("scoring with model bundle %s", bundle.manifest.bundle_version)
    return Scorer(settings, spec, bundle)


def make_pipeline(
    settings: Settings, *, model_dir: str | None = None, use_bundle: bool = True
) -> Pipeline:
    spec = load_spec(version=settings.pipeline.spec_version)
    scorer = make_scorer(settings, spec, model_dir=model_dir, use_bundle=use_bundle)
    return Pipeline(settings, scorer=scorer, spec=spec)


@contextmanager
def startup_frozen() -> Iterator[None]:
    """Keep what exists before a driver's run (imported modules, the model bundle, the
    pipeline, the compiled kernels) out of the cyclic collector's passes while it runs.

    Those ~165k objects never become garbage, yet a full collection walks them all: one
    costs ~0.08 s, most of the collector's time in a 6 h day's replay (``gc.callbacks``),
    and in ``serve`` a pause that records arriving meanwhile wait out. Unfrozen after, so
    a process that runs again (tests, notebooks) still collects their cycles.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
