"""/metrics, /healthz and /readyz over real HTTP on a loopback port."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from churnguard.service.metrics import ServiceMetrics


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def served():
    metrics = ServiceMetrics()
    server = metrics.serve_http("127.0.0.1", 0)
    yield metrics, server.port
    server.close()


def test_readiness_follows_assignment_and_catching_up(served) -> None:
    metrics, port = served
    assert _get(port, "/readyz")[0] == 503
    metrics.tick()
    assert _get(port, "/healthz") == (200, "ok\n")
    metrics.set_assignment(2)
    metrics.set_lag({("k8s-audit", 0): 5, ("k8s-audit", 1): 0})
    assert _get(port, "/readyz")[0] == 503  # assigned but behind
    metrics.set_lag({("k8s-audit", 0): 0, ("k8s-audit", 1): 0})
    assert _get(port, "/readyz") == (200, "ready\n")
    assert _get(port, "/nope")[0] == 404


def test_metrics_expose_consumption_alerts_and_lag(served) -> None:
    metrics, port = served
    metrics.records.labels("k8s-audit").inc(3)
    metrics.alerts.labels("high", "payments").inc()
    metrics.set_lag({("k8s-audit", 0): 7})
    status, body = _get(port, "/metrics")
    assert status == 200
    assert 'topic="k8s-audit"' in body and "7.0" in body
    assert 'severity="high"' in body and 'namespace="payments"' in body


def test_alerts_are_counted_by_namespace_and_technique(served) -> None:
    from churnguard.alerts.alert import Alert, BaselineRef, Window
    from churnguard.profiling.profile import EntityRef

    metrics, port = served
    alert = Alert(alert_id="a", summary="s", entity=EntityRef(kind="pod", namespace="shop"),
                  score=1.0, threshold=0.9, baseline=BaselineRef(level="workload", key="k"),
                  severity="high", techniques=["T1578.003", "T1070"], explanation=[],
                  evidence=[], first_seen="", last_seen="", emitted_at="",
                  window=Window(start=0, end=1), response=[])  # fmt: skip
    metrics.count_alert(alert)
    body = _get(port, "/metrics")[1]
    assert 'churnguard_alert_techniques_total{namespace="shop",technique="T1070"} 1.0' in body
    assert 'churnguard_alerts_total{namespace="shop",severity="high"} 1.0' in body
