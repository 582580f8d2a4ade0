"""deploy/: the Kubernetes manifests validate against the API schemas, the Grafana dashboard and
the Prometheus rules load, parse as PromQL and name only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml

from churnguard.config import load_settings
from churnguard.service.metrics import ServiceMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
DASHBOARD = DEPLOY / "grafana" / "churnguard-dashboard.json"
RULES = DEPLOY / "prometheus" / "churnguard-rules.yaml"
K8S_VERSION = "1.30"  # a version every supported cluster has reached
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$job": ".*"}


def exported_series() -> set[str]:
    """Every series name the service's registry can expose (counters, histograms expanded)."""
    names: set[str] = set()
    for family in ServiceMetrics().registry.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
        }.get(family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def selectors(node: Any) -> set[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    if type(node).__name__ == "VectorSelector":
        return {node.name}
    found: set[str] = set()
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, int | float | str):
            found |= selectors(child)
    for child in getattr(node, "args", None) or ():
        found |= selectors(child)
    return found


def test_selector_walk_finds_nested_metrics() -> None:
    expr = promql_parser.parse(
        "sum by (t) (rate(a_total[5m])) / scalar(sum(b) > 0)"
        " and histogram_quantile(0.9, rate(c[1m]))"
    )
    assert selectors(expr) == {"a_total", "b", "c"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_manifest_validation_catches_mistakes() -> None:
    doc = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_configmap_holds_a_valid_churnguard_config(tmp_path: Path) -> None:
    doc = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    config = tmp_path / "churnguard.toml"
    config.write_text(doc["data"]["churnguard.toml"])
    settings = load_settings(config, env={})
    assert settings.metrics.port == 9108


def test_dashboard_queries_parse_and_use_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "churnguard" and dashboard["panels"]
    series = exported_series()
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            names = selectors(promql_parser.parse(expr))
            assert names <= series, (panel["title"], names - series)
            used |= names
    # what the issue asks the dashboard to show
    for needed in ("churnguard_records_consumed_total", "churnguard_consumer_lag",
                   "churnguard_records_rejected_total", "churnguard_late_events_total",
                   "churnguard_alerts_total", "churnguard_alert_techniques_total",
                   "churnguard_processing_latency_seconds_bucket", "churnguard_entities_tracked",
                   "churnguard_model_info"):  # fmt: skip
        assert needed in used, needed
    grid = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(grid) == len(set(grid)), "panels overlap"


def test_alerting_rules_parse_and_use_exported_metrics() -> None:
    rules = yaml.safe_load(RULES.read_text())
    series = exported_series()
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = selectors(promql_parser.parse(rule["expr"]))
            assert names and names <= series, (rule["alert"], names - series)
            assert re.fullmatch(r"\d+[smhdwy]", rule.get("for", "0s"))
            assert rule["labels"]["severity"] in ("warning", "critical")
            for text in rule["annotations"].values():
                assert text.count("{{") == text.count("}}")
            alerts[rule["alert"]] = names
    assert "churnguard_consumer_lag" in alerts["ChurnguardLagGrowing"]
    assert "churnguard_records_rejected_total" in alerts["ChurnguardDeadLettersSpiking"]
    assert "churnguard_records_consumed_total" in alerts["ChurnguardNoInput"]
    assert alerts["ChurnguardModelRefused"] == {"churnguard_model_refused_total"}


def test_promql_syntax_errors_are_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(churnguard_records_consumed_total[5m])")
