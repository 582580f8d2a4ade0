"""serve writes the configured alert format to the alerts topic, with the ids replay makes."""

from __future__ import annotations

import msgspec
import orjson
import pytest
from helpers import read_topic
from standin import StandinScorer
from telemetry import T0, audit, pod_stream

from churnguard.alerts.alert import Alert, BaselineRef, Window, iso
from churnguard.alerts.formats import ALERT_ID_FIELD, alert_id_of
from churnguard.config import Settings
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Pipeline
from churnguard.service.producing import produce_records

pytestmark = pytest.mark.integration


class TypedStandinScorer(StandinScorer):
    """The stand-in's decisions as typed alerts (the formats need every field of one)."""

    def score(self, profiles):
        out = super().score(profiles)
        for scored in out:
            a = scored.alert
            if a is not None:
                scored.alert = Alert(
                    alert_id=a.alert_id, summary=f"stand-in {a.entity.key()}", entity=a.entity,
                    score=a.score, threshold=0.9, baseline=BaselineRef(level="standin", key="-"),
                    severity=a.severity, techniques=["T1578.003"], explanation=[], evidence=[],
                    first_seen=iso(a.last_seen), last_seen=iso(a.last_seen),
                    emitted_at=iso(a.last_seen), window=Window(start=a.last_seen, end=a.last_seen),
                    response=[],
                )  # fmt: skip
        return out


def typed_standin(settings: Settings) -> Pipeline:
    return Pipeline(settings, scorer=TypedStandinScorer())


@pytest.mark.parametrize("fmt", ["ocsf", "falco"])
def test_serve_publishes_the_configured_format_with_replay_ids(
    fmt, make_settings, start_service, tmp_path
):
    settings = make_settings(partitions=1)
    settings.alerts.format = fmt
    topic = next(iter(settings.kafka.input_topics))
    stream = pod_stream(40, 2)
    stream += [
        (f"ns-{i}", orjson.dumps(audit("create", f"ns-{i}", "sentinel", T0 + 90_000, "x")))
        for i in range(2)
    ]
    produce_records(settings.kafka, topic, ((ns.encode(), r) for ns, r in stream))
    running = start_service(settings, typed_standin)
    running.wait_caught_up()
    running.close()

    published = [
        msgspec.json.decode(r.value) for r in read_topic(settings, settings.kafka.alerts_topic)
    ]
    if fmt == "ocsf":
        assert all(d["class_uid"] == 2004 for d in published)
    else:
        assert all(ALERT_ID_FIELD in d["output_fields"] and d["priority"] for d in published)
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(r for _, r in stream) + b"\n")
    replayed = replay_files([str(path)], settings, pipeline=typed_standin(settings)).alerts
    assert published and sorted(alert_id_of(d) for d in published) == sorted(
        a.alert_id for a in replayed
    )
    metrics = running.service.metrics.registry
    named = sum(
        s.value
        for family in metrics.collect()
        if family.name == "churnguard_alert_techniques"
        for s in family.samples
        if s.name.endswith("_total")
    )
    assert named >= len(published)  # every alert names at least one technique
