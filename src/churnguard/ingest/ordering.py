"""Event-time order for a bounded input (files): an external sort with bounded memory.

Real telemetry files are not in event time: CloudTrail delivery files interleave by
minutes, shippers concatenate per-source files, exporters write in delivery order. The
file commands therefore sort the whole input before the pipeline sees it: events are
collected in runs of at most ``run_events``, each run sorted in memory and, once there is
more than one, spilled to an anonymous temporary file; the runs are then k-way merged.
Memory holds one run plus one event per spilled run, whatever the input's size.

The order is total and depends only on the events themselves: event time, then the
event's content without its origin. So per-source concatenations, delivery order and
sorted files give the pipeline exactly the same sequence, and the same alerts.
"""

from __future__ import annotations

import heapq
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

import msgspec

from churnguard.ingest.events import Event

RUN_EVENTS = 200_000  # events sorted in memory per run (about 100-200 MB at most)
_LEN = struct.Struct("<I")
_content_encoder = msgspec.msgpack.Encoder()


def order_key(ev: Event) -> tuple[float, bytes]:
    """Event time, then content without origin: a total order independent of arrival."""
    origin, ev.origin = ev.origin, None
    try:
        return ev.time, _content_encoder.encode(ev)
    finally:
        ev.origin = origin


def sort_by_time(events: Iterable[Event], run_events: int = RUN_EVENTS) -> Iterator[Event]:
    """All ``events`` in :func:`order_key` order, spilling sorted runs past ``run_events``."""
    runs: list[IO[bytes]] = []
    run: list[tuple[tuple[float, bytes], Event]] = []
    try:
        for ev in events:
            run.append((order_key(ev), ev))
            if len(run) >= run_events:
                runs.append(_spill(run))
                run = []
        run.sort(key=lambda pair: pair[0])
        if not runs:
            yield from (ev for _, ev in run)
            return
        if run:
            runs.append(_spill(run))
        yield from heapq.merge(*(_read_run(f) for f in runs), key=order_key)
    finally:
        for f in runs:
            f.close()


def _spill(run: list[tuple[tuple[float, bytes], Event]]) -> IO[bytes]:
    run.sort(key=lambda pair: pair[0])
    encoder = msgspec.msgpack.Encoder()
    f = tempfile.TemporaryFile(prefix="churnguard-sort-")  # noqa: SIM115 (closed by caller)
    for _, ev in run:
        body = encoder.encode(ev)
        f.write(_LEN.pack(len(body)))
        f.write(body)
    f.seek(0)
    return f


def _read_run(f: IO[bytes]) -> Iterator[Event]:
    decoder = msgspec.msgpack.Decoder(Event)
    while header := f.read(_LEN.size):
        (size,) = _LEN.unpack(header)
        yield decoder.decode(f.read(size))
