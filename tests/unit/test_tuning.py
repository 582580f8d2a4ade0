"""Per-namespace threshold suggestions on synthetic captures: quantiles, volume, labels, config."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from churnguard.cli import main
from churnguard.config import load_settings
from churnguard.errors import ConfigError
from churnguard.offline import tuning
from churnguard.offline.capture import CaptureRow
from churnguard.profiling.profile import EntityRef, Profile
from churnguard.scoring.baselines import CLOUD_NAMESPACE

T0 = 1_772_409_600.0  # 2026-03-02T00:00:00Z


def row(
    ns: str | None, pod: str, score: float, t: float = T0, level: str = "namespace"
) -> CaptureRow:
    entity = (
        EntityRef(kind="instance", instance_id=pod)
        if ns is None
        else EntityRef(kind="pod", namespace=ns, pod=pod)
    )
    profile = Profile(
        entity=entity,
        window_start=t,
        window_end=t + 300.0,
        final=True,
        end_reason="deleted",
        spec_version="1",
        values={"lifetime_s": 300.0},
        first_seen=t,
        last_seen=t + 300.0,
    )
    return CaptureRow(
        profile=profile,
        score=score,
        threshold=0.6,
        level=level,
        baseline_key=f"ns:{ns}:pod",
        alerted=False,
    )


@pytest.fixture
def capture() -> list[CaptureRow]:
    """Half a day: 'web' scores 0.00..0.99 (one row per pod), 'ci' all low, one instance.

    Plus 'web' rows scored in learning mode (score 0): the service never thresholds those,
    so they must not drag the quantile down.
    """
    rng = np.random.default_rng(3)
    rows = [row("web", f"web-{i}", i / 100, T0 + i * 216.0) for i in range(100)]
    rows += [
        row("ci", f"runner-{i}", float(s), T0 + i * 432.0)
        for i, s in enumerate(rng.uniform(0.1, 0.3, 100))
    ]
    rows.append(row(None, "i-0abc", 0.95, T0 + 43_200.0 - 300.0))
    rows += [row("web", f"young-{i}", 0.0, T0, level="learning") for i in range(50)]
    return rows


def write_capture(path: Path, rows: list[CaptureRow]) -> Path:
    enc = msgspec.json.Encoder()
    path.write_bytes(b"".join(enc.encode(r) + b"\n" for r in rows))
    return path


def label(ns: str | None, pod: str | None, instance_id: str | None, technique: str) -> dict:
    kind = "pod" if instance_id is None else "instance"
    return {
        "kind": kind,
        "namespace": ns,
        "pod": pod,
        "instance_id": instance_id,
        "technique": technique,
        "scenario": "attack",
        "start": T0,
        "end": T0 + 1.0,
    }


def write_labels(path: Path) -> Path:
    labels = [
        label("web", "web-99", None, "T1071"),
        label("web", "web-50", None, "T1213"),
        label(None, None, "i-0abc", "T1578.003"),
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in labels))
    return path


def test_threshold_is_the_score_quantile_floored(capture: list[CaptureRow]) -> None:
    by_ns = {s.namespace: s for s in tuning.suggest(capture, 0.05, min_score=0.5)}
    web_scores = np.arange(100) / 100
    # an observed score, as the service's streaming quantile (method="higher")
    assert by_ns["web"].quantile == pytest.approx(np.quantile(web_scores, 0.95, method="higher"))
    assert by_ns["web"].threshold == pytest.approx(0.95)
    assert by_ns["web"].profiles == 100
    # 'ci' never scores above 0.3: its quantile is below the floor, so the floor wins
    assert by_ns["ci"].quantile < 0.3
    assert by_ns["ci"].threshold == 0.5
    assert by_ns["ci"].at.alerting_profiles == 0
    assert by_ns[CLOUD_NAMESPACE].profiles == 1


def test_alert_volume_is_per_day_of_captured_event_time(capture: list[CaptureRow]) -> None:
    web = next(s for s in tuning.suggest(capture, 0.05, min_score=0.0) if s.namespace == "web")
    # 0.95..0.99 reach the 0.95 threshold: 5 profiles in the capture's 12 hours = 10/day
    assert tuning.capture_span_days(capture) == pytest.approx(0.5)
    assert web.at.alerting_profiles == 5
    assert web.at.alerts_per_day == pytest.approx(10.0)


def test_precision_recall_with_labels(tmp_path: Path, capture: list[CaptureRow]) -> None:
    labels = tuning.read_labels(write_labels(tmp_path / "labels.jsonl"))
    assert labels == {"web": {"web/web-99", "web/web-50"}, CLOUD_NAMESPACE: {"instance/i-0abc"}}
    by_ns = {s.namespace: s for s in tuning.suggest(capture, 0.05, min_score=0.0, labels=labels)}
    web = by_ns["web"].at
    # flagged: web-95..web-99; of the two malicious pods only web-99 is among them
    assert (web.flagged_entities, web.true_positives, web.malicious_entities) == (5, 1, 2)
    assert web.precision == pytest.approx(0.2)
    assert web.recall == pytest.approx(0.5)
    assert by_ns["ci"].at.precision == 0.0  # five benign runners flagged, nothing to catch
    assert by_ns["ci"].at.recall is None
    floored = tuning.suggest(capture, 0.05, min_score=0.5, labels=labels)
    assert next(s for s in floored if s.namespace == "ci").at.precision is None  # none flagged
    assert by_ns[CLOUD_NAMESPACE].at.recall == 1.0


def test_sweep_is_monotone(capture: list[CaptureRow]) -> None:
    web = tuning.NamespaceScores(tuning.by_namespace(capture)["web"], 0.5)
    points = web.sweep(np.linspace(0, 1, 11), {"web/web-99"})
    volumes = [p.alerts_per_day for p in points]
    assert volumes == sorted(volumes, reverse=True)
    assert points[0].alerting_profiles == 100 and points[-1].alerting_profiles == 0
    assert points[0].recall == 1.0 and points[-1].recall == 0.0


def test_config_fragment_loads_and_overrides(tmp_path: Path) -> None:
    path = tuning.write_config(
        tmp_path / "conf" / "thresholds.toml",
        {"web": 0.71, "ci-runners": 0.8, CLOUD_NAMESPACE: 0.9},
        header=["made by a test"],
    )
    settings = load_settings(path)
    assert settings.namespace_override("web").threshold == pytest.approx(0.71)
    assert settings.namespace_override("ci-runners").threshold == pytest.approx(0.8)
    assert settings.namespace_override("other") is None
    assert settings.namespace_override(CLOUD_NAMESPACE).threshold == pytest.approx(0.9)
    assert path.read_text().startswith("# made by a test")


def test_bad_target_rate_is_a_config_error(capture: list[CaptureRow]) -> None:
    with pytest.raises(ConfigError):
        tuning.suggest(capture, 1.5, min_score=0.6)


def test_cli_suggest_prints_and_writes_config(
    tmp_path: Path, capture: list[CaptureRow], capsys
) -> None:
    feats = write_capture(tmp_path / "rows.jsonl", capture)
    labels = write_labels(tmp_path / "labels.jsonl")
    out = tmp_path / "ns.toml"
    argv = [
        "thresholds",
        "suggest",
        "--features",
        str(feats),
        "--target-rate",
        "0.05",
        "--labels",
        str(labels),
        "--min-score",
        "0.2",
        "--write-config",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    web_line = next(line for line in printed.splitlines() if line.startswith("web "))
    assert "0.9500" in web_line and "0.200" in web_line and "0.500" in web_line
    assert "precision" in printed and f"wrote {out}" in printed
    settings = load_settings(out)
    assert settings.namespace_override("web").threshold == pytest.approx(0.95)
    assert settings.namespace_override("ci").threshold == pytest.approx(0.3, abs=0.1)


def test_cli_suggest_refuses_a_non_capture(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"not": "a capture row"}\n')
    code = main(["thresholds", "suggest", "--features", str(bad), "--target-rate", "0.01"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not a feature capture" in err and "Traceback" not in err
