"""The Kafka driver: consume telemetry topics, run the pipeline per shard, produce alerts.

State is sharded by input partition *number*. Producers key every input topic by namespace
and give all input topics the same partition count, so kafka-python's default RangeAssignor
hands one consumer partition ``i`` of every input topic, and a namespace's audit, runtime
and flow records meet in one :class:`~churnguard.pipeline.Pipeline` (shard ``i``).

Delivery is at-least-once for input and exactly-once by id for alerts. A checkpoint of a
shard runs in this order (the quix-streams order: producer, then state, then offsets):

1. flush the producer: every alert and dead letter so far is on the broker;
2. note the alerts topic's end offsets, snapshot the pipeline, write both with the shard's
   next input offsets to the compacted checkpoint topic (:mod:`churnguard.service.checkpoints`);
3. commit the consumer offsets.

On assignment a shard is restored from its checkpoint, its inputs are sought to the
checkpoint's offsets, and the ids of alerts produced after the checkpoint are read back from
the alerts topic: re-processing after a crash reproduces those alerts (the pipeline is
deterministic) and they are dropped by id instead of paging twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from churnguard.config import KafkaSettings, Settings
from churnguard.ingest import AdapterContext, parse_record
from churnguard.ingest.events import Origin, Rejected
from churnguard.pipeline import TICK_S, Output, Pipeline
from churnguard.service.checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    checkpoint_key,
    read_partitions,
)
from churnguard.service.metrics import ServiceMetrics
from churnguard.service.reload import Changes, Reloader

log = logging.getLogger(__name__)

PipelineFactory = Callable[[Settings], Pipeline]
SHARD_HEADER = "churnguard-shard"  # on alerts: the checkpoint key of the shard that made it
CLOCK_HEADER = "churnguard-event-time"  # on alerts: the shard's event clock when it made it
POLL_TIMEOUT_MS = 200
_json = msgspec.json.Encoder()


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security settings shared by every client (consumer, producer, admin)."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
    }
    optional = {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_plain_username,
        "sasl_plain_password": kafka.sasl_plain_password,
        "ssl_cafile": kafka.ssl_cafile,
        "ssl_certfile": kafka.ssl_certfile,
        "ssl_keyfile": kafka.ssl_keyfile,
    }
    config.update({k: v for k, v in optional.items() if v is not None})
    return config


def default_pipeline_factory(settings: Settings) -> Pipeline:
    """The production pipeline: verified model bundle, configured scorer."""
    from churnguard.wiring import make_pipeline

    return make_pipeline(settings)


@dataclass
class ServeStats:
    """What one ``serve`` run did (across reconnects); the demo and tests read it."""

    records: Counter[str] = field(default_factory=Counter)  # by input topic
    alerts: int = 0
    suppressed: int = 0  # alerts already on the alerts topic (re-processing after a crash)
    dead_letters: int = 0
    late: Counter[str] = field(default_factory=Counter)  # "source.outcome" -> events
    checkpoints: int = 0
    sessions: int = 0


@dataclass
class Shard:
    """One input partition number: its pipeline and what it has processed."""

    key: str  # its checkpoint key (group, number, topics); also tags its alerts
    number: int
    pipeline: Pipeline
    offsets: dict[str, int]  # input topic -> next offset to process
    alert_ids: dict[str, float] = field(default_factory=dict)  # id -> event clock when produced
    dirty: bool = False  # processed something since its last checkpoint

    def partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, self.number) for t in sorted(self.offsets)]


class Service:
    """One consumer-group member. ``run()`` blocks until ``stop_event`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        stop_event: threading.Event | None = None,
        pipeline_factory: PipelineFactory = default_pipeline_factory,
        metrics: ServiceMetrics | None = None,
        reloader: Reloader | None = None,
    ) -> None:
        self.settings = settings
        self.reloader = reloader
        self.kafka = settings.kafka
        self.stop_event = stop_event or threading.Event()
        self.pipeline_factory = pipeline_factory
        self.metrics = metrics or ServiceMetrics()
        self.stats = ServeStats()
        self.shards: dict[int, Shard] = {}
        self.lag: dict[tuple[str, int], int] = {}
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._store: CheckpointStore | None = None
        self._send_error: BaseException | None = None
        self._listener_error: BaseException | None = None
        self._pending: set[TopicPartition] = set()  # assigned, not yet restored (paused)
        self._last_checkpoint = time.monotonic()

    # ---- lifecycle ------------------------------------------------------------------------
    def run(self) -> ServeStats:
        """Run sessions until stopped; a failed session is torn down and rebuilt with backoff."""
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                self._session()
                backoff = 0.5
            except (KafkaError, CheckpointError, OSError) as exc:
                self.metrics.reconnects.inc()
                log.warning(
                    "kafka session failed; reconnecting",
                    extra={"error": repr(exc), "retry_in_s": backoff},
                )
                self._close(commit=False)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.kafka.reconnect_backoff_max_s)
        return self.stats

    def _session(self) -> None:
        self.stats.sessions += 1
        self._send_error = self._listener_error = None
        self._pending = set()
        config = client_config(self.kafka)
        self._producer = KafkaProducer(
            **config, acks="all", linger_ms=5, retries=5, max_request_size=2 * 1024 * 1024
        )
        self._store = CheckpointStore(
            self.kafka.checkpoint_topic, self._producer, self._reader_config()
        )
        self._consumer = KafkaConsumer(
            **config,
            group_id=self.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.kafka.auto_offset_reset,
            max_poll_interval_ms=self.kafka.max_poll_interval_ms,
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.kafka.session_timeout_ms // 3),
        )
        self._consumer.subscribe(list(self.kafka.input_topics), listener=_Rebalance(self))
        log.info("consuming", extra={"topics": sorted(self.kafka.input_topics)})
        while not self.stop_event.is_set():
            self._poll_once()
            if self.reloader is not None:
                self.apply(self.reloader.poll())
            if time.monotonic() - self._last_checkpoint >= self.kafka.checkpoint_interval_s:
                self.checkpoint(list(self.shards.values()))
        self._close(commit=True)
        log.info("stopped", extra={"records": sum(self.stats.records.values())})

    def apply(self, changes: Changes) -> None:
        """Hot reload: swap the model bundle and/or scoring settings in every shard.

        Shards assigned later build their pipeline from the same (new) settings and bundle.
        """
        if changes.settings is not None:
            self.settings = changes.settings
        for shard in self.shards.values():
            scorer = shard.pipeline.scorer
            if scorer is None:
                continue
            if changes.bundle is not None:
                scorer.use_bundle(changes.bundle)
            if changes.settings is not None:
                scorer.use_settings(changes.settings)

    def _close(self, *, commit: bool) -> None:
        """Checkpoint and commit (graceful stop only), then close the clients."""
        consumer, producer = self._consumer, self._producer
        try:
            if commit and consumer is not None:
                self.checkpoint(list(self.shards.values()), force=True)
        finally:
            self._consumer = self._producer = self._store = None
            self.shards.clear()
            self.metrics.set_assignment(0)
            for client in (consumer, producer):
                if client is None:
                    continue
                try:
                    if isinstance(client, KafkaConsumer):
                        client.close(autocommit=False)
                    else:
                        client.close(timeout=5)
                except Exception as exc:  # closing a dead connection is best effort
                    log.debug("close failed", extra={"error": repr(exc)})

    def _reader_config(self) -> dict[str, Any]:
        """Config for short-lived, group-less readers (checkpoints, alert ids)."""
        return {**client_config(self.kafka), "enable_auto_commit": False, "group_id": None}

    # ---- processing -------------------------------------------------------------------------
    def _poll_once(self) -> None:
        assert self._consumer is not None
        batch = self._consumer.poll(
            timeout_ms=POLL_TIMEOUT_MS, max_records=self.kafka.max_poll_records
        )
        self.metrics.tick()
        if self._listener_error is not None:
            raise CheckpointError(f"rebalance failed: {self._listener_error!r}")
        if self._pending:
            # records fetched for them before the restore are dropped: the seek re-reads them
            pending, self._pending = self._pending, set()
            self.on_assigned(pending)
            return
        started = time.monotonic()
        for tp, records in batch.items():
            shard = self.shards.get(tp.partition)
            if shard is None or tp.topic not in shard.offsets:
                continue  # revoked between fetch and now: the next owner re-reads it
            pinned = self.kafka.input_topics.get(tp.topic)
            for rec in records:
                origin = Origin(source=rec.topic, partition=rec.partition, offset=rec.offset)
                self._handle(shard, shard.pipeline.process(rec.value or b"", origin, pinned))
                shard.offsets[tp.topic] = rec.offset + 1
            shard.dirty = True
            self.stats.records[tp.topic] += len(records)
            self.metrics.records.labels(tp.topic).inc(len(records))
        if batch:
            self.metrics.latency.observe(time.monotonic() - started)
        if self._send_error is not None:
            raise KafkaError(f"produce failed: {self._send_error!r}")
        self._update_lag()

    def _handle(self, shard: Shard, out: Output) -> None:
        assert self._producer is not None
        for alert in out.alerts:
            if alert.alert_id in shard.alert_ids:
                self.stats.suppressed += 1
                self.metrics.duplicates.inc()
                continue
            clock = shard.pipeline.max_time
            shard.alert_ids[alert.alert_id] = clock
            self._producer.send(
                self.kafka.alerts_topic,
                key=str(alert.entity.key()).encode(),
                value=_json.encode(alert),
                headers=[
                    (SHARD_HEADER, shard.key.encode()),
                    (CLOCK_HEADER, repr(clock).encode()),
                ],
            ).add_errback(self._on_send_error)
            self.stats.alerts += 1
            self.metrics.alerts.labels(str(alert.severity), alert.entity.namespace or "-").inc()
        for rejected in out.rejected:
            self._producer.send(
                self.kafka.dead_letter_topic, value=dead_letter(rejected)
            ).add_errback(self._on_send_error)
            self.stats.dead_letters += 1
            self.metrics.rejected.labels(rejected.reason).inc()
        for source, outcome in out.late:
            self.stats.late[f"{source}.{outcome}"] += 1
            self.metrics.late.labels(source, outcome).inc()
        for scored in out.scored:
            self.metrics.profiles.labels(str(scored.level)).inc()
            if scored.folded:
                self.metrics.folded.inc()

    def _on_send_error(self, exc: BaseException) -> None:
        """A send failed after the producer's retries: the session must not commit past it."""
        self._send_error = exc

    def _update_lag(self) -> None:
        assert self._consumer is not None
        lag: dict[tuple[str, int], int] = {}
        for shard in self.shards.values():
            for tp in shard.partitions():
                high = self._consumer.highwater(tp)
                if high is not None:
                    lag[(tp.topic, tp.partition)] = max(0, high - shard.offsets[tp.topic])
            # caught-up inputs stop holding back the shard's event-time watermark
            idle = [f"{t}[{p}]" for (t, p), n in lag.items() if p == shard.number and n == 0]
            self._handle(shard, shard.pipeline.set_idle(idle))
            self.metrics.entities.labels(str(shard.number)).set(len(shard.pipeline.table.states))
        self.lag = lag
        self.metrics.set_lag(lag)

    @property
    def caught_up(self) -> bool:
        """Every assigned partition has been fetched and fully processed."""
        assigned = sum(len(s.offsets) for s in self.shards.values())
        return assigned > 0 and len(self.lag) == assigned and all(v == 0 for v in self.lag.values())

    # ---- checkpoints ------------------------------------------------------------------------
    def checkpoint(self, shards: list[Shard], *, force: bool = False) -> None:
        """Flush → checkpoint → commit for the given shards (see the module docstring)."""
        self._last_checkpoint = time.monotonic()
        due = [s for s in shards if s.dirty or force]
        if not due or self._producer is None or self._consumer is None or self._store is None:
            return
        started = time.monotonic()
        self._producer.flush(timeout=30)
        if self._send_error is not None:
            raise KafkaError(f"produce failed before checkpoint: {self._send_error!r}")
        alert_offsets = self._alert_end_offsets()
        group = self.kafka.group_id
        checkpoints = [
            Checkpoint(
                group=group,
                shard=s.number,
                offsets=dict(s.offsets),
                alert_offsets=alert_offsets,
                alert_ids=_recent(s),
                state=s.pipeline.snapshot(),
                written_at=time.time(),
            )
            for s in due
        ]
        self._store.write(checkpoints)
        self._consumer.commit(
            {
                tp: OffsetAndMetadata(s.offsets[tp.topic], "", -1)
                for s in due
                for tp in s.partitions()
            }
        )
        for s in due:
            s.dirty = False
            s.alert_ids = dict(_recent(s))
        self.stats.checkpoints += len(due)
        self.metrics.checkpoints.inc(len(due))
        self.metrics.checkpoint_seconds.observe(time.monotonic() - started)
        log.debug("checkpointed", extra={"shards": [s.number for s in due]})

    def _alert_end_offsets(self) -> dict[int, int]:
        """End offsets of the alerts topic. A low answer (tansu) only makes read-back longer."""
        reader = KafkaConsumer(**self._reader_config())
        try:
            parts = reader.partitions_for_topic(self.kafka.alerts_topic) or set()
            tps = [TopicPartition(self.kafka.alerts_topic, p) for p in parts]
            return {tp.partition: off for tp, off in reader.end_offsets(tps).items()}
        finally:
            reader.close()

    # ---- rebalance --------------------------------------------------------------------------
    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in revoked}
        if self._producer is not None:
            self._producer.flush(timeout=30)
        for number in numbers:
            self.shards.pop(number, None)
        self._pending -= revoked
        self.metrics.forget_partitions([(tp.topic, tp.partition) for tp in revoked])
        log.info("partitions revoked", extra={"shards": sorted(numbers)})

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None and self._store is not None
        by_number: dict[int, list[str]] = {}
        for tp in assigned:
            by_number.setdefault(tp.partition, []).append(tp.topic)
        group = self.kafka.group_id
        keys = {n: checkpoint_key(group, n, topics) for n, topics in by_number.items()}
        found = self._store.load(keys.values())
        fresh: list[Shard] = []
        for number, topics in sorted(by_number.items()):
            key = keys[number]
            cp = found.get(key)
            pipeline = self.pipeline_factory(self.settings)
            if cp is not None:
                try:
                    pipeline.restore(cp.state)
                except (ValueError, msgspec.DecodeError) as exc:
                    log.warning(
                        "checkpoint unusable; starting the shard empty",
                        extra={"key": key, "error": repr(exc)},
                    )
                    pipeline, cp = self.pipeline_factory(self.settings), None
            if cp is not None:
                shard = Shard(key, number, pipeline, dict(cp.offsets), dict(cp.alert_ids))
                for tp in shard.partitions():
                    self._consumer.seek(tp, shard.offsets[tp.topic])
                self._read_back_alert_ids(shard, cp.alert_offsets)
            else:
                offsets = {t: self._consumer.position(TopicPartition(t, number)) for t in topics}
                shard = Shard(key, number, pipeline, offsets)
                fresh.append(shard)
            shard.pipeline.expect_sources(
                f"{tp.topic}[{tp.partition}]" for tp in shard.partitions()
            )
            self.shards[number] = shard
        # a fresh shard gets a checkpoint at once, so a crash before the first periodic one
        # still has an alerts-topic offset to read back from
        self.checkpoint(fresh, force=True)
        self._consumer.resume(*assigned)
        self.metrics.set_assignment(len(assigned))
        log.info(
            "partitions assigned",
            extra={"shards": sorted(by_number), "restored": sorted(found)},
        )

    def _read_back_alert_ids(self, shard: Shard, alert_offsets: dict[int, int]) -> None:
        """Collect ids this shard produced after its checkpoint (before a crash)."""
        reader = KafkaConsumer(**self._reader_config())
        mine = shard.key.encode()
        topic = self.kafka.alerts_topic
        try:
            parts = reader.partitions_for_topic(topic) or set()
            starts = {TopicPartition(topic, p): alert_offsets.get(p, 0) for p in parts}
            for rec in read_partitions(reader, starts, 30.0):
                headers = dict(rec.headers or [])
                if headers.get(SHARD_HEADER) != mine:
                    continue
                alert_id = msgspec.json.decode(rec.value).get("alert_id")
                clock = float(headers.get(CLOCK_HEADER, b"inf"))
                if alert_id:
                    shard.alert_ids[alert_id] = clock
        finally:
            reader.close()


def _recent(shard: Shard) -> dict[str, float]:
    """Alert ids the shard could still (re)produce after a restore from its next checkpoint.

    The set must keep every id this pipeline has not emitted yet: after a crash it holds the
    previous owner's alerts (read back), which re-processing will make again. The pipeline
    emits a profile once its *watermark* passes the profile's due time, and the clock stored
    with an id (the publisher's ``max_time``) is at least that due time plus the allowed
    lateness. So an id whose clock is more than a window, the lateness and one scoring tick
    behind the watermark was already emitted by this pipeline (the checkpoint's state
    includes it) and can be forgotten.

    The horizon follows the watermark, not ``max_time``: with several inputs the watermark
    waits for the slowest one, and ``max_time`` can run far ahead of what has been emitted
    (e.g. right after a restore, before an empty partition's high watermark is known).
    Pruning by ``max_time`` then forgot read-back ids before they were re-made, and the
    re-made alerts were published a second time.
    """
    pipe = shard.pipeline
    watermark = pipe.watermark
    if not math.isfinite(watermark):
        return dict(shard.alert_ids)
    horizon = watermark - (pipe.window_s + pipe.lateness_s + TICK_S)
    return {k: t for k, t in shard.alert_ids.items() if t >= horizon}


def dead_letter(rejected: Rejected) -> bytes:
    """The dead-letter message: reason, detail, Kafka coordinates and the (truncated) record."""
    origin = rejected.origin or Origin()
    return _json.encode(
        {
            "reason": rejected.reason,
            "detail": rejected.detail,
            "topic": origin.source,
            "partition": origin.partition,
            "offset": origin.offset,
            "record": rejected.record,
        }
    )


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread, where the consumer's blocking calls are forbidden.

    Revoke: the leaving shards' alerts and dead letters are flushed (the producer has its
    own thread) and the shards are dropped; the next owner restores their last checkpoint
    and re-processes from it, dropping re-made alerts by id. Assign: the partitions are
    paused and restored by the poll loop right after ``poll()`` returns.
    """

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            self.service.on_revoked(set(revoked))
        except Exception as exc:
            self.service._listener_error = exc
            raise

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.service._consumer is not None and assigned:
            self.service._consumer.pause(*assigned)
        self.service._pending |= set(assigned)


def serve(
    settings: Settings,
    *,
    stop_event: threading.Event | None = None,
    pipeline_factory: PipelineFactory = default_pipeline_factory,
    metrics: ServiceMetrics | None = None,
) -> ServeStats:
    """Run the consumer service until ``stop_event`` is set (SIGTERM in ``churnguard serve``)."""
    service = Service(
        settings, stop_event=stop_event, pipeline_factory=pipeline_factory, metrics=metrics
    )
    return service.run()


def namespace_key(
    raw: bytes, pinned: str | None = None, ctx: AdapterContext | None = None
) -> bytes | None:
    """The partition key of a telemetry record: its namespace (instance id for instances).

    Uses the real adapters, so the key is exactly the namespace the pipeline will see. None
    (round-robin) for records that name neither, e.g. CloudTrail calls known only by a pod
    IP: those are attributed only if they land in the shard that knows the IP.
    """
    for ev in parse_record(raw, None, pinned, ctx).events:
        if ev.namespace:
            return ev.namespace.encode()
        if ev.instance_id:
            return ev.instance_id.encode()
    return None


def produce_records(
    kafka: KafkaSettings, topic: str, items: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Produce ``(key, value)`` pairs to a topic and wait until the broker has acked them all."""
    producer = KafkaProducer(**client_config(kafka), acks="all", linger_ms=20)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in items]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
    return len(futures)
