"""Hot reload: a new verified bundle and a changed config reach the running scorers."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from churnguard.config import load_settings
from churnguard.pipeline import Pipeline
from churnguard.profiling.spec import FeatureSpec
from churnguard.scoring.scorer import Scorer
from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.reload import Reloader
from churnguard.service.shard import Shard


class Running:
    """A bundle v1, a config pointing at it, and a one-shard service started from both (not
    connected: ``apply()`` is what the consumer loop calls)."""

    def __init__(self, tmp_path: Path, spec: FeatureSpec, write_bundle: Callable[..., Path]):
        self.write_bundle = write_bundle
        self.bundle = write_bundle(tmp_path / "bundle", "v1")
        self.config = tmp_path / "churnguard.toml"
        self.good = (
            f'[model]\nbundle_dir = "{self.bundle}"\nreload_interval_s = 0\n'
            '[alerts]\nformat = "ocsf"\n'
        )
        self.config.write_text(self.good)
        self.settings = load_settings(self.config)
        self.metrics = ServiceMetrics()
        self.reloader = Reloader(self.settings, self.config, self.metrics)
        self.service = Service(self.settings, reloader=self.reloader)
        pipe = Pipeline(self.settings, scorer=Scorer(self.settings, spec), spec=spec)
        self.service.shards[0] = Shard(key="g/0", number=0, pipeline=pipe, offsets={"t": 0})
        self.scorer = pipe.scorer

    def replace_bundle(self, version: str) -> None:
        shutil.rmtree(self.bundle)
        self.write_bundle(self.bundle, version)

    def model_metrics(self) -> tuple[set[str], float]:
        """Model versions the service reports in use, and bundles refused so far."""
        self.metrics.observe_shards({n: s.pipeline for n, s in self.service.shards.items()})
        versions = {
            sample.labels["version"]
            for family in self.metrics.registry.collect()
            if family.name == "churnguard_model_info"
            for sample in family.samples
            if sample.value == 1
        }
        refused = self.metrics.registry.get_sample_value("churnguard_model_refused_total")
        return versions, refused or 0.0


@pytest.fixture
def running(tmp_path: Path, spec: FeatureSpec, write_bundle: Callable[..., Path]) -> Running:
    return Running(tmp_path, spec, write_bundle)


def test_new_bundle_and_config_are_applied_to_running_shards(running: Running) -> None:
    r = running
    assert r.reloader.poll(now=1.0).bundle is None  # the start-up bundle is not news

    r.replace_bundle("v2")
    r.config.write_text(
        r.good.replace("ocsf", "falco") + '[namespaces."payments-*"]\nthreshold = 0.97\n'
        '[pipeline]\nspec_version = "9"\n'  # pipeline settings need a restart: kept
    )
    r.service.apply(r.reloader.poll(now=2.0))
    assert r.scorer.model_version.startswith("v2")
    assert r.model_metrics() == ({r.scorer.model_version}, 0.0)
    assert r.service.settings.alerts.format == "ocsf"  # the output format needs a restart
    assert r.scorer.thresholds.threshold("payments-api") == 0.97
    assert r.service.settings.namespace_override("payments-api").threshold == 0.97
    assert r.service.settings.pipeline.spec_version == "1"


def test_tampered_bundle_and_broken_config_are_refused_and_logged(running: Running, caplog) -> None:
    r = running
    before = r.scorer.model_version

    r.replace_bundle("v2")
    model = next(p for p in r.bundle.iterdir() if p.name.startswith("model-"))
    data = model.read_bytes()
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # flip the last byte
    r.config.write_text("[thresholds\nbroken = ")
    with caplog.at_level(logging.ERROR, logger="churnguard.service.reload"):
        r.service.apply(r.reloader.poll(now=2.0))
    assert r.scorer.model_version == before
    assert r.model_metrics() == ({before}, 1.0)
    messages = " ".join(rec.getMessage() for rec in caplog.records)
    assert "model bundle refused" in messages and "config reload refused" in messages


def test_a_config_refused_by_value_keeps_the_previous_one_and_is_counted(
    running: Running, caplog
) -> None:
    r = running
    refused_total = "churnguard_config_reload_refused_total"
    r.config.write_text(
        r.good + '[scoring]\ndetector = "oiff"\n[namespaces."ci-*"]\nthreshold = 0.5\n'
    )
    with caplog.at_level(logging.ERROR, logger="churnguard.service.reload"):
        r.service.apply(r.reloader.poll(now=2.0))
    refused = [m for m in (rec.getMessage() for rec in caplog.records) if "refused" in m]
    assert len(refused) == 1 and "\n" not in refused[0]
    assert refused[0].startswith("config reload refused; keeping the current one: config ")
    assert refused[0].endswith(
        'scoring.detector = "oiff" is not allowed; allowed: "hst", "iforest", "oif"'
    )
    assert r.metrics.registry.get_sample_value(refused_total) == 1.0
    assert r.service.settings is r.settings and r.scorer.settings is r.settings
    assert r.scorer.hierarchy.settings.detector == "oif"
    assert r.scorer.thresholds.threshold("ci-build") != 0.5  # nothing of the refused file

    r.config.write_text(r.good + '[namespaces."ci-*"]\nthreshold = 0.5\n')  # fixed: applied
    r.service.apply(r.reloader.poll(now=3.0))
    assert r.scorer.thresholds.threshold("ci-build") == 0.5
    assert r.metrics.registry.get_sample_value(refused_total) == 1.0
