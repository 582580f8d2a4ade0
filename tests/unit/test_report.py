"""evaluate --report: the HTML report renders from demo-style data, in files mode and with the
static rules beside churnguard under --simulate; without matplotlib it says so in one line."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import pytest

from churnguard.cli import main
from churnguard.errors import ConfigError
from churnguard.offline.evaluate import FalseEntity, Label, Miss, Report, evaluate
from churnguard.offline.plots import require_matplotlib
from churnguard.offline.report import benign_kind, false_alerts_by_kind, scenario_recall

pytest.importorskip("matplotlib", reason="pip install '.[report]'")
FILES = ("k8s_audit", "cloudtrail", "falco", "tetragon", "flows")
PNG = b"\x89PNG\r\n\x1a\n"


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"base64,([A-Za-z0-9+/=]+)", page)]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """What `churnguard demo --keep-dir` keeps, replayed with the capture on (docs/evaluation)."""
    out = tmp_path_factory.mktemp("demo")
    assert main(["simulate", "--out", str(out), "--hours", "3", "--seed", "7", "--quiet"]) == 0
    inputs = [str(out / f"{f}.jsonl") for f in FILES]
    alerts, capture = str(out / "alerts.jsonl"), str(out / "capture.jsonl")
    assert main(["replay", *inputs, "--alerts", alerts, "--capture", capture, "--quiet"]) == 0
    return out


def test_report_renders_from_demo_data(demo_data: Path, tmp_path: Path) -> None:
    d = demo_data
    code = main(
        [
            "evaluate",
            "--labels",
            str(d / "labels.jsonl"),
            "--alerts",
            str(d / "alerts.jsonl"),
            "--summary",
            str(d / "summary.json"),
            "--capture",
            str(d / "capture.jsonl"),
            "--report",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0
    page = (tmp_path / "r" / "index.html").read_text()
    for heading in (
        "Side by side",
        "Recall per attack scenario",
        "False alerts per benign kind",
        "scores and thresholds per namespace",
        "alerts over time",
    ):
        assert heading in page
    pictures = images(page)
    assert len(pictures) == 4 and all(p.startswith(PNG) for p in pictures)
    assert re.search(r"<td>attack-[a-z-]+</td><td>\d+/\d+</td>", page)  # a scenario row


def test_simulate_report_puts_the_static_rules_beside_churnguard(tmp_path: Path) -> None:
    code = main(
        [
            "evaluate",
            "--simulate",
            "--hours",
            "2",
            "--seed",
            "7",
            "--system",
            "churnguard",
            "rules",
            "--quiet",
            "--report",
            str(tmp_path),
        ]
    )
    assert code == 0
    page = (tmp_path / "index.html").read_text()
    head = re.search(r"<thead>(.*?)</thead>", page).group(1)
    assert "churnguard" in head and "static rules" in head
    assert len(images(page)) >= 3


def test_scenario_recall_and_benign_kinds_come_from_the_report() -> None:
    labels = [
        Label(
            kind="pod",
            technique="T1213",
            start=0,
            end=1,
            namespace="a",
            pod=f"p{i}",
            scenario="collection",
        )
        for i in range(3)
    ]
    report = evaluate(labels, [])
    assert scenario_recall(report, labels) == {"collection": (0, 3)}
    missed_one = Report(**{**_fields(report), "missed": [Miss(label=labels[0])]})
    assert scenario_recall(missed_one, labels) == {"collection": (2, 3)}
    kinds = [
        FalseEntity(entity="i", kind="instance", alerts=2),
        FalseEntity(entity="a/x", kind="pod", alerts=1, workload="CronJob/backup"),
        FalseEntity(entity="a/y", kind="pod", alerts=4),
    ]
    assert [benign_kind(k) for k in kinds] == ["instance", "CronJob", "bare pod"]
    with_false = Report(**{**_fields(report), "false_entities": kinds})
    assert false_alerts_by_kind(with_false) == {"CronJob": 1, "bare pod": 4, "instance": 2}


def _fields(report: Report) -> dict:
    return {f: getattr(report, f) for f in report.__struct_fields__}


def test_without_matplotlib_the_report_says_what_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"churnguard\[report\]"):
        require_matplotlib()
    code = main(["evaluate", "--simulate", "--report", "x"])
    assert code == 2
    assert "matplotlib" in capsys.readouterr().err
