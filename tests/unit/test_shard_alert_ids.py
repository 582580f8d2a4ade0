"""Which alert ids a shard carries into its next checkpoint (the SIGKILL duplicate-id bug).

After a crash the next owner restores the last checkpoint, reads back the ids the dead
owner published after it, and re-processing makes those alerts again: they must still be
in the shard's id set when they are re-made, however many checkpoints happen in between.
No broker is needed: this is the id bookkeeping of :mod:`churnguard.service.shard` around a real
``Pipeline``.
"""

from __future__ import annotations

from churnguard.config import Settings
from churnguard.ingest.events import ActorKind, Event, EventKind, Origin
from churnguard.pipeline import Pipeline
from churnguard.service.shard import Shard, recent_alert_ids

T0 = 1_772_409_600.0
AUDIT, RUNTIME = "audit[0]", "runtime[0]"
_ORIGIN = Origin(source="audit", partition=0)


def _pods(n: int) -> list[Event]:
    """Pods created every 2 s and deleted by a person 240 s later, all on audit[0]."""
    events = []
    for i in range(n):
        who = {"namespace": f"ns{i % 3}", "pod": f"p{i}", "format": "test", "origin": _ORIGIN}
        events.append(Event(time=T0 + 2 * i, kind=EventKind.POD_CREATE, **who))
        events.append(Event(time=T0 + 2 * i + 240, kind=EventKind.POD_DELETE, **who,
                            actor="alice", actor_kind=ActorKind.PERSON))  # fmt: skip
    return sorted(events, key=lambda e: e.time)


def _pipeline() -> Pipeline:
    pipe = Pipeline(Settings())
    pipe.expect_sources([AUDIT, RUNTIME])
    return pipe


def test_ids_not_yet_remade_survive_checkpoints_while_the_watermark_waits() -> None:
    events = _pods(1500)
    cut = 400

    # the first owner: runtime[0] known to be caught up, so audit alone drives the watermark
    first = _pipeline()
    first.set_idle([RUNTIME])
    snapshot = b""
    after_cut: dict[str, float] = {}  # published after the checkpoint -> the owner's clock
    for i, e in enumerate(events):
        if i == cut:
            snapshot = first.snapshot()
        for p in first.ingest([e]).profiles:
            if i >= cut:
                after_cut[p.profile_id] = first.max_time
    assert len(after_cut) > 300

    # the next owner restores the checkpoint and reads back what was published after it;
    # runtime[0]'s high watermark is not known yet, so its watermark waits while audit
    # records run far ahead, and periodic checkpoints prune the id set meanwhile
    pipe = _pipeline()
    pipe.restore(snapshot)
    shard = Shard("g/0/audit+runtime", 0, pipe, {}, dict(after_cut))
    remade: list[str] = []
    for i, e in enumerate(events[cut:]):
        out = pipe.ingest([e])
        if i == 900:
            out.extend(pipe.set_idle([RUNTIME]))  # the empty input turns out to be caught up
        now = [p.profile_id for p in out.profiles if p.profile_id in after_cut]
        missing = [r for r in now if r not in shard.alert_ids]
        assert not missing, f"re-made ids forgotten before they were suppressed: {missing[:3]}"
        remade += now
        if i % 50 == 0:  # a periodic checkpoint: what it carries is all the shard remembers
            shard.alert_ids = recent_alert_ids(shard)
    assert set(remade) == set(after_cut)  # every read-back alert was re-made, and recognised


def test_ids_behind_the_watermark_are_forgotten() -> None:
    pipe = _pipeline()
    pipe.set_idle([RUNTIME])
    for e in _pods(1500):
        pipe.ingest([e])
    shard = Shard("g/0/audit+runtime", 0, pipe, {}, {"old": T0, "recent": pipe.max_time})
    assert set(recent_alert_ids(shard)) == {"recent"}  # the set stays small on a long-running shard
