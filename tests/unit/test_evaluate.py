"""Metrics on hand-made labels and alerts, the side-by-side view, and the evaluate command."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from churnguard.alerts.alert import Alert, BaselineRef, Window
from churnguard.cli import main
from churnguard.config import Settings
from churnguard.offline.evaluate import (
    Label,
    Report,
    _measured_alerts,
    compare_on_simulation,
    compare_on_simulations,
    evaluate,
    format_reports,
    pool,
)
from churnguard.profiling.profile import EntityRef, Profile
from churnguard.simulate import FILES, SimParams, generate, write

T0 = 1_772_409_600.0


def pod_label(ns: str, name: str, technique: str, start: float = 0.0) -> dict:
    return {"kind": "pod", "namespace": ns, "pod": name, "instance_id": None,
            "technique": technique, "scenario": "attack-x", "start": T0 + start,
            "end": T0 + start + 600}  # fmt: skip


def instance_label(instance_id: str, start: float = 0.0) -> dict:
    return {"kind": "instance", "namespace": None, "pod": None, "instance_id": instance_id,
            "technique": "T1578.003", "scenario": "attack-instance-evasion",
            "start": T0 + start, "end": T0 + start + 600}  # fmt: skip


def entity(key: str) -> EntityRef:
    if key.startswith("i-"):
        return EntityRef(kind="instance", instance_id=key)
    ns, name = key.split("/")
    return EntityRef(kind="pod", namespace=ns, pod=name)


def alert(key: str, end: float, *, level: str = "namespace", aid: str | None = None) -> Alert:
    return Alert(
        alert_id=aid or f"{key}@{end}",
        summary=key,
        entity=entity(key),
        score=0.9,
        threshold=0.8,
        baseline=BaselineRef(level=level, key="ns"),
        severity="medium",
        techniques=["T1578.003"],
        explanation=[],
        evidence=[],
        first_seen="",
        last_seen="",
        emitted_at="",
        window=Window(start=T0 + end - 300, end=T0 + end),
        response=[],
    )


@dataclass
class Row:
    """What the metrics read from a Scored (or capture) row."""

    profile: Profile
    level: str
    score: float = 0.5
    threshold: float = 0.9


def row(key: str, end: float, level: str = "namespace", score: float = 0.5) -> Row:
    p = Profile(entity=entity(key), window_start=T0 + end - 300, window_end=T0 + end,
                final=False, end_reason="window", spec_version="1", values={},
                first_seen=T0, last_seen=T0 + end)  # fmt: skip
    return Row(p, level, score)


LABELS = [
    pod_label("web", "dbg-1", "T1578.003"),
    pod_label("orders-api", "api-1", "T1560.002", start=1000),
    instance_label("i-0aaa"),
    pod_label("payments-api", "api-2", "T1071"),  # never alerted: missed
]


def test_recall_per_technique_precision_false_alerts_and_delay() -> None:
    alerts = [
        alert("web/dbg-1", 120),
        alert("web/dbg-1", 120),  # redelivered: same id, counted once
        alert("web/dbg-1", 420),  # a second window of the same attack
        alert("orders-api/api-1", 1300),
        alert("i-0aaa", 900),
        alert("batch-jobs/report-gen-1", 100),
        alert("ci-runners/runner-1", 200),
        alert("ci-runners/runner-1", 500),
    ]
    r = evaluate(LABELS, alerts, benign_entities=2000)
    assert (r.labels, r.detected, r.recall) == (4, 3, 0.75)
    assert {t: (x.detected, x.labels) for t, x in r.by_technique.items()} == {
        "T1071": (0, 1),
        "T1560.002": (1, 1),
        "T1578.003": (2, 2),
    }
    assert r.by_technique["T1578.003"].recall == 1.0 and r.by_technique["T1071"].recall == 0.0
    assert (r.alerts, r.true_alerts, r.false_alerts) == (7, 4, 3)
    assert r.precision == pytest.approx(4 / 7)
    assert r.benign_entities_alerted == 2
    assert r.false_per_1k_entities == pytest.approx(1.5)
    assert r.false_entities[0].entity == "ci-runners/runner-1" and r.false_entities[0].alerts == 2
    # delay = first matching alert's window end - label start: 120, 300, 900 s
    assert r.delays_s == [120.0, 300.0, 900.0]
    assert (r.delay_median_s, r.delay_max_s) == (300.0, 900.0)
    assert [m.label.key() for m in r.missed] == ["payments-api/api-2"]
    assert r.benign_profiles is None and r.false_per_1k_profiles is None


def test_pods_match_by_namespace_and_name_instances_by_id() -> None:
    alerts = [
        alert("other-ns/dbg-1", 120),  # same pod name, other namespace: not the labelled pod
        alert("web/i-0aaa", 120),  # a pod named like the instance: not the instance
    ]
    r = evaluate(LABELS[:1] + LABELS[2:3], alerts)
    assert r.detected == 0 and r.false_alerts == 2 and r.precision == 0.0
    r = evaluate(LABELS[2:3], [alert("i-0aaa", 400)])
    assert r.detected == 1 and r.false_alerts == 0


def test_alert_closed_before_the_attack_began_is_false() -> None:
    """A hijacked long-running pod: a window that ended before the attack cannot show it."""
    before, after = alert("orders-api/api-1", 900), alert("orders-api/api-1", 1500)
    r = evaluate([LABELS[1]], [before])
    assert r.detected == 0 and r.false_alerts == 1
    r = evaluate([LABELS[1]], [before, after])
    assert r.detected == 1 and r.false_alerts == 1 and r.delays_s == [500.0]


def test_false_alerts_per_1000_benign_profiles_after_learning() -> None:
    alerts = [
        alert("web/dbg-1", 120),  # true
        alert("web/web-7", 300),  # false, after learning
        alert("new-ns/svc-1", 300, level="learning"),  # false, but during learning mode
    ]
    scored = (
        [row("web/web-7", 300 * i) for i in range(1, 1500)]
        + [row("web/dbg-1", 120)]  # the attack's own profile is not benign
        + [row("new-ns/svc-1", 300 * i, level="learning") for i in range(1, 600)]
        + [row("web/web-8", 300)]
        + [row("payments-api/api-2", 300, score=0.8), row("payments-api/api-2", 600, score=0.7)]
    )
    r = evaluate(LABELS, alerts, scored=scored)
    assert r.benign_profiles == 1500
    miss = next(m for m in r.missed if m.label.technique == "T1071")  # how close it came
    assert (miss.windows, miss.best_score, miss.threshold, miss.level) == (2, 0.8, 0.9, "namespace")
    assert r.false_alerts_after_learning == 1
    assert r.false_per_1k_profiles == pytest.approx(1000 / 1500)
    assert r.false_alerts == 2  # learning-mode alerts still count as false alerts


def test_pool_sums_counts_and_recomputes_rates() -> None:
    a = evaluate(LABELS[:2], [alert("web/dbg-1", 60)], benign_entities=100)
    b = evaluate(LABELS[2:], [alert("x/y", 60), alert("i-0aaa", 200)], benign_entities=300)
    p = pool([a, b])
    assert (p.labels, p.detected, p.recall) == (4, 2, 0.5)
    assert (p.alerts, p.false_alerts, p.benign_entities) == (3, 1, 400)
    assert p.false_per_1k_entities == pytest.approx(2.5)
    assert p.by_technique["T1578.003"].labels == 2 and p.by_technique["T1578.003"].recall == 1.0
    assert p.delays_s == [60.0, 200.0]


def test_format_reports_side_by_side_with_technique_rows() -> None:
    good = evaluate(LABELS, [alert("web/dbg-1", 60), alert("i-0aaa", 60)], benign_entities=1000)
    noisy = evaluate(LABELS, [alert(f"b/p-{i}", 60) for i in range(40)], benign_entities=1000)
    text = format_reports({"churnguard": good, "static rules": noisy})
    lines = text.splitlines()
    assert lines[0].split() == ["churnguard", "static", "rules"]
    by_title = {line[:28].strip(): line[28:].split() for line in lines[1:]}
    assert by_title["T1578.003"] == ["1.00", "(2/2)", "0.00", "(0/2)"]
    assert by_title["T1071"] == ["0.00", "(0/1)", "0.00", "(0/1)"]
    assert by_title["false / 1k benign entities"] == ["0.0", "40.0"]
    assert "false / 1k benign profiles*" not in by_title  # no scored rows given


def test_report_is_json() -> None:
    r = evaluate(LABELS, [alert("web/dbg-1", 60)], benign_entities=10)
    back = msgspec.json.decode(msgspec.json.encode(r), type=Report)
    assert back == r and isinstance(back.missed[0].label, Label)


def test_compare_leaves_the_callers_settings_alone() -> None:
    settings = Settings()
    before = msgspec.json.encode(settings)
    reports = compare_on_simulation(
        SimParams(seed=1, hours=1, attack_rate=0, scenarios=("cronjobs",)),
        settings,
        systems=("static rules", "cluster-wide model"),
    )
    assert list(reports) == ["static rules", "cluster-wide model"]
    assert reports["static rules"].false_alerts > 0  # CronJob pods die young
    assert msgspec.json.encode(settings) == before


# ---- the command, on files written by the simulator ---------------------------------------


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    result = generate(SimParams(seed=11, hours=2, attack_rate=36))
    assert result.labels, "the run needs attacks to evaluate"
    write(result, out)
    return out


def test_cli_on_simulated_files_json(sim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = sim_dir / "alerts.jsonl"
    capture = sim_dir / "rows.jsonl"
    inputs = [str(sim_dir / name) for name in FILES.values()]
    args = ["replay", *inputs, "--alerts", str(alerts), "--capture", str(capture), "--no-model"]
    assert main(args) == 0
    capsys.readouterr()
    labels_path, summary_path = sim_dir / "labels.jsonl", sim_dir / "summary.json"
    args = ["evaluate", "--labels", str(labels_path), "--alerts", str(alerts),
            "--summary", str(summary_path), "--capture", str(capture), "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    labels = [json.loads(x) for x in labels_path.read_text().splitlines()]
    summary = json.loads(summary_path.read_text())
    n_alerts = len((alerts).read_text().splitlines())
    assert out["labels"] == len(labels)
    assert out["alerts"] == n_alerts == out["true_alerts"] + out["false_alerts"]
    assert out["benign_entities"] == summary["benign_entities"]
    assert out["benign_profiles"] > 0 and out["false_per_1k_profiles"] is not None
    assert set(out["by_technique"]) == {lab["technique"] for lab in labels}
    assert out["detected"] == out["labels"] - len(out["missed"])


def test_cli_simulate_several_seeds_pooled(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evaluate", "--simulate", "--seed", "1", "2", "--hours", "1", "--attack-rate", "0",
            "--scenario", "cronjobs", "--system", "rules", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["seed 1", "seed 2", "pooled"]
    seeds = [out[s]["static rules"] for s in ("seed 1", "seed 2")]
    assert all(s["false_alerts"] > 0 for s in seeds)
    assert out["pooled"]["static rules"]["false_alerts"] == sum(s["false_alerts"] for s in seeds)


def test_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, sim_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = str(sim_dir / "labels.jsonl")
    assert main(["evaluate", "--labels", labels, "--alerts", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read alerts" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"alert_id": 1}\n')
    assert main(["evaluate", "--labels", labels, "--alerts", str(bad)]) == 2
    assert f"{bad}:1" in capsys.readouterr().err
    assert main(["evaluate", "--labels", labels]) == 2
    assert "--simulate" in capsys.readouterr().err


def test_parallel_runs_give_the_serial_reports() -> None:
    """Two seeds x two systems on two workers (joblib processes) = the same runs one by one."""
    runs = [SimParams(seed=s, hours=1, namespaces=2, attack_rate=24) for s in (3, 4)]
    systems = ("churnguard", "static rules")
    serial = [compare_on_simulation(p, Settings(), systems=systems) for p in runs]
    parallel = compare_on_simulations(runs, Settings(), systems=systems, jobs=2)
    assert msgspec.json.encode(parallel) == msgspec.json.encode(serial)
    assert [list(r) for r in parallel] == [list(systems)] * 2
    assert any(r["static rules"].alerts for r in parallel)  # not two empty runs agreeing


def test_recall_per_scenario_and_false_alerts_per_benign_kind_per_day() -> None:
    labels = [pod_label("shop", "evil-1", "T1213"), instance_label("i-1")]
    alerts = [
        alert("shop/evil-1", 900),  # detects the pod label
        alert("ci/runner-1", 900),
        alert("ci/runner-1", 1900),  # another false alert on the same CI pod
        alert("shop/sre-1", 900),
        alert("shop/unlisted", 900),  # an entity the simulator did not list
    ]
    kinds = {"ci/runner-1": "ci-runners", "ci/runner-2": "ci-runners", "shop/sre-1": "sre-debug"}
    r = evaluate(labels, alerts, benign_entities=3, benign_kinds=kinds, days=2.0)
    assert {k: (v.detected, v.labels) for k, v in r.by_scenario.items()} == {
        "attack-x": (1, 1),
        "attack-instance-evasion": (0, 1),
    }
    assert r.by_scenario["attack-x"].recall == 1.0
    ci = r.by_benign_kind["ci-runners"]
    assert (ci.entities, ci.false_alerts, ci.per_day, ci.per_1k_entities) == (2, 2, 1.0, 1000.0)
    assert r.by_benign_kind["sre-debug"].per_day == 0.5
    assert r.by_benign_kind["other"].false_alerts == 1
    # pooled over two runs: counts and days add up, rates are recomputed
    both = pool([r, r])
    assert both.by_benign_kind["ci-runners"].per_day == 1.0
    assert both.by_benign_kind["ci-runners"].entities == 4
    assert both.by_scenario["attack-instance-evasion"].labels == 2
    table = format_reports({"churnguard": r})
    assert "scenario attack-instance-evasion" in table and "false/day ci-runners" in table
    assert "1.00 (2/2)" in table


def test_an_attack_going_on_at_the_cut_is_measured_with_its_warm_up_page() -> None:
    """A beacon begun in the warm-up and paged there is one open incident: its later windows
    fold into that page, so the page counts for it; other warm-up alerts stay out."""
    cut = T0 + 3600
    ongoing = pod_label("shop", "implant", "T1071", start=0.0)
    ongoing["end"] = cut + 600
    paged_early = alert("shop/implant", 300)  # window ends (T0 + ...)
    before_it = alert("shop/implant", -300)
    other_early = alert("shop/web-1", 300)
    late = alert("shop/web-2", 3660)
    kept = _measured_alerts([paged_early, before_it, other_early, late], [ongoing], cut)
    assert kept == [paged_early, late]
    report = evaluate([ongoing], kept)
    assert report.detected == 1 and report.false_alerts == 1


def test_an_attack_that_ended_in_the_warm_up_keeps_its_later_pages_out_of_false() -> None:
    """A pod hijacked minutes before the cut is not counted benign, so the pages of its
    story after the cut are that attack's: neither false alerts nor detections. A later,
    measured attack on the same entity is still detected by them."""
    cut = T0 + 3600
    ended = pod_label("shop", "notifier", "T1213", start=2700.0)  # ends T0 + 3300 < cut
    again = pod_label("shop", "cache", "T1213", start=0.0)  # ended; attacked again later
    later = pod_label("shop", "cache", "T1560.002", start=5400.0)
    before_hijack = alert("shop/notifier", 2400)  # in the warm-up, before the attack
    hijacked_pages = [alert("shop/notifier", 3900 + 3600 * i) for i in range(3)]
    cache_between = alert("shop/cache", 4000)  # after its ended attack, before the next
    cache_later = alert("shop/cache", 6000)
    benign = alert("shop/web-1", 4000)
    kept = _measured_alerts(
        [before_hijack, *hijacked_pages, cache_between, cache_later, benign],
        [ended, again, later],
        cut,
    )
    assert kept == [cache_later, benign]
    report = evaluate([later], kept)
    assert report.detected == 1 and report.false_alerts == 1
