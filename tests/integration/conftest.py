"""A real broker for the whole session: KAFKA_BOOTSTRAP_SERVERS if set, else embedded Tansu.

Every test gets its own topic names (and group id), so tests never see each other's data
and the same suite runs unchanged against Apache Kafka or Redpanda.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pytest

from churnguard.config import Settings
from churnguard.pipeline import Pipeline
from churnguard.service.broker import bootstrap_servers, create_topics
from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.reload import Reloader

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
        k.repartition_topic = f"{prefix}-repartition"  # created by the service (route.py)
        k.bindings_topic = f"{prefix}-bindings"
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


@pytest.fixture
def librdkafka(bootstrap: str) -> Callable[..., int]:
    """Produce like Fluent Bit, Vector and confluent-kafka do: with librdkafka.

    ``librdkafka(topic, items, compression="lz4", transactions=[n, ...], abort={i, ...})``
    sends ``(key, value)`` pairs, in transactions of the given sizes when asked (those whose
    index is in ``abort`` are aborted after their records reached the broker). Returns how
    many records were sent.
    """
    confluent = pytest.importorskip("confluent_kafka", reason="confluent-kafka (dev extra)")

    def produce(
        topic: str,
        items: Iterable[tuple[bytes | None, bytes]],
        *,
        compression: str = "none",
        transactions: list[int] | None = None,
        abort: set[int] = frozenset(),
    ) -> int:
        config = {"bootstrap.servers": bootstrap, "compression.type": compression,
                  "linger.ms": 20, "enable.idempotence": True}  # fmt: skip
        if transactions is not None:
            config["transactional.id"] = f"churnguard-test-{uuid.uuid4().hex[:8]}"
        producer = confluent.Producer(config)
        pending = list(items)
        if transactions is None:
            for key, value in pending:
                producer.produce(topic, key=key, value=value)
            assert producer.flush(30) == 0, "librdkafka did not deliver every record"
            return len(pending)
        producer.init_transactions(30)
        sent = 0
        for i, size in enumerate(transactions):
            producer.begin_transaction()
            for key, value in pending[sent : sent + size]:
                producer.produce(topic, key=key, value=value)
            producer.flush(30)  # on the broker before the marker, aborted ones too
            if i in abort:
                producer.abort_transaction(30)
            else:
                producer.commit_transaction(30)
            sent += size
        return sent

    return produce


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

    def start(
        settings: Settings,
        factory: Callable[[Settings], Pipeline],
        reloader: Callable[[Settings, ServiceMetrics], Reloader] | None = None,
    ) -> Running:
        """``reloader(settings, metrics)`` builds the service's hot-reload watcher, if any."""
        stop = threading.Event()
        built: list[Pipeline] = []

        def tracking_factory(s: Settings) -> Pipeline:
            built.append(factory(s))
            return built[-1]

        metrics = ServiceMetrics()
        service = Service(
            settings,
            stop_event=stop,
            pipeline_factory=tracking_factory,
            metrics=metrics,
            reloader=reloader(settings, metrics) if reloader else None,
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
