"""Hot reload: a new verified bundle and a changed config reach the running scorers."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from churnguard.config import Settings, load_settings
from churnguard.pipeline import Pipeline
from churnguard.profiling.spec import load_spec
from churnguard.scoring.detectors import make_detector
from churnguard.scoring.scorer import Scorer
from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.reload import Reloader
from churnguard.store import save_bundle


def _bundle(path: Path, version: str) -> None:
    spec = load_spec()
    det = make_detector("oif", len(spec.names), seed=1)
    det.learn_many(np.zeros((64, len(spec.names))))
    save_bundle(path, {"cluster:pod": det}, spec_version=spec.version, bundle_version=version)


def _service(settings: Settings, reloader: Reloader) -> Service:
    """A service with one shard, not connected: apply() is what the consumer loop calls."""
    from churnguard.service.kafka import Shard

    service = Service(settings, reloader=reloader)
    spec = load_spec()
    pipe = Pipeline(settings, scorer=Scorer(settings, spec), spec=spec)
    service.shards[0] = Shard(key="g/0", number=0, pipeline=pipe, offsets={"t": 0})
    return service


def _running(tmp_path: Path) -> tuple[Path, Path, Reloader, Service]:
    """A bundle v1, a config pointing at it, and a service started from both."""
    bundle = tmp_path / "bundle"
    _bundle(bundle, "v1")
    config = tmp_path / "churnguard.toml"
    config.write_text(
        f'[model]\nbundle_dir = "{bundle}"\nreload_interval_s = 0\n[alerts]\nformat = "ocsf"\n'
    )
    settings = load_settings(config)
    reloader = Reloader(settings, config, metrics=ServiceMetrics())
    return bundle, config, reloader, _service(settings, reloader)


def _model_metrics(reloader: Reloader, service: Service) -> tuple[set[str], float]:
    """Model versions the service reports in use, and bundles refused so far."""
    metrics = reloader.metrics
    assert metrics is not None
    metrics.observe_shards({n: s.pipeline for n, s in service.shards.items()})
    versions = {
        s.labels["version"]
        for family in metrics.registry.collect()
        if family.name == "churnguard_model_info"
        for s in family.samples
        if s.value == 1
    }
    return versions, metrics.registry.get_sample_value("churnguard_model_refused_total") or 0.0


def test_new_bundle_and_config_are_applied_to_running_shards(tmp_path: Path) -> None:
    bundle, config, reloader, service = _running(tmp_path)
    scorer = service.shards[0].pipeline.scorer
    assert reloader.poll(now=1.0).bundle is None  # the start-up bundle is not news

    shutil.rmtree(bundle)
    _bundle(bundle, "v2")
    config.write_text(
        f'[model]\nbundle_dir = "{bundle}"\nreload_interval_s = 0\n'
        '[namespaces."payments-*"]\nthreshold = 0.97\n'
    )
    service.apply(reloader.poll(now=2.0))
    assert scorer.model_version.startswith("v2")
    assert _model_metrics(reloader, service) == ({scorer.model_version}, 0.0)
    assert service.settings.alerts.format == "ocsf"  # the output format needs a restart
    assert scorer.thresholds.threshold("payments-api") == 0.97
    assert service.settings.namespace_override("payments-api").threshold == 0.97


def test_tampered_bundle_and_broken_config_are_refused_and_logged(tmp_path: Path, caplog) -> None:
    bundle, config, reloader, service = _running(tmp_path)
    scorer = service.shards[0].pipeline.scorer
    before = scorer.model_version

    shutil.rmtree(bundle)
    _bundle(bundle, "v2")
    model = next(p for p in bundle.iterdir() if p.name.startswith("model-"))
    data = model.read_bytes()
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # flip the last byte
    config.write_text("[thresholds\nbroken = ")
    with caplog.at_level(logging.ERROR, logger="churnguard.service.reload"):
        service.apply(reloader.poll(now=2.0))
    assert scorer.model_version == before
    assert _model_metrics(reloader, service) == ({before}, 1.0)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "model bundle refused" in messages and "config reload refused" in messages
