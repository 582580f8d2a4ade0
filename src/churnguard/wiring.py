"""Build what a driver runs: settings + verified model bundle + scorer → a Pipeline.

Shared by ``replay``, ``serve`` and ``evaluate`` so every driver scores with the same
objects. The bundle is verified (sha256 of every file, HMAC when a key is configured)
before anything in it is deserialised.
"""

from __future__ import annotations

import logging
from pathlib import Path

from churnguard.config import Settings
from churnguard.pipeline import Pipeline
from churnguard.profiling.spec import FeatureSpec, load_spec

log = logging.getLogger(__name__)

SHIPPED_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"


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
