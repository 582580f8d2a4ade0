"""One input partition number's state: its pipeline, offsets and the alert-id rule.

The alert-id rule lives here alone: which ids a shard remembers (to drop alerts that
re-processing after a crash makes again) and when it may forget one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kafka import TopicPartition

from churnguard.ingest.events import Origin
from churnguard.pipeline import TICK_S, Pipeline


@dataclass
class Shard:
    """One input partition number: its pipeline and what it has processed."""

    key: str  # its checkpoint key (group, number, topics); also tags its alerts
    number: int
    pipeline: Pipeline
    offsets: dict[str, int]  # input topic -> next offset to process
    alert_ids: dict[str, float] = field(default_factory=dict)  # id -> event clock when produced
    dirty: bool = False  # processed something since its last checkpoint
    # repartitioned input: next offset per original input ("topic[partition]") seen here
    origins: dict[str, int] = field(default_factory=dict)
    idle_inputs: set[str] = field(default_factory=set)  # original inputs read to their end
    inputs: frozenset[str] = frozenset()  # repartitioned: every original input, by name

    def partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, self.number) for t in sorted(self.offsets)]

    def first_time(self, origin: Origin) -> bool:
        """False for a record routed here before (a restarted router routes some again).

        A router keeps each input partition's order, so a shard sees every original input's
        records in offset order: anything below the next expected offset is a copy.
        """
        name = f"{origin.source}[{origin.partition}]"
        offset = origin.offset if origin.offset is not None else 0
        if offset < self.origins.get(name, 0):
            return False
        self.origins[name] = offset + 1
        return True

    def routed_in_full(self) -> bool:
        """Repartitioned: every original input's router said, after its last record here,
        that the input is read to its end and routed (nothing of it is still to come).

        A router produces its markers after the records they cover, on the same partition,
        and a record routed after an "idle" marker clears it again; so once this holds the
        shard has processed every record of every input there is, and its watermark (which
        the same markers moved) has emitted what a shard holding them all would.
        """
        return self.inputs <= self.idle_inputs

    def remember(self, alert_id: str) -> bool:
        """Note an alert id as produced now; False when it was produced before (a re-make)."""
        if alert_id in self.alert_ids:
            return False
        self.alert_ids[alert_id] = self.pipeline.max_time
        return True


def recent_alert_ids(shard: Shard) -> dict[str, float]:
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
