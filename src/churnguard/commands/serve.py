"""Run the Kafka consumer service: input topics in, alerts and dead letters out.

Consumes the configured input topics in one consumer group (scale out by running more
replicas with the same group id), checkpoints per-shard state to the checkpoint topic,
serves /metrics, /healthz and /readyz, and stops gracefully on SIGTERM or SIGINT: it stops
polling, flushes, checkpoints, commits and closes.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from churnguard import logs
from churnguard.config import ALERT_FORMATS, load_settings
from churnguard.profiling.spec import load_spec
from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.reload import Reloader

log = logging.getLogger("churnguard.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="churnguard TOML config")
    parser.add_argument(
        "--bootstrap", help="bootstrap servers (overrides the config and KAFKA_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument("--group", help="consumer group id (overrides the config)")
    parser.add_argument("--metrics-port", type=int, help="0 disables the HTTP endpoints")
    parser.add_argument(
        "--alert-format",
        choices=ALERT_FORMATS,
        help="alerts topic format: json, ocsf (OCSF Detection Finding) or falco (Falco's JSON"
        " output); overrides the config's alerts.format",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)  # a refused config exits 2 before anything starts
    load_spec(version=settings.pipeline.spec_version)  # so does a refused feature spec, not
    # only once a partition is assigned and its pipeline built
    logs.configure(args.log_level, json_logs=not args.plain_logs)
    if args.bootstrap:
        settings.kafka.bootstrap_servers = args.bootstrap
    if args.group:
        settings.kafka.group_id = args.group
    if args.alert_format:
        settings.alerts.format = args.alert_format
    if args.metrics_port is not None:
        settings.metrics.port = args.metrics_port
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    metrics = ServiceMetrics()
    server = (
        metrics.serve_http(settings.metrics.host, settings.metrics.port)
        if settings.metrics.port
        else None
    )
    try:
        reloader = Reloader(settings, args.config, metrics)
        stats = Service(settings, stop_event=stop, metrics=metrics, reloader=reloader).run()
    finally:
        if server is not None:
            server.close()
    log.info(
        "served",
        extra={
            "records": sum(stats.records.values()),
            "alerts": stats.alerts,
            "suppressed": stats.suppressed,
            "dead_letters": stats.dead_letters,
            "late_events": dict(stats.late),
        },
    )
    return 0
