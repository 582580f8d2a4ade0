"""Hot reload for the running service: a new model bundle or a changed config file.

Polled from the consumer loop every ``model.reload_interval_s``. A bundle is verified
before anything in it is deserialised (``store.BundleWatcher``); a refused one is logged
and the service keeps scoring with what it has. A changed config file is validated by value
exactly as at start (``config.load_settings``); one that is refused (it no longer parses, or
a key holds a value it may not, such as ``detector = "oiff"``) is not applied: the service
keeps the previous config, logs the one-line refusal and counts it in
``churnguard_config_reload_refused_total``. Only the scoring side is swapped: thresholds,
per-namespace overrides and baselines; Kafka and pipeline settings need a restart.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from churnguard.config import Settings, load_settings
from churnguard.errors import ConfigError
from churnguard.service.metrics import ServiceMetrics
from churnguard.store import Bundle, BundleWatcher, key_from_env
from churnguard.wiring import bundle_dir

log = logging.getLogger(__name__)


@dataclass
class Changes:
    bundle: Bundle | None = None
    settings: Settings | None = None


class Reloader:
    """Watches the bundle directory and the config file; reports what changed."""

    def __init__(
        self,
        settings: Settings,
        config_path: str | Path | None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.config_path = Path(config_path) if config_path else None
        self._config_digest = self._digest()
        directory = bundle_dir(settings, None)
        self.bundles = (
            BundleWatcher(directory, settings.pipeline.spec_version, key_from_env(settings))
            if directory is not None
            else None
        )
        if self.bundles is not None:
            self.bundles.poll()  # the bundle the service started with is not news
        self._next = 0.0
        self._last_refusal: str | None = None

    def _digest(self) -> str | None:
        if self.config_path is None:
            return None
        try:
            return hashlib.sha256(self.config_path.read_bytes()).hexdigest()
        except OSError:
            return None

    def poll(self, now: float | None = None) -> Changes:
        """What changed since the last poll (rate-limited to the configured interval)."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return Changes()
        self._next = now + self.settings.model.reload_interval_s
        changes = Changes()
        if self.bundles is not None:
            changes.bundle = self.bundles.poll()
            refusal = self.bundles.last_error
            if changes.bundle is not None:
                log.info(
                    "model bundle reloaded",
                    extra={"bundle_version": changes.bundle.manifest.bundle_version},
                )
            elif refusal and refusal != self._last_refusal:
                if self.metrics is not None:
                    self.metrics.model_refused.inc()
                log.error("model bundle refused; keeping the current model",
                          extra={"reason": refusal})  # fmt: skip
            self._last_refusal = refusal
        digest = self._digest()
        if digest is not None and digest != self._config_digest:
            self._config_digest = digest
            try:
                changes.settings = load_settings(self.config_path)
            except ConfigError as exc:
                log.error("config reload refused; keeping the current one: %s", exc,
                          extra={"reason": str(exc)})  # fmt: skip
                if self.metrics is not None:
                    self.metrics.config_refused.inc()
            else:
                # connection, output and pipeline settings (the feature spec among them)
                # need a restart: shards assigned later are built exactly like the running ones
                changes.settings.kafka = self.settings.kafka
                changes.settings.alerts = self.settings.alerts
                changes.settings.pipeline = self.settings.pipeline
                self.settings = changes.settings
                log.info("config reloaded", extra={"path": str(self.config_path)})
        return changes
