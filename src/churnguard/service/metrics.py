"""Prometheus metrics and the health endpoints of the ``serve`` process.

One :class:`ServiceMetrics` per process, on its own registry (so tests and the demo can
start several services in one interpreter without colliding in the global registry). The
HTTP server answers ``/metrics`` (Prometheus text), ``/healthz`` (the process is alive and
its loop ticked recently) and ``/readyz`` (partitions are assigned and the consumer has
caught up with them at least once, and none is paused on a batch it cannot decode: a rolling
deploy moves on only then).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from churnguard.alerts.alert import Alert
from churnguard.pipeline import Pipeline

# poll -> processed, per batch; spans sub-millisecond batches to multi-second stalls
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LIVENESS_STALE_S = 120.0  # /healthz fails when the loop has not ticked for this long
# churnguard_pipeline_capped's cap label -> the Pipeline.stats counter behind it
CAP_STATS = {"evicted": "evicted", "evidence": "capped.evidence", "pending": "capped.pending"}


@dataclass
class ServeStats:
    """What one ``serve`` run did (across reconnects), in-process; the demo and tests read it."""

    records: Tally[str] = field(default_factory=Tally)  # by input topic
    alerts: int = 0
    suppressed: int = 0  # alerts already on the alerts topic (re-processing after a crash)
    read_back: int = 0  # ids of alerts published after a restored checkpoint, read back
    dead_letters: int = 0
    late: Tally[str] = field(default_factory=Tally)  # "source.outcome" -> events
    checkpoints: int = 0
    sessions: int = 0


class ServiceMetrics:
    """The service's counters and gauges, plus the state behind /healthz and /readyz."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "churnguard_records_consumed_total", "Records consumed", ["topic"], registry=r
        )
        self.rejected = Counter(
            "churnguard_records_rejected_total",
            "Records dead-lettered, by reason",
            ["reason"],
            registry=r,
        )
        self.late = Counter(
            "churnguard_late_events_total",
            "Events behind the watermark, by source and outcome (applied to a held entity,"
            " or dead-lettered as late)",
            ["source", "outcome"],
            registry=r,
        )
        self.alerts = Counter(
            "churnguard_alerts_total",
            "Alerts produced, by severity and namespace",
            ["severity", "namespace"],
            registry=r,
        )
        self.duplicates = Counter(
            "churnguard_alerts_suppressed_total",
            "Alerts not produced again because their id was already on the alerts topic",
            registry=r,
        )
        self.folded = Counter(
            "churnguard_alerts_folded_total",
            "Alerting windows folded into their entity's open incident instead of paging",
            registry=r,
        )
        self.profiles = Counter(
            "churnguard_profiles_scored_total",
            "Profiles scored, by the baseline level that scored them",
            ["baseline"],
            registry=r,
        )
        self.lag = Gauge(
            "churnguard_consumer_lag",
            "High watermark minus the next offset to process",
            ["topic", "partition"],
            registry=r,
        )
        self.latency = Histogram(
            "churnguard_processing_latency_seconds",
            "From poll returning a batch to the batch being processed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.entities = Gauge(
            "churnguard_entities_tracked", "Entities with open state, by shard", ["shard"],
            registry=r,
        )  # fmt: skip
        self.capped = Gauge(
            "churnguard_pipeline_capped",
            "Records and entities a memory cap acted on, by shard and cap (evicted:"
            " profiled early past max_entities; evidence: windows cut at"
            " max_events_per_entity; pending: dead-lettered past max_pending_records)",
            ["shard", "cap"],
            registry=r,
        )
        self.floods = Counter(
            "churnguard_telemetry_floods_total",
            "Telemetry-flood alerts raised, by flooding namespace (* = the entity cap)",
            ["namespace"],
            registry=r,
        )
        self.checkpoints = Counter(
            "churnguard_checkpoints_total", "Shard checkpoints written", registry=r
        )
        self.checkpoint_seconds = Histogram(
            "churnguard_checkpoint_seconds",
            "Flush + snapshot + commit of all shards",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "churnguard_reconnects_total", "Kafka sessions torn down and rebuilt", registry=r
        )
        self.broker_connected = Gauge(
            "churnguard_kafka_connected",
            "1 while the broker answers the consumer (a fetch, heartbeat or any response"
            " within the last one to two heartbeat intervals), 0 while it does not",
            registry=r,
        )
        self.broker_outages = Counter(
            "churnguard_kafka_outages_total", "Times the broker stopped answering", registry=r
        )
        self.broker_down_seconds = Counter(
            "churnguard_kafka_down_seconds_total",
            "Seconds the broker did not answer, counted when it answers again",
            registry=r,
        )
        self.record_errors = Counter(
            "churnguard_record_errors_total",
            "Records that raised inside the pipeline (dead-lettered as pipeline_error)",
            ["error"],
            registry=r,
        )
        self.assigned = Gauge(
            "churnguard_assigned_partitions", "Input partitions assigned", registry=r
        )
        self.unrouted = Gauge(
            "churnguard_unrouted_input_partitions",
            "Partitions of input topics with more than one, read without kafka.repartition"
            " (correct only if every producer keys every record by namespace)",
            ["topic"],
            registry=r,
        )
        self.config_refused = Counter(
            "churnguard_config_reload_refused_total",
            "Changed config files refused at hot reload (the previous config keeps running)",
            registry=r,
        )
        self.techniques = Counter(
            "churnguard_alert_techniques_total",
            "ATT&CK techniques named by produced alerts, by namespace",
            ["namespace", "technique"],
            registry=r,
        )
        self.model = Gauge(
            "churnguard_model_info", "The model version each shard scores with", ["version"],
            registry=r,
        )  # fmt: skip
        self.compiled = Gauge(
            "churnguard_compiled_modules",
            "churnguard modules this process runs compiled (the optional Cython build; 0: pure"
            " Python)",
            registry=r,
        )
        self.model_refused = Counter(
            "churnguard_model_refused_total",
            "Model bundles that failed verification or loading (the service kept its model)",
            registry=r,
        )
        self.undecodable = Counter(
            "churnguard_undecodable_batches_total",
            "Batches the Kafka client could not decode (missing codec, corrupt); the partition"
            " is paused",
            ["topic", "partition"],
            registry=r,
        )
        self._lock = threading.Lock()
        self._last_tick = time.monotonic()
        self._assigned = False
        self._caught_up_once = False
        self._set_aside: frozenset[tuple[str, int]] = frozenset()

    # ---- what the pipelines did ----------------------------------------------------------
    def count_alert(self, alert: Alert) -> None:
        """One produced alert: by severity and namespace, and each technique it names."""
        namespace = alert.entity.namespace or "-"
        self.alerts.labels(str(alert.severity), namespace).inc()
        for technique in alert.techniques:
            self.techniques.labels(namespace, technique).inc()

    def observe_shards(self, pipelines: Mapping[int, Pipeline]) -> None:
        """Entities and model version of every shard this process owns."""
        versions: set[str] = set()
        for number, pipeline in pipelines.items():
            self.entities.labels(str(number)).set(len(pipeline.table.states))
            version = getattr(pipeline.scorer, "model_version", None)  # a stand-in has none
            if version:
                versions.add(version)
        self.model.clear()
        for version in versions:
            self.model.labels(version).set(1)

    # ---- health state -----------------------------------------------------------------------
    def tick(self) -> None:
        """The loop is alive (called once per poll)."""
        self._last_tick = time.monotonic()

    def set_assignment(self, count: int) -> None:
        with self._lock:
            self._assigned = count > 0
            self.assigned.set(count)

    def set_capped(self, shard: int, stats: Mapping[str, int]) -> None:
        """Export a shard pipeline's cap counters (cumulative; restored with its state)."""
        for cap, stat in CAP_STATS.items():
            self.capped.labels(str(shard), cap).set(stats.get(stat, 0))

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Lag of every assigned partition; the first all-zero reading makes us ready."""
        for (topic, partition), value in lag.items():
            self.lag.labels(topic, str(partition)).set(value)
        if lag and all(v <= 0 for v in lag.values()):
            with self._lock:
                self._caught_up_once = True

    def set_aside(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions paused on an undecodable batch: the replica is not ready while any is."""
        with self._lock:
            self._set_aside = frozenset(partitions)

    def forget_partitions(self, partitions: list[tuple[str, int]]) -> None:
        """Drop the lag series of partitions this process no longer owns."""
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                self.lag.remove(topic, str(partition))

    @property
    def live(self) -> bool:
        return time.monotonic() - self._last_tick < LIVENESS_STALE_S

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._assigned and self._caught_up_once and not self._set_aside

    # ---- HTTP -------------------------------------------------------------------------------
    def serve_http(self, host: str, port: int) -> MetricsServer:
        """Start the /metrics, /healthz, /readyz server in a daemon thread."""
        return MetricsServer(self, host, port)


class MetricsServer:
    """The HTTP side of :class:`ServiceMetrics`; ``close()`` stops it."""

    def __init__(self, metrics: ServiceMetrics, host: str, port: int) -> None:
        handler = _handler_for(metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="churnguard-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(metrics: ServiceMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = metrics.live
                self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif path == "/readyz":
                ok = metrics.ready
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the structured log

    return Handler


class RouteMetrics:
    """The route stage's counters, on the service's registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.routed = Counter(
            "churnguard_routed_records_total", "Records routed to the repartition topic",
            ["topic"], registry=r,
        )  # fmt: skip
        self.fallback = Counter(
            "churnguard_route_fallback_total",
            "Records routed under the fallback scope after waiting for a binding, by cap",
            ["cap"],
            registry=r,
        )
        self.bindings = Counter(
            "churnguard_route_bindings_total", "Bindings learned and shared", registry=r
        )
        self.copies = Counter(
            "churnguard_routed_copies_total",
            "Routed records a shard had already processed (routed again after a router"
            " restart or rebalance) and dropped",
            registry=r,
        )
        self.waiting = Gauge(
            "churnguard_route_waiting", "Records read but not yet routed", registry=r
        )
