"""One run, one table: the service against the raw consumer, 1 and 2 consumers, replay,
scoring per detector and memory per tracked entity, on the same simulated records.

Measured in this order, in one process (the two-consumer run in two child processes):

  raw          a bare kafka-python consumer of the input topics (the floor on this machine)
  serve x1     one churnguard Service in a child process (production pipeline, checkpoints)
  serve x2     two Services in two processes, one consumer group
               Both serve rows give two rates: the whole run, from the first record
               processed to the last (what an operator sees; the rebalance is inside it
               when the second member joins after the first began), and the steady span, from
               the moment every member holds its partitions (each child reports the shards
               it holds) to the last record, with the records processed in that span
  replay       the same records from files (``churnguard replay``)
  score <det>  the scorer alone over the first --score-rows rows of the profile batches
               replay produced (its tick batches, as the service scores them), per detector
               (oif = the default online isolation forest, hst = river HalfSpaceTrees,
               iforest = scikit-learn IsolationForest), no model bundle; then oif over all
               of the day's rows in their order, 1,000 to a batch (what a tick of a cluster
               with ~100x the entities holds: the cost that is per row, not per batch)
  memory       bytes held per tracked live pod (tracemalloc; entity state, no scoring)
  latency      event-to-alert p50/p99 with the records produced at half the serve x1 rate:
               the alert's timestamp on the alerts topic minus that of the input record
               whose processing emitted it (both CreateTime stamped by the producers on
               this machine; an alert emitted because its partitions went idle counts from
               the last record processed). Simulated event time runs thousands of times faster than
               wall time there, so event-time windows add almost nothing: this is the
               service's queueing and processing latency. Records are produced once the
               member holds its partitions. The slowest three alerts' waits are split into
               their parts (queued while the loop was busy, fetch, the rest of their poll's
               batch, publishing), with the checkpoints, GC pauses and CPU the consumer
               got inside each wait; and how much faster than wall time event time ran
               while the records were produced, with the records dead-lettered late for it

``--write`` puts the table, the command and the machine into docs/benchmarks.md between
the ``bench_scale`` markers. Every ratio compares numbers from this one run.

Usage:  .venv/bin/python benchmarks/bench_scale.py [--hours 6] [--seed 11] [--partitions 2]
                                                   [--assignor load] [--write | --serve-only]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from bench_serve import bench_topics, event_ordered, produce_simulated, raw_consume

from churnguard import logs
from churnguard.config import Settings
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.scoring.scorer import Scorer
from churnguard.service.broker import bootstrap_servers
from churnguard.simulate import SimParams, generate, write
from churnguard.wiring import make_pipeline, make_scorer

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_scale:begin -->", "<!-- bench_scale:end -->"
DETECTORS = ("oif", "hst", "iforest")
MEMORY_PODS = 20_000
BIG_BATCH = 1000  # rows per batch of the second oif scoring run (the day's ticks hold ~12)


def first_batches(batches: list[list[Profile]], rows: int) -> list[list[Profile]]:
    """The leading batches holding about ``rows`` rows (all detectors score the same ones)."""
    out, n = [], 0
    for batch in batches:
        if n >= rows:
            break
        out.append(batch)
        n += len(batch)
    return out


def rebatched(batches: list[list[Profile]], size: int) -> list[list[Profile]]:
    """The same rows in the same order, ``size`` to a batch: a bigger cluster's ticks."""
    rows = [p for batch in batches for p in batch]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _member(service, counts, held, slot: int, stop, lag_updates=None) -> None:
    """Run ``service`` until ``stop``, reporting its records and the shards it holds.

    ``counts[slot]`` is the records it has processed, ``held[slot]`` the shards it holds
    restored (0 until the group has given it its share): the parent reads both to time the
    run from the moment every member owns its partitions. ``lag_updates[slot]``, if given,
    counts the service's lag updates seen (each a new ``service.lag``): the step that marks
    caught-up inputs idle and emits what that makes due (see :func:`settle`).
    """
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    last_lag = service.lag
    while not stop.is_set():
        counts[slot] = sum(service.stats.records.values())
        held[slot] = len(service.shards)
        if lag_updates is not None and service.lag is not last_lag:
            last_lag = service.lag
            lag_updates[slot] += 1
        time.sleep(0.01)
    service.stop_event.set()
    thread.join(timeout=60)


def _child_serve(settings_json: bytes, counts, held, slot: int, stop) -> None:
    """A consumer-group member in its own process (see :func:`_member`)."""
    import msgspec

    from churnguard.service.kafka import Service

    logs.configure("WARNING")  # a failed session says why
    settings = msgspec.json.decode(settings_json, type=Settings)
    _member(Service(settings, stop_event=threading.Event()), counts, held, slot, stop)


class _TracingService:
    """Mixin for Service: notes, for every alert published, the input record behind it and
    when that record was polled and processed; the polls, checkpoints and GC pauses too.

    All times are ``time.time()`` (the clock the producers stamp CreateTime with), so the
    parent can split an alert's wait into its parts.
    """

    triggers: list[tuple[str, int, int, float, float, float]]
    polls: list[tuple[float, float, int, float]]  # started, returned, records, CPU at return
    pauses: list[tuple[str, float, float]]  # ("checkpoint" | "gc2"..., started, ended)
    last: tuple[str, int, int, float, float, float] | None = None
    _polled: tuple[float, float] = (0.0, 0.0)

    def _poll(self, timeout_ms):  # type: ignore[no-untyped-def]
        started = time.time()
        batch = super()._poll(timeout_ms)  # type: ignore[misc]
        returned = time.time()
        self._polled = (started, returned)
        n = sum(len(r) for r in batch.values())
        if n:
            self.polls.append((started, returned, n, time.process_time()))
        return batch

    def _process(self, shard, raw, origin, pinned):  # type: ignore[no-untyped-def]
        before = self.stats.alerts  # type: ignore[attr-defined]
        super()._process(shard, raw, origin, pinned)  # type: ignore[misc]
        self.last = (origin.source, origin.partition, origin.offset, *self._polled, time.time())
        self.triggers += [self.last] * (self.stats.alerts - before)  # type: ignore[attr-defined]

    def _update_lag(self) -> None:
        before = self.stats.alerts  # type: ignore[attr-defined]
        super()._update_lag()  # type: ignore[misc]
        if self.last is not None:
            self.triggers += [self.last] * (self.stats.alerts - before)  # type: ignore[attr-defined]

    def checkpoint(self, shards, *, force=False):  # type: ignore[no-untyped-def]
        started = time.time()
        super().checkpoint(shards, force=force)  # type: ignore[misc]
        self.pauses.append(("checkpoint", started, time.time()))


def _child_traced(settings_json: bytes, counts, held, lag_updates, stop, out: str) -> None:
    """One traced consumer in its own process; writes what it traced to ``out`` at the end."""
    import gc

    import msgspec

    from churnguard.service.kafka import Service

    class Traced(_TracingService, Service):
        pass

    logs.configure("WARNING")
    settings = msgspec.json.decode(settings_json, type=Settings)
    service = Traced(settings, stop_event=threading.Event())
    service.triggers, service.polls, service.pauses = [], [], []
    gc_started: dict[int, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[info["generation"]] = time.time()
        else:
            t0 = gc_started.pop(info["generation"], time.time())
            service.pauses.append((f"gc{info['generation']}", t0, time.time()))

    gc.callbacks.append(on_gc)
    _member(service, counts, held, 0, stop, lag_updates)
    trace = {"triggers": service.triggers, "polls": service.polls, "pauses": service.pauses}
    Path(out).write_bytes(orjson.dumps(trace))


def wait_held(held, shards: int, procs, timeout_s: float) -> float:
    """Seconds until the members hold all ``shards`` between them, each at least one."""
    start = time.perf_counter()
    while not (min(held) > 0 and sum(held) == shards):
        if time.perf_counter() - start > timeout_s or not all(p.is_alive() for p in procs):
            raise RuntimeError(f"the group did not take its {shards} shards: {list(held)}")
        time.sleep(0.01)
    return time.perf_counter() - start


def latency(
    bootstrap: str, sim, rate: float, partitions: int
) -> tuple[float, float, int, float, list[str]]:
    """p50 and p99 seconds from input record to alert, records produced at ``rate``/s.

    Records are produced only once the member holds its partitions (a record produced
    before would wait out the group join, which is start-up, not latency). Also returns
    the join's seconds and lines splitting the slowest alerts' waits into their parts.
    """
    import msgspec

    from churnguard.service.clients import KafkaClients
    from churnguard.service.producing import namespace_key

    prefix = f"lat{uuid.uuid4().hex[:6]}"
    settings = bench_topics(bootstrap, prefix, partitions, alert_partitions=1)
    k = settings.kafka
    records = event_ordered(prefix, sim)
    ctx = mp.get_context("spawn")
    counts, held, stop = ctx.Array("q", 1), ctx.Array("i", 1), ctx.Event()
    lag_updates = ctx.Array("q", 1)
    out = tempfile.mktemp(suffix=".json")
    blob = msgspec.json.encode(settings)
    child = ctx.Process(target=_child_traced, args=(blob, counts, held, lag_updates, stop, out))
    child.start()
    producer = KafkaClients(k).producer()
    try:
        join_s = wait_held(held, partitions, [child], 120)
        start = time.perf_counter()
        for i, (topic, raw) in enumerate(records):
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            producer.send(topic, key=namespace_key(raw, None), value=raw)
        producer.flush()
        produced_s = time.perf_counter() - start
        settle(counts, lag_updates, len(records), [child], 120)
    finally:
        producer.close()
        stop.set()
        child.join(timeout=60)
    trace = orjson.loads(Path(out).read_bytes())
    stamp = {}
    for topic in k.input_topics:
        for rec in read_all(settings, topic):
            stamp[(rec.topic, rec.partition, rec.offset)] = rec.timestamp / 1000
    alerts = read_all(settings, k.alerts_topic)
    waits = [
        (a.timestamp / 1000 - stamp[tuple(t[:3])], a.timestamp / 1000, t)
        for a, t in zip(alerts, trace["triggers"], strict=False)
    ]
    if not waits:
        return float("nan"), float("nan"), 0, join_s, []
    waits.sort()
    p50 = waits[len(waits) // 2][0]
    p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))][0]
    detail = [f"member held its {partitions} partitions {join_s:.1f} s after its start"]
    detail += [compressed_time(records, produced_s, read_all(settings, k.dead_letter_topic))]
    detail += [cpu_share(trace["polls"])]
    detail += [split_wait(w, stamp[tuple(t[:3])], at, t[3:], trace) for w, at, t in waits[-3:]]
    return p50, p99, len(waits), join_s, detail


def compressed_time(records: list[tuple[str, bytes]], produced_s: float, dead: list) -> str:
    """How much faster than wall time the produced records' event time ran, and the records
    dead-lettered late for it.

    A poll's wait of 0.1 s here is 0.1 s times that factor of event time: past an input's
    allowed lateness (60 s by default) once the factor is over ~600, so a live run this fast
    dead-letters records late (counted, with their reason) and its alerts can differ from
    those of complete topics; at real time a wait of seconds is far inside the lateness
    (benchmarks.md, "The latency run's compressed event time").
    """
    from churnguard.ingest import parse_record

    times = [e.time for _, raw in records for e in parse_record(raw, None).events]
    factor = (max(times) - min(times)) / max(produced_s, 1e-9) if times else float("nan")
    late = sum(1 for rec in dead if orjson.loads(rec.value).get("reason") == "late")
    return (
        f"event time ran {factor:,.0f}x wall time while the records were produced:"
        f" {late} dead-lettered late (inputs caught up between polls; see docstring)"
    )


def settle(counts, lag_updates, total: int, procs, timeout_s: float) -> None:
    """Wait until member 0 has processed ``total`` records and then finished two lag updates.

    The first lag update that *starts* after the last record marks every input idle and
    emits the windows that makes due: the run's last alerts, published before that update
    assigns its new ``service.lag``. The loop is one thread, so of the updates seen after
    the count reached ``total`` the second began after the last record was processed (the
    first may have been under way). A fixed sleep here missed that emission now and then:
    the run counted 21 or 22 alerts.
    """
    deadline = time.monotonic() + timeout_s
    while counts[0] < total:
        if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
            raise RuntimeError(f"the consumer processed {counts[0]} of {total} records")
        time.sleep(0.01)
    seen = lag_updates[0]
    while lag_updates[0] < seen + 2:
        if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
            raise RuntimeError("the consumer did not update its lag after the last record")
        time.sleep(0.01)


def cpu_share(polls: list) -> str:
    """The consumer process's CPU seconds over wall seconds while it had records to do."""
    if len(polls) < 2:
        return "too few polls to measure the consumer's CPU share"
    wall = polls[-1][1] - polls[0][1]
    cpu = polls[-1][3] - polls[0][3]
    done = sum(p[2] for p in polls[1:])
    return (
        f"consumer process: {cpu:.1f} s CPU in {wall:.1f} s wall ({cpu / max(wall, 1e-9):.0%}),"
        f" {cpu / max(done, 1) * 1e6:.0f} µs CPU a record, {len(polls)} polls with records"
    )


def split_wait(wait: float, created: float, alerted: float, times: list, trace: dict) -> str:
    """One alert's wait as: queued while the loop was busy, fetch, its batch, publishing;
    and the checkpoints and GC pauses, and the CPU the consumer got, inside that wait."""
    poll_started, polled, processed = times
    queued = max(0.0, poll_started - created)
    fetch = polled - max(created, poll_started)
    paused = {}
    for kind, t0, t1 in trace["pauses"]:
        overlap = min(t1, alerted) - max(t0, created)
        if overlap > 0:
            paused[kind] = paused.get(kind, 0.0) + overlap
    inside = [p for p in trace["polls"] if created <= p[1] <= alerted]
    before = [p for p in trace["polls"] if p[1] < created]
    cpu = ""
    if inside and before:
        got = inside[-1][3] - before[-1][3]
        cpu = f"; CPU {got:.2f} s of {inside[-1][1] - before[-1][1]:.2f} s wall"
    pauses = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(paused.items())) or "none"
    return (
        f"wait {wait:.2f} s = queued behind the loop {queued:.2f} + fetch {fetch:.2f}"
        f" + in its batch {processed - polled:.2f} + to the alert {alerted - processed:.2f}"
        f"; pauses inside: {pauses}{cpu}"
    )


def read_all(settings: Settings, topic: str) -> list:
    from kafka import KafkaConsumer, TopicPartition

    from churnguard.service.checkpoints import read_partitions
    from churnguard.service.clients import client_config

    consumer = KafkaConsumer(**client_config(settings.kafka), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return list(read_partitions(consumer, {TopicPartition(topic, p): 0 for p in parts}, 30))
    finally:
        consumer.close()


def serve_group(
    settings: Settings, total: int, consumers: int, shards: int
) -> tuple[float, float, int, list[int]]:
    """``consumers`` processes of one group serve ``total`` records.

    Returns the seconds from the first record processed to the last (what an operator
    sees, the group join and rebalances included), the steady span: seconds and
    records from the moment every member holds its share of the ``shards`` (and has
    processed a record) to the last record, and the records each member processed.
    """
    import msgspec

    ctx = mp.get_context("spawn")
    counts, held = ctx.Array("q", consumers), ctx.Array("i", consumers)
    stop = ctx.Event()
    blob = msgspec.json.encode(settings)
    procs = [
        ctx.Process(target=_child_serve, args=(blob, counts, held, i, stop))
        for i in range(consumers)
    ]
    for p in procs:
        p.start()
    start = steady = None
    steady_done = 0
    try:
        while (done := sum(counts)) < total:
            now = time.perf_counter()
            if start is None and done:
                start = now
            if steady is None and done and min(held) > 0 and sum(held) == shards:
                steady, steady_done = now, done
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("every consumer process exited before the end")
            time.sleep(0.01)
        end = time.perf_counter()
        start = start or end
        steady = steady or end
        return end - start, end - steady, total - steady_done, list(counts)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=60)


def captured_batches(paths: list[str], settings: Settings) -> tuple[float, int, list]:
    """Replay the files once; returns seconds, alerts and the scorer's input batches."""
    batches: list[list[Profile]] = []
    scorer = make_scorer(settings, make_pipeline(settings).spec)
    original = scorer.score

    def recording(profiles: list[Profile]):
        batches.append(list(profiles))
        return original(profiles)

    scorer.score = recording  # type: ignore[method-assign]
    pipe = Pipeline(settings, scorer=scorer, spec=scorer.spec)
    start = time.perf_counter()
    alerts = len(replay_files(paths, settings, pipeline=pipe).alerts)
    return time.perf_counter() - start, alerts, batches


def score_alone(batches: list[list[Profile]], detector: str) -> tuple[float, int, int]:
    """Seconds, rows and alerts of a fresh scorer (no bundle) over the captured batches."""
    settings = Settings()
    settings.scoring.detector = detector
    pipe = make_pipeline(settings, use_bundle=False)
    scorer: Scorer = pipe.scorer  # type: ignore[assignment]
    rows = alerts = 0
    start = time.perf_counter()
    for batch in batches:
        alerts += sum(s.alert is not None for s in scorer.score(batch))
        rows += len(batch)
    return time.perf_counter() - start, rows, alerts


def pod_creations(pods: int) -> list[bytes]:
    """Audit records of ``pods`` pod creations within 20 minutes, in 50 namespaces of 40
    workloads: none ends, so all but the last allowed-lateness minute's are tracked."""
    t0 = 1_715_680_800.0
    docs = []
    for i in range(pods):
        ns, name = f"ns-{i % 50}", f"app{i % 40}-{i}"
        docs.append(
            orjson.dumps(
                {
                    "kind": "Event",
                    "apiVersion": "audit.k8s.io/v1",
                    "auditID": f"c-{i}",
                    "stage": "ResponseComplete",
                    "verb": "create",
                    "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "objectRef": {"resource": "pods", "namespace": ns, "apiVersion": "v1"},
                    "responseStatus": {"code": 201},
                    "stageTimestamp": datetime.fromtimestamp(t0 + i * 1200 / pods, UTC).isoformat(),
                    "responseObject": {
                        "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns, "uid": f"u-{i}"},
                    },
                }
            )
        )
    return docs


def memory_per_entity(pods: int) -> tuple[int, float]:
    """Bytes held per live pod (tracemalloc: Python objects and numpy buffers)."""
    pipe = Pipeline(Settings())
    docs = pod_creations(pods)
    tracemalloc.start()
    for doc in docs:
        pipe.process(doc)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracked = len(pipe.table.states)
    return tracked, held / max(tracked, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument(
        "--assignor", choices=("load", "range"), default="load", help="kafka.assignor of serve"
    )
    ap.add_argument("--score-rows", type=int, default=2000, help="rows each detector scores")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument(
        "--serve-only", action="store_true", help="the raw, serve and latency rows only"
    )
    args = ap.parse_args()
    if args.write and args.serve_only:
        ap.error("--write needs the whole table, not --serve-only")

    sim = generate(SimParams(seed=args.seed, hours=args.hours))
    data = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    write(sim, data)
    paths = sorted(str(p) for p in data.glob("*.jsonl") if p.name != "labels.jsonl")
    rows: list[tuple[str, float, int, str]] = []  # name, seconds, items, note
    with bootstrap_servers() as bootstrap:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        settings = bench_topics(bootstrap, prefix, args.partitions)
        settings.kafka.assignor = args.assignor
        total = produce_simulated(settings, prefix, sim)
        rows.append(("raw kafka-python consumer", raw_consume(settings, total, False), total, ""))
        steady: dict[str, tuple[float, int]] = {}  # row name -> steady seconds, records
        for n in (1, 2):
            settings.kafka.group_id = f"{prefix}-group{n}"
            seconds, steady_s, steady_n, members = serve_group(settings, total, n, args.partitions)
            note = ""
            if n > 1:
                shares = " / ".join(f"{m / max(sum(members), 1):.1%}" for m in members)
                note = (
                    f"whole run: a late member's rebalance inside it, if any; the members"
                    f" processed {shares} of the records ({settings.kafka.assignor} assignor)"
                )
            name = f"serve, {n} consumer process(es)"
            rows.append((name, seconds, total, note))
            steady[name] = (steady_s, steady_n)
        half = total / rows[1][1] / 2
        p50, p99, n_alerts, _, detail = latency(bootstrap, sim, half, args.partitions)
    if not args.serve_only:
        seconds, alerts, batches = captured_batches(paths, Settings())
        rows.append(("replay (files, same records)", seconds, total, f"{alerts} alerts"))
        first = first_batches(batches, args.score_rows)
        for det in DETECTORS:
            seconds, n_rows, det_alerts = score_alone(first, det)
            rows.append((f"scoring alone: {det}", seconds, n_rows, f"rows/s; {det_alerts} alerts"))
        seconds, n_rows, det_alerts = score_alone(rebatched(batches, BIG_BATCH), "oif")
        rows.append(
            (
                f"scoring alone: oif, all rows {BIG_BATCH:,} to a batch",
                seconds,
                n_rows,
                f"rows/s; {det_alerts} alerts; the per-batch cost spread over more rows",
            )
        )
        tracked, per_entity = memory_per_entity(MEMORY_PODS)

    raw = rows[0][1]
    lines = [
        f"`.venv/bin/python benchmarks/bench_scale.py --hours {args.hours:g} --seed {args.seed}"
        f" --partitions {args.partitions}"
        + (f" --assignor {args.assignor}" if args.assignor != "load" else "")
        + f"` — {total:,} records, {args.partitions} partitions,"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}"
        f" ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "| what | seconds | items/s | x raw consumer time | steady items/s (records in span)"
        " | x 1 consumer (whole / steady) | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    one = rows[1]
    for name, secs, items, note in rows:
        ratio = f"{secs / raw:.1f}" if not name.startswith("scoring") else ""
        span = scale = ""
        if name in steady:
            steady_s, steady_n = steady[name]
            span = f"{steady_n / steady_s:,.0f} ({steady_n:,})"
            one_s, one_n = steady[one[0]]
            scale = f"{one[1] / secs:.2f} / {steady_n / steady_s / (one_n / one_s):.2f}"
        lines.append(
            f"| {name} | {secs:.2f} | {items / secs:,.0f} | {ratio} | {span} | {scale} | {note} |"
        )
    if not args.serve_only:
        lines.append(
            f"| memory per tracked live pod | | | | | | {per_entity / 1024:.2f} KiB held"
            f" ({tracked:,} pods, entity state only, tracemalloc) |"
        )
    lines.append(
        f"| event-to-alert latency at {half:,.0f} records/s (half of serve x1) | | | | | |"
        f" p50 {p50:.2f} s, p99 {p99:.2f} s over {n_alerts} alerts |"
    )
    lines += ["", "The slowest alerts' waits (latency run):", ""] + [f"- {d}" for d in detail]
    table = "\n".join(lines)
    print(table)
    if args.write:
        text = DOC.read_text()
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
