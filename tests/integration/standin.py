"""A deterministic stand-in scorer for the driver tests: the real Pipeline, a tiny scorer.

It alerts on every pod deleted by a person (what the tests' streams are made of), with the
alert id derived from the profile, so the driver's delivery guarantees can be checked on
ids without depending on a learned model. Its state (how many profiles it saw) is
checkpointed like a real scorer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from churnguard.config import Settings
from churnguard.ingest.events import Origin
from churnguard.pipeline import Output, Pipeline
from churnguard.profiling.profile import EntityRef, Profile


class StandinAlert(msgspec.Struct, kw_only=True):
    alert_id: str
    entity: EntityRef
    severity: str
    score: float
    last_seen: float
    techniques: list[str] = msgspec.field(default_factory=lambda: ["T1578.003"])  # metrics count


class StandinScored(msgspec.Struct, kw_only=True):
    profile: Profile
    level: str
    alert: StandinAlert | None
    folded: bool = False  # the stand-in pages every time: nothing is folded
    campaign: StandinAlert | None = None  # nor does it track campaigns


class StandinScorer:
    def __init__(self) -> None:
        self.seen = 0

    def score(self, profiles: list[Profile]) -> list[StandinScored]:
        out = []
        for p in profiles:
            self.seen += 1
            alert = None
            if p.final and p.deleter_kind == "person":
                alert = StandinAlert(
                    alert_id=f"a:{p.profile_id}",
                    entity=p.entity,
                    severity="high",
                    score=1.0,
                    last_seen=p.last_seen,
                )
            out.append(StandinScored(profile=p, level="standin", alert=alert))
        return out

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.seen)

    def restore(self, data: bytes) -> None:
        self.seen = msgspec.msgpack.decode(data, type=int)


class ShardWideScorer(StandinScorer):
    """The stand-in with state that spans namespaces, as the cluster baseline and the
    campaign memory have: an alert's id also counts the profiles its pipeline scored before
    it. Its ids are those of one shard's profile sequence, in order, so they tell apart one
    pipeline from several, and a shard that saw its profiles in another order."""

    def score(self, profiles: list[Profile]) -> list[StandinScored]:
        out = []
        for p in profiles:
            (one,) = super().score([p])
            if one.alert is not None:
                one.alert.alert_id = f"{one.alert.alert_id}@{self.seen}"
            out.append(one)
        return out


SCORERS = {"standin": StandinScorer, "shard-wide": ShardWideScorer}


def standin_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings, scorer=StandinScorer())


def shard_wide_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings, scorer=ShardWideScorer())


class SlowPipeline(Pipeline):
    """The stand-in pipeline, sleeping before every record (a slower consumer)."""

    def __init__(self, settings: Settings, delay_s: float, scorer: str = "standin") -> None:
        super().__init__(settings, scorer=SCORERS[scorer]())
        self.delay_s = delay_s

    def process(
        self, raw: bytes | str, origin: Origin | None = None, pinned: str | None = None
    ) -> Output:
        time.sleep(self.delay_s)
        return super().process(raw, origin, pinned)


def slowed(delay_s: float, scorer: str = "standin") -> Callable[[Settings], Pipeline]:
    """A pipeline factory for the stand-in pipeline slowed to ``delay_s`` per record."""
    return lambda settings: SlowPipeline(settings, delay_s, scorer)
