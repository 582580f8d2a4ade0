"""The route stage: input topics however partitioned → an internal topic keyed by scope.

With ``kafka.repartition`` on, each service instance runs a router beside its shards. The
router is a member of its own consumer group (``<group>.route``) on the input topics; it
decodes and adapts each record with the shards' own code (:func:`churnguard.ingest.parse_record`),
gives it the scope its state lives in (:mod:`churnguard.service.bindings`) and produces the
raw record, key = scope, to ``kafka.repartition_topic`` with headers naming where it came
from. The shards then consume that topic as they consume keyed input: a namespace's records,
whatever topic and partition they arrived on, meet in one shard.

Order and event time. A router keeps the order of each input partition, which is what lets
a shard drop the copies a restarted router produces again (:meth:`Shard.first_time`). A
shard aligns its watermark on every *original* input partition, as it would on its own
inputs (records keep their original coordinates), so one router running ahead of another
makes nothing late. It receives only its scopes' records, so each router also sends every
internal partition a small marker per input every ``PROGRESS_INTERVAL_S``: the event time
routed so far on that input, and whether it is read to its end (idle inputs do not hold a
watermark back).

Waiting. A record known only by an address or a container id is routed once its binding is
known; one that may still be claimed by a binding not yet read (the kubelet's status patch
lags a pod's first traffic) waits until every input, whichever router reads it, has been
read past its event time by the binding lag (the routers share their progress in the
bindings table: :meth:`BindingTable.frontier`). A record that waits holds back the merge
(order is kept); past ``route_max_waiting`` waiting records or ``route_max_wait_s`` seconds
it goes on under the fallback scope, counted (``churnguard_route_fallback_total``) and
logged, never dropped.

Contact facts. After routing a record of a namespace, a router tells every *other* shard
each external destination that namespace contacts, once per (destination, namespace) unless
an earlier time turns up (:func:`~churnguard.service.bindings.contacts_of`; a record with
``CONTACT_HEADER``, value ``[destination, namespace, time]``): campaign memory needs the
hosts the whole cluster shares, and a shard sees only its namespaces. They are produced
after the record and before the marker that covers it, so a shard has every contact up to
an event time before its watermark passes it; campaign memory looks them up bounded by the
judged row's time, so a shard that hears some early answers as one that has not. With one
shard there is no other shard and nothing is sent.

Delivery. Input offsets are committed only after the routed records are acknowledged by the
broker (the producer is flushed first, every ``checkpoint_interval_s``), so a killed router's
successor routes some records a second time; shards drop them by their original coordinates.

Its own thread. The router's consumer and the shards' consumer are two group members, and
each must be inside its own ``poll()`` when its group join completes: kafka-python (3.0.12)
drops a JoinGroup/SyncGroup that completes between two polls and sends a new JoinGroup
(``join_group_async`` re-creates a join task that is already done), and a broker holds every
JoinGroup for up to the rebalance timeout. Polled in turn by one thread, each consumer spent
most of the loop outside its poll (50 ms each, then the other stage's work), so most joins
were dropped and redone, more of them the busier the machine: minutes without a share under
load. On its own thread (:meth:`Router.run`) a router waits in ``poll()`` whenever it has
nothing to route, which is always while it rejoins (its inputs are revoked then).

Over 400 lines on purpose: the merge by event time, the bounded wait and the progress
markers share one router's consumer and its per-input positions, and their order is the
routing guarantee; the scope rule and the bindings table live in :mod:`bindings`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from churnguard.config import Settings
from churnguard.errors import ConfigError
from churnguard.ingest import AdapterContext, parse_record
from churnguard.ingest.events import Origin
from churnguard.ingest.watermark import input_of
from churnguard.profiling.entities import IP_BINDING_LAG_S
from churnguard.profiling.features import NetworkClassifier
from churnguard.service.bindings import (
    FALLBACK,
    IDLE,
    Binding,
    BindingTable,
    bindings_of,
    contacts_of,
    other_shards,
    scope_of,
    shard_of,
)
from churnguard.service.broker import create_topics
from churnguard.service.checkpoints import read_partitions
from churnguard.service.clients import ClientFactory, client_config
from churnguard.service.metrics import RouteMetrics
from churnguard.service.publisher import Publisher

log = logging.getLogger(__name__)

SOURCE_HEADER = "churnguard-source"  # the input topic: the shard pins the format by it
ORIGIN_HEADER = "churnguard-origin"  # "partition:offset" on that topic
PROGRESS_HEADER = "churnguard-progress"  # on a marker: event time routed on that input
IDLE_HEADER = "churnguard-idle"  # on a marker: b"1" when the input is read to its end
CONTACT_HEADER = "churnguard-contact"  # b"1" on a contact fact (value: dest, namespace, time)
_MAX_CONTACTS = 50_000  # (destination, namespace) pairs a router remembers telling
PROGRESS_INTERVAL_S = 0.5
END_CONFIRM_S = 1.0  # at least twice the consumer's fetch wait (kafka.fetch_max_wait_ms <= 500)
TABLE_READ_TIMEOUT_S = 30.0


@dataclass
class _Item:
    """A record read and adapted, waiting for its turn in the merge."""

    time: float
    raw: bytes
    topic: str
    partition: int
    offset: int
    events: list
    read_at: float  # wall clock: the age cap


@dataclass(frozen=True)
class Routed:
    """What a record of the repartition topic stands for: a record, or a progress marker."""

    origin: Origin  # the original input's coordinates (offset None on a marker)
    pinned: str | None  # the format pinned on the original topic
    progress: float | None = None  # marker: event time routed on that input
    idle: bool = False  # marker: that input is read to its end
    fact: bool = False  # a contact fact (not a record, not a marker)
    contact: tuple[str, str, float] | None = None  # its dest, namespace, time (None: unreadable)

    @property
    def input(self) -> str:
        return input_of(self.origin)

    @property
    def marker(self) -> bool:
        return self.origin.offset is None


def read_routed(rec, pinned_formats: dict[str, str]) -> Routed:
    """A repartitioned record's original coordinates (or its marker, or its contact fact)
    from its headers."""
    headers = {k: v.decode("utf-8", "replace") for k, v in rec.headers or [] if v is not None}
    source = headers.get(SOURCE_HEADER, "")
    partition, _, offset = headers.get(ORIGIN_HEADER, "").partition(":")
    if not source or not _is_number(partition):  # not written by a router: stands for itself
        return Routed(Origin(source=rec.topic, partition=rec.partition, offset=rec.offset), None)
    origin = Origin(source=source, partition=int(partition),
                    offset=int(offset) if _is_number(offset) else None)  # fmt: skip
    if headers.get(CONTACT_HEADER) == "1":
        return Routed(origin, None, fact=True, contact=_contact(rec.value))
    try:
        progress = float(headers.get(PROGRESS_HEADER) or "nan")
    except ValueError:
        progress = math.nan
    return Routed(
        origin,
        pinned_formats.get(source),
        progress=progress if math.isfinite(progress) else None,
        idle=headers.get(IDLE_HEADER) == "1",
    )


def _contact(value: bytes | None) -> tuple[str, str, float] | None:
    """A contact fact's value, or None when it is not one (nothing to note, never raises)."""
    try:
        dest, ns, t = msgspec.msgpack.decode(value or b"", type=tuple[str, str, float])
    except (msgspec.DecodeError, ValueError):
        return None
    return (dest, ns, t) if math.isfinite(t) else None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the internal topic (input's partition count unless set) and the table topic,
    and wait until the broker's metadata shows them: a group subscribed to a topic its
    members cannot see yet is assigned nothing until the next metadata refresh (minutes)."""
    k = settings.kafka
    client = client_config(k)
    reader = KafkaConsumer(**client)
    try:
        partitions = k.repartition_partitions
        if partitions is None:
            counts = [len(reader.partitions_for_topic(t) or ()) for t in k.input_topics]
            partitions = max(counts, default=1) or 1
        create_topics(k.bootstrap_servers, [k.repartition_topic], partitions, client=client)
        create_topics(k.bootstrap_servers, [k.bindings_topic], 1, compacted=[k.bindings_topic],
                      client=client)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not all(reader.partitions_for_topic(t) for t in (k.repartition_topic,
                                                                 k.bindings_topic)):  # fmt: skip
            if time.monotonic() > deadline:
                raise KafkaError(f"{k.repartition_topic} not in the broker's metadata")
            time.sleep(0.1)
        actual = len(reader.partitions_for_topic(k.repartition_topic) or ())
        if k.repartition_partitions is not None and actual != k.repartition_partitions:
            # S is part of what the alerts are (docs/operations.md, "Choosing S"): a changed
            # setting on the old topic would be ignored without a word
            raise ConfigError(
                f"{k.repartition_topic} has {actual} partitions but repartition_partitions ="
                f" {k.repartition_partitions}; changing the shard count is a re-baselining:"
                " name a new repartition_topic with it"
            )
    finally:
        reader.close()


class Router:
    """One route-stage group member, run on its own thread by :meth:`run`.

    Only that thread touches the router's consumers once it runs; the service reads
    :attr:`caught_up` and :attr:`error`, which the thread keeps up to date.
    """

    def __init__(
        self,
        settings: Settings,
        clients: ClientFactory,
        publisher: Publisher,
        metrics: RouteMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kafka = settings.kafka
        self.ctx = AdapterContext.from_settings(settings.pipeline)
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.table = BindingTable()
        self.network = NetworkClassifier(settings.pipeline.cluster_cidrs)
        self._contacts: dict[tuple[str, str], float] = {}  # (dest, namespace) -> time told
        self.queues: dict[TopicPartition, deque[_Item]] = {}
        self.newest: dict[TopicPartition, float] = {}  # newest event time read per input
        self.released: dict[TopicPartition, int] = {}  # next offset to commit per input
        self.progress: dict[TopicPartition, float] = {}  # newest event time routed per input
        self._reported = -math.inf
        self._shared: dict[str, tuple[float, bool]] = {}  # own progress as last shared
        # the newest marker state the broker acknowledged, per (input, internal partition):
        # written by the producer's IO thread, read by caught_up
        self._acked: dict[tuple[TopicPartition, int], tuple[float | None, bool]] = {}
        self._internal: tuple[int, ...] = ()  # the repartition topic's partitions
        self._joined = False  # the route group has given this router its share (maybe none)
        self.idle: set[TopicPartition] = set()
        self._at_end: dict[TopicPartition, tuple[int, float]] = {}  # position, since when
        self.fallbacks = 0
        self.error: BaseException | None = None  # what stopped run(): the session is rebuilt
        self._caught_up = False  # caught_up as of the end of the last poll_once
        self._last_commit = clock()
        self._table_reader = clients.reader()
        k = self.kafka
        self._consumer = KafkaConsumer(
            **{
                **clients.reader_config(),  # connection, security, read_committed, no autocommit
                "group_id": f"{k.group_id}.route",
                "max_poll_interval_ms": k.max_poll_interval_ms,
                "session_timeout_ms": k.session_timeout_ms,
                "heartbeat_interval_ms": max(100, k.session_timeout_ms // 3),
                "auto_offset_reset": k.auto_offset_reset,
            }
        )
        self._load_table()
        self._consumer.subscribe(list(self.kafka.input_topics), listener=_Revoke(self))

    # ---- the global table -------------------------------------------------------------------
    def _load_table(self) -> None:
        """Read the bindings topic in full before routing anything, then follow it."""
        reader = self._table_reader
        parts = reader.partitions_for_topic(self.kafka.bindings_topic) or set()
        starts = {TopicPartition(self.kafka.bindings_topic, p): 0 for p in parts}
        after = dict(starts)
        for rec in read_partitions(reader, starts, TABLE_READ_TIMEOUT_S):
            self._apply_binding(rec.value)
            after[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
        reader.assign(list(starts))
        for tp, offset in after.items():  # follow from where the full read stopped
            reader.seek(tp, offset)

    def _follow_table(self) -> None:
        for records in self._table_reader.poll(timeout_ms=0).values():
            for rec in records:
                self._apply_binding(rec.value)

    def _apply_binding(self, value: bytes | None) -> None:
        if value:
            try:
                self.table.add(msgspec.msgpack.decode(value, type=Binding))
            except msgspec.DecodeError as exc:
                log.warning("unreadable binding skipped", extra={"error": repr(exc)})

    def _learn(self, events: list) -> None:
        for b in bindings_of(events):
            if self.table.add(b):
                self.publisher.producer.send(
                    self.kafka.bindings_topic, key=b.key(), value=msgspec.msgpack.encode(b)
                ).add_errback(self.publisher._on_send_error)
                self.metrics.bindings.inc()

    # ---- the thread -------------------------------------------------------------------------
    def run(self, stop: threading.Event, timeout_ms: int, joining_timeout_ms: int) -> None:
        """Route until ``stop`` is set, committing what the broker has every checkpoint
        interval; an error is kept in :attr:`error` for the service's loop to raise.
        Polls wait ``joining_timeout_ms`` while the group has not given this router a share."""
        try:
            while not stop.is_set():
                self.poll_once(timeout_ms if self._joined else joining_timeout_ms)
                if self.clock() - self._last_commit >= self.kafka.checkpoint_interval_s:
                    self.commit()
        except Exception as exc:  # raised again by the service's loop, which rebuilds
            self.error = exc
            self._caught_up = False
            log.warning("route stage failed", extra={"error": repr(exc)})

    # ---- reading and routing ----------------------------------------------------------------
    def poll_once(self, timeout_ms: int) -> int:
        """Read what is there, learn its bindings, route what may go; the records routed."""
        self._follow_table()
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.kafka.max_poll_records)
        now = self.clock()
        assigned = self._consumer.assignment()
        for tp, records in batch.items():
            if tp not in assigned:  # revoked inside this poll: its next owner reads them
                continue
            pinned = self.kafka.input_topics.get(tp.topic)
            queue = self.queues.setdefault(tp, deque())
            for rec in records:
                raw = rec.value or b""
                events = parse_record(raw, None, pinned, self.ctx).events
                self._learn(events)
                t = min((ev.time for ev in events), default=-math.inf)
                if math.isfinite(t):
                    self.newest[tp] = max(self.newest.get(tp, -math.inf), t)
                queue.append(_Item(t, raw, tp.topic, tp.partition, rec.offset, events, now))
        self._note_idle(now)
        for tp in assigned:
            self.table.note_progress(_name(tp), self.newest.get(tp, -math.inf), tp in self.idle)
        routed = self._release(now)
        self._report_progress(now)
        self.metrics.waiting.set(self.waiting)
        self._caught_up = self._is_caught_up()
        return routed

    def _note_idle(self, now: float) -> None:
        """An input is read to its end once the consumer is at the fetch high watermark and
        has stayed at that position for ``END_CONFIRM_S``, long enough for a fetch there to
        come back empty. The high watermark alone is not enough: a broker's (tansu's) can
        trail the last batch it will still serve, and an input called idle too soon tells
        the shards that records still to come are not there (their watermark moves past
        them, and "caught up" is declared before they are routed)."""
        idle = set()
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            position = self._consumer.position(tp) if high is not None else None
            if high is None or position is None or position < high:
                self._at_end.pop(tp, None)
                continue
            at, since = self._at_end.setdefault(tp, (position, now))
            if at != position:
                self._at_end[tp] = (position, now)
            elif now - since >= END_CONFIRM_S:
                idle.add(tp)
        self.idle = idle

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    @property
    def caught_up(self) -> bool:
        """:meth:`_is_caught_up` as of the router's last poll (safe to read from any thread)."""
        return self._caught_up

    def _is_caught_up(self) -> bool:
        """This router's share is routed and on the broker: the group gave it its inputs
        (maybe none), each is read to the end its last fetch saw, nothing waits for a
        binding, and a marker saying so is acknowledged on every internal partition.

        A marker is produced after the records it covers, on the same producer and
        partition, so its acknowledgement means they are on the broker too; a shard that
        has read it has read them (:meth:`Shard.routed_in_full`).
        """
        if not self._joined:
            return False
        assigned = self._consumer.assignment()
        if not assigned <= self.idle or self.waiting:
            return False
        return all(self._acked.get((tp, p)) == self._state(tp)
                   for tp in assigned for p in self._internal)  # fmt: skip

    def _frontier(self) -> float:
        """Event time every input not caught up has been read past, by any router."""
        names = [_name(TopicPartition(topic, p)) for topic in self.kafka.input_topics
                 for p in sorted(self._consumer.partitions_for_topic(topic) or ())]  # fmt: skip
        return self.table.frontier(names)

    def _release(self, now: float) -> int:
        """Route each input's records in its own order; a waiting head holds back its input."""
        routed = 0
        assigned = self._consumer.assignment()
        frontier = self._frontier()
        for tp, queue in self.queues.items():
            while queue and tp in assigned:
                item = queue[0]
                scope = scope_of(item.events, self.table)
                key = scope.key
                if not scope.final and frontier < item.time + IP_BINDING_LAG_S:
                    key = None  # a binding may still come on an input not read that far
                if key is None:
                    cap = self._cap(item, now)
                    if cap is None:
                        break
                    key = scope.key or FALLBACK
                    self._fall_back(item, cap, key)
                self._send(item, key)
                queue.popleft()
                self.released[tp] = item.offset + 1
                if math.isfinite(item.time):
                    self.progress[tp] = max(self.progress.get(tp, -math.inf), item.time)
                routed += 1
        return routed

    def _report_progress(self, now: float) -> None:
        """Tell every shard how far each input has been routed, and whether it is done.

        A shard aligns its watermark on every input partition (a router far ahead of another
        must not make the other's records late), but receives only the records of its
        scopes; these markers carry the progress of the rest, every ``PROGRESS_INTERVAL_S``.
        """
        if now - self._reported < PROGRESS_INTERVAL_S:
            return
        self._reported = now
        self._share_progress()
        topic = self.kafka.repartition_topic
        for tp in self._consumer.assignment():
            state = self._state(tp)
            progress, idle = state
            headers = [
                (SOURCE_HEADER, tp.topic.encode()),
                (ORIGIN_HEADER, f"{tp.partition}:".encode()),
                (PROGRESS_HEADER, repr(progress).encode() if progress is not None else b""),
                (IDLE_HEADER, b"1" if idle else b"0"),
            ]
            for partition in self._partitions():
                self.publisher.producer.send(
                    topic, value=b"", partition=partition, headers=headers
                ).add_callback(self._on_marker_acked, tp, partition, state).add_errback(
                    self.publisher._on_send_error
                )

    def _share_progress(self) -> None:
        """Tell every router how far this one has read its inputs, after the bindings of
        what it read (same producer, same one-partition topic: they are read first)."""
        for tp in self._consumer.assignment():
            name = _name(tp)
            state = self.table.progress.get(name)
            if state is None or self._shared.get(name) == state:
                continue
            b = Binding("progress", name, state[0], IDLE if state[1] else "")
            self.publisher.producer.send(
                self.kafka.bindings_topic, key=b.key(), value=msgspec.msgpack.encode(b)
            ).add_errback(self.publisher._on_send_error)
            self._shared[name] = state

    def _on_marker_acked(self, tp: TopicPartition, partition: int, state, _metadata) -> None:
        """The producer's IO thread: this marker (and every record before it) is on the broker."""
        self._acked[(tp, partition)] = state

    def _state(self, tp: TopicPartition) -> tuple[float | None, bool]:
        """What a marker says of an input: its progress, and whether it is done."""
        return self.progress.get(tp), tp in self.idle and not self.queues.get(tp)

    def _cap(self, item: _Item, now: float) -> str | None:
        if self.waiting > self.kafka.route_max_waiting:
            return "count"
        if now - item.read_at >= self.kafka.route_max_wait_s:
            return "age"
        return None

    def _fall_back(self, item: _Item, cap: str, key: str) -> None:
        self.fallbacks += 1
        self.metrics.fallback.labels(cap).inc()
        log.warning(
            "record routed without its binding",
            extra={"topic": item.topic, "partition": item.partition, "offset": item.offset,
                   "cap": cap, "scope": key},
        )  # fmt: skip

    def _partitions(self) -> tuple[int, ...]:
        """The repartition topic's partitions (a deployment constant: read once)."""
        if not self._internal:
            topic = self.kafka.repartition_topic
            self._internal = tuple(sorted(self.publisher.producer.partitions_for(topic)))
        return self._internal

    def _send(self, item: _Item, key: str) -> None:
        """Produce a record to its scope's shard, by the rule ``replay --shards`` splits by."""
        partitions = self._partitions()
        self.publisher.producer.send(
            self.kafka.repartition_topic,
            key=key.encode(),
            partition=partitions[shard_of(key, len(partitions))],
            value=item.raw,
            headers=[
                (SOURCE_HEADER, item.topic.encode()),
                (ORIGIN_HEADER, f"{item.partition}:{item.offset}".encode()),
            ],
        ).add_errback(self.publisher._on_send_error)
        self.metrics.routed.labels(item.topic).inc()
        self._tell_contacts(item, key)

    def _tell_contacts(self, item: _Item, key: str) -> None:
        """Tell every other shard the external destinations ``key``'s namespace contacted
        in this record, unless it was told an earlier time (see the module docstring)."""
        partitions = self._partitions()
        others = other_shards(key, len(partitions))
        if not others:
            return
        headers = [
            (SOURCE_HEADER, item.topic.encode()),
            (ORIGIN_HEADER, f"{item.partition}:".encode()),
            (CONTACT_HEADER, b"1"),
        ]
        for dest, t in contacts_of(item.events, key, self.network).items():
            if t >= self._contacts.get((dest, key), math.inf):
                continue
            if len(self._contacts) >= _MAX_CONTACTS:
                self._contacts.clear()  # telling again is harmless: a shard keeps the earliest
            self._contacts[dest, key] = t
            value = msgspec.msgpack.encode((dest, key, t))
            for k in others:
                self.publisher.producer.send(
                    self.kafka.repartition_topic,
                    value=value,
                    partition=partitions[k],
                    headers=headers,
                ).add_errback(self.publisher._on_send_error)

    # ---- offsets and rebalance --------------------------------------------------------------
    def commit(self) -> None:
        """Flush the producer, then commit what was routed (acknowledged by the broker)."""
        self._last_commit = self.clock()
        self.publisher.flush(timeout_s=30)
        assigned = self._consumer.assignment()
        offsets = {tp: OffsetAndMetadata(off, "", -1)
                   for tp, off in self.released.items() if tp in assigned}  # fmt: skip
        if offsets:
            self._consumer.commit(offsets)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop what was read of revoked inputs: their next owner reads it again."""
        for tp in revoked:
            self.queues.pop(tp, None)
            self.newest.pop(tp, None)
            self.released.pop(tp, None)
            self.progress.pop(tp, None)
            self._at_end.pop(tp, None)
            for p in self._internal:
                self._acked.pop((tp, p), None)
        self._joined = self._caught_up = False
        self.publisher.producer.flush(timeout=30)

    def close(self) -> None:
        for client in (self._consumer, self._table_reader):
            try:
                client.close(autocommit=False)
            except Exception as exc:  # closing a dead connection is best effort
                log.debug("close failed", extra={"error": repr(exc)})


def _name(tp: TopicPartition) -> str:
    """An input partition's name, as shards and the bindings table know it."""
    return input_of(Origin(source=tp.topic, partition=tp.partition))


class _Revoke(ConsumerRebalanceListener):
    def __init__(self, router: Router) -> None:
        self.router = router

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.router.forget(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.router._joined = True
