"""Faults against the real broker (issue 15, item 3): nothing lost, no alert id twice.

The checkpoint topic and the alerts topic are made unavailable for a while through the
injectable client factory: the producer refuses sends to them exactly as kafka-python does
for a topic whose metadata cannot be fetched (a deleted topic, a partition without a
leader), with ``KafkaTimeoutError``. The broker outage runs a Tansu of its own behind a
TCP relay the test cuts and restores: Tansu keeps topics in memory only, so a stopped
Tansu would come back empty; cutting the relay is the same outage as seen by the client
(every connection drops, reconnects are refused) with the log kept.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import threading
import time
from collections import Counter

import orjson
import pytest
from helpers import alert_ids, expected_alert_ids
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from standin import slowed, standin_pipeline
from telemetry import T0, audit, pod_stream
from test_serve import _produce_pods, _wait

from churnguard.service.broker import EmbeddedBroker, _resolve_binary, create_topics, free_port
from churnguard.service.clients import KafkaClients, client_config
from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.producing import produce_records

pytestmark = pytest.mark.integration


class FaultyClients(KafkaClients):
    """Production clients whose producer refuses the topics in ``down`` while they are down."""

    def __init__(self, kafka) -> None:
        super().__init__(kafka)
        self.down: set[str] = set()
        self.refused: Counter[str] = Counter()

    def producer(self) -> KafkaProducer:
        clients = self

        class Producer(KafkaProducer):
            def send(self, topic, *args, **kwargs):
                if topic in clients.down:
                    clients.refused[topic] += 1
                    raise KafkaTimeoutError(f"injected: topic {topic} unavailable")
                return super().send(topic, *args, **kwargs)

        return Producer(
            **client_config(self.kafka), acks="all", linger_ms=5, retries=5,
            max_request_size=2 * 1024 * 1024,
        )  # fmt: skip


def _produce(settings, topic: str, stream: list[tuple[str, bytes]]) -> list[bytes]:
    produce_records(settings.kafka, topic, ((ns.encode(), r) for ns, r in stream))
    return [r for _, r in stream]


def _run(service: Service) -> threading.Thread:
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    return thread


def _records_in_state(service: Service) -> int:
    return sum(s.pipeline.stats["records"] for s in service.shards.values())


def _second_part(before: int, after: int, namespaces: int) -> list[tuple[str, bytes]]:
    """Pods ``before..before+after``, starting after the first part's last deletion (no
    event is late), and a sentinel per namespace that closes every window."""
    rest = pod_stream(after, namespaces, start=T0 + 600.0, first=before)
    end = T0 + 600.0 + (before + after) * 2.0 + 86_400.0
    rest += [(f"ns-{i}", orjson.dumps(audit("create", f"ns-{i}", "sentinel", end, "x")))
             for i in range(namespaces)]  # fmt: skip
    return rest


def _outage(settings, caplog, topic_of) -> None:
    """Take one topic down mid-stream for a few reconnects; then check nothing was lost.

    The stream comes in two parts and the topic goes down between them, so the service has
    alerts to publish and state to checkpoint while it is down, however fast it runs.
    """
    settings.kafka.reconnect_backoff_max_s = 1.0
    before, after, namespaces = 1200, 1300, 4
    audit_topic = next(iter(settings.kafka.input_topics))
    records = _produce(settings, audit_topic, pod_stream(before, namespaces))
    clients = FaultyClients(settings.kafka)
    metrics = ServiceMetrics()
    stop = threading.Event()
    service = Service(
        settings, stop_event=stop, pipeline_factory=slowed(0.001), metrics=metrics, clients=clients
    )
    caplog.set_level(logging.WARNING, logger="churnguard.service.kafka")
    thread = _run(service)
    try:
        _wait(lambda: bool(alert_ids(settings)) and service.stats.checkpoints > 1, 60, "alerts")
        clients.down.add(topic_of(settings))
        records += _produce(settings, audit_topic, _second_part(before, after, namespaces))
        _wait(lambda: metrics.reconnects._value.get() >= 2, 60, "two failed sessions")
        clients.down.clear()
        _wait(lambda: service.caught_up and _records_in_state(service) == len(records), 60, "end")
    finally:
        stop.set()
        thread.join(timeout=30)
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == []  # no alert id twice
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)  # none lost
    assert clients.refused[topic_of(settings)] > 0
    failed = [r for r in caplog.records if r.getMessage() == "kafka session failed; reconnecting"]
    assert failed and "injected" in failed[0].error
    assert service.stats.sessions >= 3


def test_checkpoint_topic_unavailable_for_a_while(make_settings, caplog):
    settings = make_settings(partitions=2, checkpoint_interval_s=0.3, max_poll_records=100)
    _outage(settings, caplog, lambda s: s.kafka.checkpoint_topic)


def test_alerts_topic_unavailable_for_a_while(make_settings, caplog):
    settings = make_settings(partitions=2, checkpoint_interval_s=0.3, max_poll_records=100)
    _outage(settings, caplog, lambda s: s.kafka.alerts_topic)


class Relay:
    """A TCP relay in front of the broker that the test can cut (connections reset)."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.up = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.1)
        self._closed = False
        self.up.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # the broker is "down": refuse
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()  # the broker is not listening (yet): the client retries
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()


@pytest.fixture
def relayed_broker():
    """A Tansu of this test's own, advertised at a relay's address: ``(bootstrap, relay)``."""
    broker_port, relay_port = free_port(), free_port()
    listen = f"tcp://127.0.0.1:{broker_port}"
    proc = subprocess.Popen(
        [_resolve_binary(), "broker", "--listener-url", listen,
         "--advertised-listener-url", f"tcp://127.0.0.1:{relay_port}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    relay = Relay(relay_port, broker_port)
    bootstrap = f"127.0.0.1:{relay_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                create_topics(bootstrap, [f"probe-{relay_port}"], 1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield bootstrap, relay
    finally:
        relay.close()
        proc.send_signal(2)  # SIGINT: tansu ignores SIGTERM
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _on_own_broker(make_settings, bootstrap: str):
    """Settings (fresh topic names) on a broker of the test's own, with the topics made."""
    settings = make_settings(partitions=2, checkpoint_interval_s=0.3, max_poll_records=100)
    k = settings.kafka
    k.bootstrap_servers, k.reconnect_backoff_max_s = bootstrap, 1.0
    create_topics(bootstrap, [*k.input_topics, k.alerts_topic], 2)
    create_topics(bootstrap, [k.dead_letter_topic, k.checkpoint_topic], 1,
                  compacted=[k.checkpoint_topic])  # fmt: skip
    return settings


def _done_and_heard(service: Service, metrics: ServiceMetrics, records: int) -> bool:
    """Every record in state, caught up, and the broker's answers seen again by the watch."""
    return (
        service.caught_up
        and _records_in_state(service) == records
        and metrics.broker_connected._value.get() == 1
    )


def _nothing_lost_and_the_outage_told(settings, metrics: ServiceMetrics, caplog) -> None:
    """No alert id twice, none lost; one log line when the broker went silent and one when
    it answered again (an 8 s outage: ``down_s`` estimated within ±1 s, plus a restart's
    start and rejoin); the gauge back at 1, each outage counted.

    On a loaded machine (the suite beside other work) the watch has once said so a second
    time right after the restore: a rejoin without an answer for two heartbeat intervals is
    an outage as the consumer sees it. So later outages are allowed, each told as a pair and
    counted; the first is the cut's."""
    ids = alert_ids(settings)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert set(ids) == expected_alert_ids(settings, standin_pipeline)
    said = [(r.getMessage(), r) for r in caplog.records if r.name == "churnguard.service.contact"]
    pairs = len(said) // 2
    told = ["kafka broker unreachable", "kafka broker reachable again"] * max(pairs, 1)
    assert [m for m, _ in said] == told
    assert 6.0 <= said[1][1].down_s < 60.0
    assert metrics.broker_outages._value.get() == pairs
    assert metrics.broker_connected._value.get() == 1
    down = sum(r.down_s for _, r in said[1::2])
    assert metrics.broker_down_seconds._value.get() == pytest.approx(down, abs=0.1 * pairs)


def test_broker_down_mid_stream_and_back(make_settings, relayed_broker, caplog):
    bootstrap, relay = relayed_broker
    settings = _on_own_broker(make_settings, bootstrap)
    records = _produce_pods(settings, 2500, namespaces=4)
    metrics, stop = ServiceMetrics(), threading.Event()
    service = Service(settings, stop_event=stop, pipeline_factory=slowed(0.001), metrics=metrics)
    caplog.set_level(logging.INFO)
    thread = _run(service)
    try:
        _wait(lambda: bool(alert_ids(settings)) and service.stats.checkpoints > 1, 60, "alerts")
        assert metrics.broker_connected._value.get() == 1
        relay.cut()
        # silent for the consumer's metrics window (2 heartbeats of 2 s): said to be gone
        _wait(lambda: metrics.broker_connected._value.get() == 0, 8, "the outage noticed")
        time.sleep(4.0)  # 8 s in all: longer than the group session timeout (6 s)
        relay.restore()
        # done, and the broker heard again: a service that read everything before the cut
        # is caught up at once, before its watch has seen an answer
        _wait(lambda: _done_and_heard(service, metrics, len(records)), 90, "end")
    finally:
        stop.set()
        thread.join(timeout=30)
    _nothing_lost_and_the_outage_told(settings, metrics, caplog)


class SerialS3:
    """moto's S3 API on a server that answers one request at a time.

    Tansu allocates offsets with conditional writes (``If-Match`` on a partition's
    watermark object); moto checks the condition and then writes, so under a threaded
    server two writes could both pass the check. Serving requests one by one makes each
    check-and-write atomic, as it is on S3.
    """

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", free_port(), app, threaded=False)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


@pytest.fixture
def persistent_broker():
    """A Tansu of this test's own whose storage is an S3 server (moto) in this process.

    Its topics, records, committed offsets and consumer groups live in the bucket, so
    the broker process can be stopped and started again on the same port with them.
    """
    pytest.importorskip("moto.server", reason="moto[server] (dev extra)")
    boto3 = pytest.importorskip("boto3", reason="boto3 (with moto)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per S3 request
    s3 = SerialS3()
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", **creds).create_bucket(
        Bucket="tansu"
    )
    env = {"AWS_ENDPOINT": s3.endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ALLOW_HTTP": "true"}  # fmt: skip
    broker = EmbeddedBroker(storage_engine="s3://tansu/", env=env)
    try:
        yield broker.start()
    finally:
        broker.stop()
        s3.close()


def test_broker_stopped_and_restarted_mid_stream(make_settings, persistent_broker, caplog):
    """The broker process itself goes away (SIGINT) and comes back with its storage."""
    broker = persistent_broker
    settings = _on_own_broker(make_settings, broker.bootstrap)
    before, after, namespaces = 1200, 1300, 4
    audit_topic = next(iter(settings.kafka.input_topics))
    records = _produce(settings, audit_topic, pod_stream(before, namespaces))
    metrics, stop = ServiceMetrics(), threading.Event()
    service = Service(settings, stop_event=stop, pipeline_factory=slowed(0.001), metrics=metrics)
    caplog.set_level(logging.INFO)
    thread = _run(service)
    try:
        # the first half processed (open windows held in state, alerts published and
        # acknowledged) and nothing in flight: docs/reliability.md has a stop with produce
        # requests in flight, where this broker loses records it acknowledged
        first = len(records)
        _wait(lambda: _records_in_state(service) == first and service.caught_up, 60, "half")
        time.sleep(1.0)  # past the last periodic checkpoint (0.3 s) and its flush
        published = len(alert_ids(settings))
        assert published > 0
        broker.restart(down_s=8.0)  # longer than the group session timeout (6 s)
        assert len(alert_ids(settings)) == published  # the records survived the restart
        records += _produce(settings, audit_topic, _second_part(before, after, namespaces))
        _wait(lambda: _done_and_heard(service, metrics, len(records)), 120, "end")
    finally:
        stop.set()
        thread.join(timeout=30)
    _nothing_lost_and_the_outage_told(settings, metrics, caplog)
