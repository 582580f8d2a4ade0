"""Hot reload against a real broker: a config refused by value leaves serve alerting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import alert_ids, expected_alert_ids
from standin import standin_pipeline
from telemetry import T0, pod_stream

from churnguard.config import Settings
from churnguard.service.kafka import produce_records
from churnguard.service.reload import Reloader

pytestmark = pytest.mark.integration
REFUSED = "churnguard_config_reload_refused_total"


def _produce(settings: Settings, pods: int, start: float) -> None:
    topic = next(iter(settings.kafka.input_topics))
    stream = pod_stream(pods, namespaces=3, start=start)
    produce_records(settings.kafka, topic, ((ns.encode(), r) for ns, r in stream))


def _wait_for_alerts(settings: Settings, timeout_s: float = 20.0) -> set[str]:
    """The alert ids on the topic once there are some (the producer flushes at checkpoints)."""
    deadline = time.monotonic() + timeout_s
    while not (ids := set(alert_ids(settings))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return ids


def test_a_refused_hot_reload_keeps_serve_alerting(
    make_settings, start_service, tmp_path: Path
) -> None:
    settings = make_settings(partitions=1)
    settings.model.reload_interval_s = 0.0  # check the config file on every loop
    config = tmp_path / "churnguard.toml"
    config.write_text("[model]\nreload_interval_s = 0\n")
    running = start_service(
        settings, standin_pipeline, reloader=lambda s, m: Reloader(s, config, m)
    )
    metrics = running.service.metrics
    _produce(settings, 40, T0)
    _produce(settings, 40, T0 + 86_400.0)  # a day later: closes the first day's windows
    running.wait_caught_up()
    before = _wait_for_alerts(settings)

    config.write_text('[model]\nreload_interval_s = 0\n[scoring]\ndetector = "oiff"\n')
    deadline = time.monotonic() + 20
    while metrics.registry.get_sample_value(REFUSED) != 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.registry.get_sample_value(REFUSED) == 1.0
    assert running.service.settings.scoring.detector == "oif"

    _produce(settings, 40, T0 + 2 * 86_400.0)  # closes the second day's windows
    running.wait_caught_up()
    assert running.thread.is_alive()
    running.close()

    served = alert_ids(settings)
    assert before and set(served) > before  # it alerted before the reload and after it
    assert set(served) == expected_alert_ids(settings, standin_pipeline)
    assert len(served) == len(set(served))
