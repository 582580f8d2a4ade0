"""A real broker for the whole session: KAFKA_BOOTSTRAP_SERVERS if set, else embedded Tansu.

Every test gets its own topic names (and group id), so tests never see each other's data
and the same suite runs unchanged against Apache Kafka or Redpanda.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from churnguard.config import Settings
from churnguard.pipeline import Pipeline
from churnguard.service.broker import bootstrap_servers, create_topics
from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics

pytestmark = pytest.mark.integration
INPUTS = ("audit", "runtime")


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    with bootstrap_servers() as servers:
        yield servers


@pytest.fixture
def make_settings(bootstrap: str) -> Callable[..., Settings]:
    """Settings on fresh topics: ``make_settings(partitions=2)``; topics are created."""
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def make(partitions: int = 1, **kafka: object) -> Settings:
        settings = Settings()
        k = settings.kafka
        k.bootstrap_servers = bootstrap
        k.group_id = f"{prefix}-group"
        k.input_topics = {f"{prefix}-{name}": "auto" for name in INPUTS}
        k.alerts_topic = f"{prefix}-alerts"
        k.dead_letter_topic = f"{prefix}-dlq"
        k.checkpoint_topic = f"{prefix}-checkpoints"
        # a group join completes only after the rebalance timeout on tansu: keep it short
        k.max_poll_interval_ms = 3000
        k.session_timeout_ms = 6000  # Kafka's group.min.session.timeout.ms
        k.checkpoint_interval_s = 1.0
        for name, value in kafka.items():
            setattr(k, name, value)
        create_topics(bootstrap, [*k.input_topics, k.alerts_topic], partitions)
        create_topics(bootstrap, [k.dead_letter_topic, k.checkpoint_topic], 1,
                      compacted=[k.checkpoint_topic])  # fmt: skip
        return settings

    return make


@dataclass
class Running:
    """A ``Service`` running in a thread, with the pipelines its factory built."""

    service: Service
    thread: threading.Thread
    stop: threading.Event
    pipelines: list[Pipeline] = field(default_factory=list)

    def wait_caught_up(self, timeout_s: float = 30.0, idle_s: float = 0.5) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        since: float | None = None
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise AssertionError("service thread died")
            if self.service.caught_up:
                since = since or time.monotonic()
                if time.monotonic() - since >= idle_s:
                    return
            else:
                since = None
            time.sleep(0.05)
        raise AssertionError(f"not caught up in {timeout_s}s: lag {self.service.lag}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "service did not stop"


@pytest.fixture
def start_service() -> Iterator[Callable[..., Running]]:
    """Start ``Service(settings)`` in a thread; stopped (gracefully) at teardown."""
    running: list[Running] = []

    def start(settings: Settings, factory: Callable[[Settings], Pipeline]) -> Running:
        stop = threading.Event()
        built: list[Pipeline] = []

        def tracking_factory(s: Settings) -> Pipeline:
            built.append(factory(s))
            return built[-1]

        service = Service(
            settings, stop_event=stop, pipeline_factory=tracking_factory, metrics=ServiceMetrics()
        )
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        r = Running(service, thread, stop, built)
        running.append(r)
        return r

    yield start
    for r in running:
        if r.thread.is_alive():
            r.close()
