"""Evaluation metrics on hand-made labels and alerts, the command, and the static rules."""

from __future__ import annotations

import json

import msgspec
import pytest
from scoring_fixtures import make_profile

from churnguard.alerts import Alert, BaselineRef, Window, iso
from churnguard.cli import main
from churnguard.config import Settings
from churnguard.evaluate import SYSTEMS, Label, evaluate, render_table, systems
from churnguard.featurespec import load_spec
from churnguard.profile import EntityRef
from churnguard.rules import StaticRuleScorer
from churnguard.scorer import LEARNING, Scored

T0 = 1_772_409_600.0

LABELS = [
    Label(kind="pod", namespace="shop", pod="evil-1", technique="T1578.003", start=T0, end=T0 + 60),
    Label(kind="pod", namespace="shop", pod="evil-2", technique="T1578.003", start=T0, end=T0 + 60),
    Label(kind="pod", namespace="data", pod="dump", technique="T1213", start=T0, end=T0 + 900),
    Label(kind="instance", instance_id="i-bad", technique="T1578.003", start=T0, end=T0 + 600),
]


def _alert(entity: EntityRef, at: float) -> Alert:
    return Alert(
        alert_id=f"{entity.key()}@{at}",
        summary="",
        entity=entity,
        score=0.99,
        threshold=0.9,
        baseline=BaselineRef(level="namespace", key="ns:x:pod"),
        severity="high",
        techniques=[],
        explanation=[],
        evidence=[],
        first_seen=iso(at - 300),
        last_seen=iso(at),
        emitted_at=iso(at),
        window=Window(start=at - 300, end=at),
        response=[],
    )


ALERTS = [
    _alert(EntityRef(kind="pod", namespace="shop", pod="evil-1"), T0 + 300),
    _alert(EntityRef(kind="pod", namespace="shop", pod="evil-1"), T0 + 120),  # the first one
    _alert(EntityRef(kind="instance", instance_id="i-bad"), T0 + 900),
    _alert(EntityRef(kind="pod", namespace="shop", pod="web-1"), T0 + 50),  # false
    _alert(EntityRef(kind="pod", namespace="data", pod="evil-1"), T0 + 50),  # wrong namespace
]


def test_metrics_on_hand_made_labels_and_alerts() -> None:
    r = evaluate(LABELS, ALERTS, benign_entities=500)
    assert (r.labels, r.detected, r.recall) == (4, 2, 0.5)
    assert r.recall_by_technique == {"T1578.003": 2 / 3, "T1213": 0.0}
    assert (r.alerts, r.true_alerts, r.false_alerts, r.false_alert_entities) == (5, 3, 2, 2)
    assert r.precision == 3 / 5
    assert r.false_per_1k_entities == 4.0
    assert r.delays == [120.0, 900.0]
    assert (r.delay_median_s, r.delay_max_s) == (510.0, 900.0)
    assert r.false_per_1k_profiles is None  # needs the scored rows
    d = r.as_dict()
    assert d["recall_by_technique"]["T1578.003"] == 0.6667 and d["delay_max_s"] == 900.0


def test_false_alerts_per_benign_profile_after_learning() -> None:
    def row(pod: str, level: str, alerted: bool) -> Scored:
        p = make_profile(pod=pod)
        return Scored(p, 0.5, 0.9, level, "-", _alert(p.entity, T0) if alerted else None)

    scored = [
        row("web-1", LEARNING, True),  # guard alert while learning: not counted
        row("web-2", "workload", True),
        row("web-3", "workload", False),
        row("web-4", "namespace", False),
        row("evil-1", "workload", True),  # labelled: not benign
    ]
    r = evaluate(LABELS, [], scored=scored)
    assert r.benign_profiles_after_learning == 3
    assert r.false_per_1k_profiles == pytest.approx(1000 / 3)


def test_nothing_to_divide_by_gives_none_not_zero() -> None:
    r = evaluate([], [])
    assert (r.recall, r.precision, r.false_per_1k_entities, r.delay_median_s) == (None,) * 4
    assert "-" in render_table({"x": r})


def test_command_reads_files_and_prints_json(tmp_path, capsys) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(b"\n".join(msgspec.json.encode(x) for x in LABELS) + b"\n")
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(b"".join(msgspec.json.encode(a) + b"\n" for a in ALERTS))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"benign_entities": 1000}))
    args = ["evaluate", "--labels", str(labels), "--alerts", str(alerts)]
    assert main([*args, "--summary", str(summary), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["alerts"]
    assert doc["recall"] == 0.5 and doc["false_per_1k_benign_entities"] == 2.0
    assert main(args) == 0
    assert "recall T1578.003" in capsys.readouterr().out
    assert main(["evaluate", "--labels", str(labels)]) == 2  # needs --alerts or --simulate


def test_side_by_side_systems_are_fresh_scorers() -> None:
    made = systems(Settings(), load_spec())
    assert tuple(made) == SYSTEMS
    a, b = made["churnguard"](), made["churnguard"]()
    assert a is not b
    assert made["cluster-model"]().settings.scoring.hierarchy is False
    assert made["river-hst"]().settings.scoring.detector == "hst"


@pytest.mark.parametrize(
    ("kwargs", "rules"),
    [
        (
            {"final": True, "end_reason": "deleted", "values": {"lifetime_s": 120}},
            ["pod-deleted-within-5-min"],
        ),
        ({"final": False, "values": {"lifetime_s": 120}}, []),  # still running: not a lifetime
        (
            {"values": {"archive_writes": 1, "egress_bytes": 2e8}},
            ["archive-written-in-container", "egress-over-100mb"],
        ),
        (
            {"kind": "instance", "final": True, "values": {"lifetime_s": 1800}},
            ["instance-terminated-within-1-h"],
        ),
        ({"values": {"egress_bytes": 5e7, "lifetime_s": 100}}, []),
    ],
)
def test_static_rules(kwargs: dict, rules: list[str]) -> None:
    scorer = StaticRuleScorer(Settings(), load_spec())
    [scored] = scorer.score([make_profile(**kwargs)])
    assert scored.level == "rules"
    if not rules:
        assert scored.alert is None and scored.score == 0.0
        return
    assert scored.alert is not None and scored.alert.rules == rules
    fired = [r for r in scorer.rules if r.name in rules]
    assert [x.feature for x in scored.alert.explanation] == [r.feature for r in fired]
    assert {r.technique for r in fired} <= set(scored.alert.techniques)
    assert scorer.restore(scorer.snapshot()) is None  # stateless, but checkpointable
