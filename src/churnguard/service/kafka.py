"""The Kafka driver: the consumer loop, rebalance handling and checkpoint scheduling.

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

On revoke the leaving shards get steps 1 and 2 (the listener may not commit: see
:meth:`Service.on_revoked`); their next owner resumes at the checkpoint's offsets.
On assignment a shard is restored from its checkpoint, its inputs are sought to the
checkpoint's offsets, and the ids of alerts produced after the checkpoint are read back from
the alerts topic: re-processing after a crash reproduces those alerts (the pipeline is
deterministic) and they are dropped by id instead of paging twice.

The rooms around the loop: :mod:`~churnguard.service.clients` builds the Kafka clients
(injectable), :mod:`~churnguard.service.shard` holds a shard and the alert-id rule,
:mod:`~churnguard.service.publisher` sends alerts and dead letters, and
:mod:`~churnguard.service.reload` and :mod:`~churnguard.service.metrics` reload and observe.

Over 400 lines on purpose: the poll loop, the rebalance callbacks and the checkpoint order
share one session's clients and shard table, and the order of their steps is the delivery
guarantee; everything that does not need that state lives in the modules named above.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import msgspec
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from churnguard import __version__, compiled_modules
from churnguard.alerts.formats import alert_id_of
from churnguard.config import Settings
from churnguard.errors import ChurnguardError
from churnguard.ingest.events import Origin, Rejected
from churnguard.pipeline import Pipeline
from churnguard.scoring.detectors import prepare_detector
from churnguard.service.checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    checkpoint_key,
    read_partitions,
)
from churnguard.service.clients import (
    ClientFactory,
    KafkaClients,
    heartbeat_interval_ms,
    join_poll_timeout_ms,
)
from churnguard.service.contact import BrokerWatch
from churnguard.service.metrics import RouteMetrics, ServeStats, ServiceMetrics
from churnguard.service.publisher import CLOCK_HEADER, SHARD_HEADER, Publisher
from churnguard.service.reload import Changes, Reloader
from churnguard.service.route import Router, ensure_topics, read_routed
from churnguard.service.shard import Shard, recent_alert_ids
from churnguard.service.undecodable import UNDECODABLE, Undecodable, locate
from churnguard.wiring import startup_frozen

log = logging.getLogger(__name__)

PipelineFactory = Callable[[Settings], Pipeline]
POLL_TIMEOUT_MS = 200
ROUTE_STOP_TIMEOUT_S = 40.0  # a poll plus the flush before the router's commit (30 s at most)
RECORD_ERROR_SAMPLE = 2048  # bytes of a record kept in its dead letter when processing it failed


def default_pipeline_factory(settings: Settings) -> Pipeline:
    """The production pipeline: verified model bundle, configured scorer."""
    from churnguard.wiring import make_pipeline

    return make_pipeline(settings)


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
        clients: ClientFactory | None = None,
    ) -> None:
        self.settings = settings
        self.reloader = reloader
        self.kafka = settings.kafka
        self.clients = clients or KafkaClients(settings.kafka)
        self.stop_event = stop_event or threading.Event()
        self.pipeline_factory = pipeline_factory
        self.metrics = metrics or ServiceMetrics()
        self.stats = ServeStats()
        # silent for the consumer's whole metrics window (two heartbeats): the broker is gone
        grace_s = 2 * heartbeat_interval_ms(self.kafka) / 1000
        self.broker = BrokerWatch(self.metrics, grace_s, self.kafka.bootstrap_servers)
        self.shards: dict[int, Shard] = {}
        self.lag: dict[tuple[str, int], int] = {}
        # partitions paused on a batch the client cannot decode (retried by the next session)
        self.set_aside: dict[TopicPartition, Undecodable] = {}
        self._consumer: KafkaConsumer | None = None
        self._publisher: Publisher | None = None
        self._store: CheckpointStore | None = None
        self._listener_error: BaseException | None = None
        self._pending: set[TopicPartition] = set()  # assigned, not yet restored (paused)
        self._joined = False  # the group has given this session a share (maybe none)
        self._router: Router | None = None  # the route stage, with kafka.repartition
        self._route_thread: threading.Thread | None = None
        self._route_stop = threading.Event()
        self._route_metrics = RouteMetrics(self.metrics) if self.kafka.repartition else None
        self._last_checkpoint = time.monotonic()

    # ---- lifecycle ------------------------------------------------------------------------
    def run(self) -> ServeStats:
        """Run sessions until stopped; a failed session is torn down and rebuilt with backoff."""
        backoff = 0.5
        # compiled before the group is joined: a first tick that compiled (seconds, on a
        # cold cache) could outlive max_poll_interval_ms and cost the group a rebalance
        prepare_detector(self.settings.scoring.detector)
        compiled = compiled_modules()
        self.metrics.compiled.set(len(compiled))
        log.info("build", extra={"version": __version__, "compiled_modules": len(compiled)})
        self.broker.watch(lambda: self._consumer, self.stop_event)
        with startup_frozen():
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
        self._listener_error = None
        self._pending = set()
        self._joined = False
        self.set_aside = {}
        producer = self.clients.producer()
        self._publisher = Publisher(producer, self.settings, self.stats, self.metrics)
        self._store = CheckpointStore(
            self.kafka.checkpoint_topic, producer, self.clients.reader_config()
        )
        topics = list(self.kafka.input_topics)
        if self._route_metrics is not None:
            ensure_topics(self.settings)
            self._router = Router(self.settings, self.clients, self._publisher, self._route_metrics)
            topics = [self.kafka.repartition_topic]
            self._start_route_stage(self._router)
        self._consumer = self.clients.consumer()
        self.broker.session_started(time.monotonic())
        self._consumer.subscribe(topics, listener=_Rebalance(self))
        log.info("consuming", extra={"topics": sorted(topics)})
        while not self.stop_event.is_set():
            if self._router is not None and self._router.error is not None:
                raise self._router.error
            self._poll_once()
            if self.reloader is not None:
                self.apply(self.reloader.poll())
            if time.monotonic() - self._last_checkpoint >= self.kafka.checkpoint_interval_s:
                self.checkpoint(list(self.shards.values()))
        self._close(commit=True)
        log.info("stopped", extra={"records": sum(self.stats.records.values())})

    def _warn_if_unrouted(self, consumer: KafkaConsumer) -> None:
        """Say so, in the log and a gauge, when input topics have several partitions and no
        route stage: each partition is then its own shard, which is right only if every
        producer keys every record by namespace. Unkeyed shippers and CloudTrail are not,
        and their records land in shards without their pod's state (more alerts than
        ``replay``, and other ones: docs/operations.md "Keying and shards")."""
        for topic in self.kafka.input_topics:
            partitions = len(consumer.partitions_for_topic(topic) or ())
            several = partitions if partitions > 1 else 0
            self.metrics.unrouted.labels(topic=topic).set(several)
            if several:
                log.warning(
                    "input topic has several partitions and kafka.repartition is off: alerts"
                    " are right only if every producer keys every record by namespace;"
                    " otherwise set kafka.repartition = true",
                    extra={"topic": topic, "partitions": partitions},
                )

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

    def _start_route_stage(self, router: Router) -> None:
        """The router polls on its own thread (why: :mod:`churnguard.service.route`)."""
        self._route_stop = threading.Event()
        self._route_thread = threading.Thread(
            target=router.run,
            args=(self._route_stop, POLL_TIMEOUT_MS, join_poll_timeout_ms(self.kafka)),
            name="churnguard-route", daemon=True,
        )  # fmt: skip
        self._route_thread.start()

    def _stop_route_stage(self) -> bool:
        """Stop the router's thread; True once it has ended (its consumer is free again)."""
        self._route_stop.set()
        thread, self._route_thread = self._route_thread, None
        if thread is not None:
            thread.join(timeout=ROUTE_STOP_TIMEOUT_S)
            if thread.is_alive():
                log.warning("route stage did not stop; its offsets are not committed")
                return False
        return True

    def _close(self, *, commit: bool) -> None:
        """Checkpoint and commit (graceful stop only), then close the clients."""
        consumer = self._consumer
        producer = self._publisher.producer if self._publisher is not None else None
        router = self._router
        try:
            stopped = router is None or self._stop_route_stage()
            if commit and consumer is not None:
                self.checkpoint(list(self.shards.values()), force=True)
                if router is not None and stopped and router.error is None:
                    router.commit()
        finally:
            if router is not None:
                router.close()
            self._consumer = self._publisher = self._store = self._router = None
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

    # ---- processing -------------------------------------------------------------------------
    def _poll_once(self) -> None:
        assert self._consumer is not None and self._publisher is not None
        batch = self._poll(POLL_TIMEOUT_MS if self._joined else join_poll_timeout_ms(self.kafka))
        self.metrics.tick()
        if self._listener_error is not None:
            raise CheckpointError(f"rebalance failed: {self._listener_error!r}")
        if self._pending:
            # records fetched for them before the restore are dropped: the seek re-reads them
            self.on_assigned(set(self._pending))
            return
        started = time.monotonic()
        for tp, records in batch.items():
            shard = self.shards.get(tp.partition)
            if shard is None or tp.topic not in shard.offsets or not records:
                continue  # revoked between fetch and now: the next owner re-reads it
            self._process_records(shard, tp.topic, records)
            self.stats.records[tp.topic] += len(records)
            self.metrics.records.labels(tp.topic).inc(len(records))
        if batch:
            self.metrics.latency.observe(time.monotonic() - started)
        self._publisher.check()
        self._update_lag()

    def _poll(self, timeout_ms: int) -> dict[TopicPartition, list]:
        """One poll; a batch the client cannot decode sets its partition aside, not the loop."""
        assert self._consumer is not None
        try:
            return self._consumer.poll(
                timeout_ms=timeout_ms, max_records=self.kafka.max_poll_records
            )
        except UNDECODABLE as exc:
            self._set_aside_undecodable(exc)
            return {}

    def _set_aside_undecodable(self, exc: Exception) -> None:
        """Find the partition that does not decode, pause it, dead-letter and report it once.

        Reconnecting would fetch the same batch again, so the other partitions go on being
        served; the paused one stays uncommitted at the batch until a restart (with the
        codec installed, or the batch removed) reads it again.
        """
        assert self._consumer is not None and self._publisher is not None
        positions = {
            tp: self._consumer.position(tp)
            for shard in self.shards.values()
            for tp in shard.partitions()
            if tp not in self.set_aside
        }
        reader = self.clients.reader()
        try:
            found = locate(reader, positions)
        finally:
            reader.close()
        if found is None:  # it did not happen again: a transient fault, rebuild the session
            raise KafkaError(f"undecodable fetch that no partition reproduces: {exc!r}")
        self._consumer.pause(found.tp)
        self.set_aside[found.tp] = found
        self.metrics.undecodable.labels(found.topic, str(found.partition)).inc()
        where = {"topic": found.topic, "partition": found.partition, "offset": found.offset}
        log.error(
            "batch cannot be decoded; partition paused, the others go on",
            extra={**where, "reason": found.reason},
        )
        origin = Origin(source=found.topic, partition=found.partition, offset=found.offset)
        self._publisher.send_dead_letter(
            Rejected(reason="undecodable_batch", detail=found.reason[:500], origin=origin)
        )

    def _process_records(self, shard: Shard, topic: str, records: list) -> None:
        """One poll's records of one partition, in offset order, each through the shard.

        Each record is still its own pipeline step, so the alerts do not depend on where a
        poll happens to end. The shard's offset moves once, past the last record: nothing
        reads it between two records (a revoke runs inside ``poll()``), and a record that
        makes the loop fail ends the session, which commits nothing.
        """
        if self._router is not None:
            for rec in records:
                self._process_routed(shard, rec)
        else:
            pinned = self.kafka.input_topics.get(topic)
            process, number = self._process, shard.number
            for rec in records:
                origin = Origin(source=topic, partition=number, offset=rec.offset)
                process(shard, rec.value or b"", origin, pinned)
        shard.offsets[topic] = records[-1].offset + 1
        shard.dirty = True

    def _process_routed(self, shard: Shard, rec) -> None:
        """A record of the repartition topic: a marker of an input's progress, or a record
        under its original coordinates (a copy routed twice is dropped)."""
        assert self._publisher is not None
        routed = read_routed(rec, self.kafka.input_topics)
        if routed.fact:  # another shard's namespace's contact (route.py, "Contact facts")
            if routed.contact is None:
                log.warning("unreadable contact fact skipped", extra={"offset": rec.offset})
            else:
                shard.pipeline.note_remote_contact(*routed.contact)
            return
        if not routed.marker:
            if shard.first_time(routed.origin):
                self._process(shard, rec.value or b"", routed.origin, routed.pinned)
            elif self._route_metrics is not None:
                self._route_metrics.copies.inc()
            shard.idle_inputs.discard(routed.input)
            return
        if routed.progress is not None:
            shard.pipeline.note_progress(routed.input, routed.progress)
        (shard.idle_inputs.add if routed.idle else shard.idle_inputs.discard)(routed.input)
        self._publisher.publish(shard, shard.pipeline.set_idle(shard.idle_inputs))

    def _process(self, shard: Shard, raw: bytes, origin: Origin, pinned: str | None) -> None:
        """One record through the shard's pipeline; a record that breaks it is dead-lettered.

        The pipeline is built never to raise; should a record still make it raise (a bug, or
        a config the scorer refuses), that record goes to the dead-letter topic with the
        error and the loop goes on: one record must never stop the service.
        """
        assert self._publisher is not None
        try:
            out = shard.pipeline.process(raw, origin, pinned)
        except (ChurnguardError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
            self.metrics.record_errors.labels(type(exc).__name__).inc()
            log.error(
                "record failed in the pipeline; dead-lettered",
                extra={
                    "topic": origin.source,
                    "partition": origin.partition,
                    "offset": origin.offset,
                    "error": repr(exc),
                },
            )
            self._publisher.send_dead_letter(
                Rejected(
                    reason="pipeline_error",
                    detail=f"{type(exc).__name__}: {exc}"[:500],
                    origin=origin,
                    record=raw[:RECORD_ERROR_SAMPLE].decode("utf-8", "replace"),
                )
            )
            return
        self._publisher.publish(shard, out)

    def _update_lag(self) -> None:
        assert self._consumer is not None and self._publisher is not None
        lag: dict[tuple[str, int], int] = {}
        for shard in self.shards.values():
            for tp in shard.partitions():
                high = self._consumer.highwater(tp)
                if high is not None:
                    lag[(tp.topic, tp.partition)] = self._records_behind(shard, tp, high)
            # caught-up inputs stop holding back the shard's event-time watermark, and so do
            # inputs set aside on an undecodable batch (the other topics' alerts go on)
            idle = [f"{t}[{p}]" for (t, p), n in lag.items() if p == shard.number and n == 0]
            if self._router is not None:  # the inputs are the original ones: markers say
                idle = sorted(shard.idle_inputs)
            idle += [
                f"{tp.topic}[{tp.partition}]"
                for tp in self.set_aside
                if tp.partition == shard.number
            ]
            self._publisher.publish(shard, shard.pipeline.set_idle(idle))
            self.metrics.set_capped(shard.number, shard.pipeline.stats)
        self.metrics.observe_shards({n: s.pipeline for n, s in self.shards.items()})
        self.lag = lag
        self.metrics.set_lag(lag)
        self.metrics.set_aside((tp.topic, tp.partition) for tp in self.set_aside)

    def _records_behind(self, shard: Shard, tp: TopicPartition, high: int) -> int:
        """How far behind the end the shard is; 0 once it has read every record there is.

        Transactional producers leave commit markers (and aborted batches) that the consumer
        skips: after a transaction's last record the end offset is one past the marker. The
        consumer's position has moved past them; the shard's offset (the last record + 1) has
        not. Every record returned by a poll is processed before this runs, so the position
        is ahead of the shard's offset only by offsets that hold no record to process.
        """
        assert self._consumer is not None
        offset = shard.offsets[tp.topic]
        if high <= offset:
            return 0
        position = self._consumer.position(tp)  # ~0.1 ms: only asked when behind by offsets
        return max(0, high - max(offset, position if position is not None else 0))

    @property
    def caught_up(self) -> bool:
        """Every assigned partition has been fetched and fully processed.

        Repartitioned, that is two stages: this member's router has routed its share of the
        inputs and the broker has it (:attr:`Router.caught_up`), and each of its shards has
        been told by every input's router that the input is routed in full, and has read
        everything fetched (:meth:`Shard.routed_in_full`). A member may hold no shard (more
        members than internal partitions) once its group has given it its empty share.
        """
        assigned = sum(len(s.offsets) for s in self.shards.values())
        read = len(self.lag) == assigned and all(v == 0 for v in self.lag.values())
        if self._router is None:
            return assigned > 0 and read
        return (
            self._joined
            and not self._pending
            and self._router.caught_up
            and all(s.routed_in_full() for s in self.shards.values())
            and read
        )

    # ---- checkpoints ------------------------------------------------------------------------
    def checkpoint(self, shards: list[Shard], *, force: bool = False) -> None:
        """Flush → checkpoint → commit for the given shards (see the module docstring)."""
        self._last_checkpoint = time.monotonic()
        due = [s for s in shards if s.dirty or force]
        if not due or self._publisher is None or self._consumer is None or self._store is None:
            return
        started = time.monotonic()
        self._write_checkpoints(due)
        self._consumer.commit(
            {
                tp: OffsetAndMetadata(s.offsets[tp.topic], "", -1)
                for s in due
                for tp in s.partitions()
            }
        )
        for s in due:
            s.dirty = False
            s.alert_ids = recent_alert_ids(s)
        self.stats.checkpoints += len(due)
        self.metrics.checkpoints.inc(len(due))
        self.metrics.checkpoint_seconds.observe(time.monotonic() - started)
        log.debug("checkpointed", extra={"shards": [s.number for s in due]})

    def _write_checkpoints(self, shards: list[Shard]) -> None:
        """Steps 1 and 2 of a checkpoint: flush the producer, then write the shards' state.

        Uses only the producer and a separate reader, never the group consumer, so it may
        run inside the rebalance listener (on the consumer's IO thread).
        """
        assert self._publisher is not None and self._store is not None
        self._publisher.flush(timeout_s=30)
        alert_offsets = self._alert_end_offsets()
        group = self.kafka.group_id
        self._store.write(
            Checkpoint(
                group=group,
                shard=s.number,
                offsets=dict(s.offsets),
                alert_offsets=alert_offsets,
                alert_ids=recent_alert_ids(s),
                state=s.pipeline.snapshot(),
                written_at=time.time(),
                origins=dict(s.origins),
            )
            for s in shards
        )

    def _alert_end_offsets(self) -> dict[int, int]:
        """End offsets of the alerts topic. A low answer (tansu) only makes read-back longer."""
        reader = self.clients.reader()
        try:
            parts = reader.partitions_for_topic(self.kafka.alerts_topic) or set()
            tps = [TopicPartition(self.kafka.alerts_topic, p) for p in parts]
            return {tp.partition: off for tp, off in reader.end_offsets(tps).items()}
        finally:
            reader.close()

    # ---- rebalance --------------------------------------------------------------------------
    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Hand the leaving shards over: their alerts flushed, their state checkpointed.

        The checkpoint holds each shard's next input offsets, and the next owner seeks to
        them on restore, so it resumes exactly where this one stopped (no re-processing).
        The group offsets are not committed here: the listener runs on the consumer's IO
        thread, where the consumer's blocking calls are forbidden; they catch up at the new
        owner's next checkpoint, and until then a restore never reads them.
        """
        numbers = {tp.partition for tp in revoked}
        leaving = [self.shards[n] for n in sorted(numbers) if n in self.shards]
        dirty = [s for s in leaving if s.dirty]
        if self._publisher is not None:
            if dirty and self._store is not None:
                started = time.monotonic()
                self._write_checkpoints(dirty)
                self.stats.checkpoints += len(dirty)
                self.metrics.checkpoints.inc(len(dirty))
                self.metrics.checkpoint_seconds.observe(time.monotonic() - started)
            else:
                self._publisher.flush(timeout_s=30)
        for number in numbers:
            self.shards.pop(number, None)
        self._pending -= revoked
        for tp in revoked:
            self.set_aside.pop(tp, None)
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
                shard.origins = dict(cp.origins)
                for tp in shard.partitions():
                    self._consumer.seek(tp, shard.offsets[tp.topic])
                self._read_back_alert_ids(shard, cp.alert_offsets)
            else:
                offsets = {t: self._consumer.position(TopicPartition(t, number)) for t in topics}
                shard = Shard(key, number, pipeline, offsets)
                fresh.append(shard)
            inputs = self._inputs_of(shard)
            shard.pipeline.expect_sources(inputs, routed=self._router is not None)
            shard.inputs = frozenset(inputs) if self._router is not None else frozenset()
            self.shards[number] = shard
        # a fresh shard gets a checkpoint at once, so a crash before the first periodic one
        # still has an alerts-topic offset to read back from
        self.checkpoint(fresh, force=True)
        # pending until their shards exist: "caught up" (read by other threads) must not hold
        # in between, when the member has a share and no shard yet
        self._pending -= assigned
        self._consumer.resume(*assigned)
        self.metrics.set_assignment(len(assigned))
        log.info(
            "partitions assigned",
            extra={"shards": sorted(by_number), "restored": sorted(found)},
        )
        if self._router is None:  # the group's metadata is in hand now: nothing blocks
            self._warn_if_unrouted(self._consumer)

    def _inputs_of(self, shard: Shard) -> list[str]:
        """The inputs that align a shard's watermark: its partitions, or, repartitioned,
        every partition of every input topic (routed records keep their coordinates)."""
        assert self._consumer is not None
        if self._router is None:
            return [f"{tp.topic}[{tp.partition}]" for tp in shard.partitions()]
        return [f"{topic}[{p}]" for topic in self.kafka.input_topics
                for p in sorted(self._consumer.partitions_for_topic(topic) or ())]  # fmt: skip

    def _read_back_alert_ids(self, shard: Shard, alert_offsets: dict[int, int]) -> None:
        """Collect ids this shard produced after its checkpoint (before a crash)."""
        reader = self.clients.reader()
        mine = shard.key.encode()
        topic = self.kafka.alerts_topic
        try:
            parts = reader.partitions_for_topic(topic) or set()
            starts = {TopicPartition(topic, p): alert_offsets.get(p, 0) for p in parts}
            for rec in read_partitions(reader, starts, 30.0):
                headers = dict(rec.headers or [])
                if headers.get(SHARD_HEADER) != mine:
                    continue
                alert_id = alert_id_of(msgspec.json.decode(rec.value))
                clock = float(headers.get(CLOCK_HEADER, b"inf"))
                if alert_id:
                    shard.alert_ids[alert_id] = clock
                    self.stats.read_back += 1
        finally:
            reader.close()


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread, where the consumer's blocking calls are forbidden.

    Revoke: the leaving shards' alerts and dead letters are flushed and their state is
    checkpointed (producer and reader clients have their own IO threads), then the shards
    are dropped; the next owner restores that checkpoint and resumes at its offsets.
    Assign: the partitions are paused and restored by the poll loop right after ``poll()``
    returns.
    """

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.service._joined = False  # not caught up between a share and the next
        try:
            self.service.on_revoked(set(revoked))
        except Exception as exc:
            self.service._listener_error = exc
            raise

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.service._consumer is not None and assigned:
            self.service._consumer.pause(*assigned)
        self.service._pending |= set(assigned)
        self.service._joined = True


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
