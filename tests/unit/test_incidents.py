"""Alert folding: one page per incident, a new page for a new technique or severity."""

from __future__ import annotations

import msgspec
from scoring_fixtures import make_profile

from churnguard.alerts.alert import Alert, build_alert
from churnguard.alerts.incidents import QUIET_S, SILENT_S, Incident, Incidents
from churnguard.profiling.spec import load_spec

SPEC = load_spec()


def _alert(t: float, techniques: list[str], severity: str = "low") -> Alert:
    alert = build_alert(
        make_profile(t=t, values={"beacon_regularity": 0.99}),
        score=0.99,
        threshold=0.95,
        level="workload",
        baseline_key="wl:shop/Deployment/web:pod",
        top=[],
        spec=SPEC,
        rules=[],
        rule_techniques=[],
        model_version="test",
    )
    return msgspec.structs.replace(alert, techniques=techniques, severity=severity)


def test_repeats_fold_and_new_techniques_or_severity_page() -> None:
    inc = Incidents()
    assert not inc.note("shop/web-1", 300.0, _alert(0.0, ["T1071"]))
    assert inc.note("shop/web-1", 600.0, _alert(300.0, ["T1071"]))  # same story: folded
    assert not inc.note("shop/web-1", 900.0, _alert(600.0, ["T1071", "T1560.002"]))
    assert inc.note("shop/web-1", 1200.0, _alert(900.0, ["T1560.002"]))
    assert not inc.note("shop/web-1", 1500.0, _alert(1200.0, ["T1071"], severity="high"))
    assert inc.note("shop/web-1", 1800.0, _alert(1500.0, ["T1071"], severity="medium"))
    assert not inc.note("shop/other", 1800.0, _alert(1500.0, ["T1071"]))  # per entity


def test_an_incident_closes_after_a_quiet_spell_or_when_the_entity_ends() -> None:
    inc = Incidents()
    inc.note("shop/web-1", 300.0, _alert(0.0, ["T1071"]))
    inc.calm("shop/web-1", 300.0)
    assert not inc.note("shop/web-1", 300.0 + QUIET_S + 1, _alert(QUIET_S, ["T1071"]))
    inc.close("shop/web-1")
    assert "shop/web-1" not in inc
    assert not inc.note("shop/web-1", 5000.0, _alert(4700.0, ["T1071"]))


def test_export_load_round_trip() -> None:
    inc = Incidents()
    inc.note("shop/web-1", 300.0, _alert(0.0, ["T1071"]))
    data = msgspec.msgpack.decode(msgspec.msgpack.encode(inc.export()), type=dict[str, Incident])
    again = Incidents()
    again.load(data)
    assert again.note("shop/web-1", 600.0, _alert(300.0, ["T1071"]))


def test_silence_is_not_calm_an_hourly_entity_keeps_one_incident() -> None:
    """A poller profiled once an hour that alerts each time is one story (it paged once per
    poll when 30 min of silence closed the incident); a calm spell or a long silence ends
    it."""
    inc = Incidents()
    assert not inc.note("docs/notifier", 300.0, _alert(0.0, ["T1213"], "high"))
    for hour in range(1, 5):  # no window in between: silent, not calm
        t = 300.0 + 3600.0 * hour
        assert inc.note("docs/notifier", t, _alert(t - 300.0, ["T1213"], "medium"))
    last = 300.0 + 3600.0 * 4
    inc.calm("docs/notifier", last)  # profiled from here on without alerting
    assert inc.note("docs/notifier", last + QUIET_S - 1, _alert(last, ["T1213"]))
    inc.calm("docs/notifier", last + QUIET_S)
    assert not inc.note("docs/notifier", last + 2 * QUIET_S + 1, _alert(last, ["T1213"]))
    inc.note("shop/web-1", 300.0, _alert(0.0, ["T1071"]))
    assert not inc.note("shop/web-1", 300.0 + SILENT_S + 1, _alert(SILENT_S, ["T1071"]))


def test_a_calm_window_before_the_last_alert_does_not_start_the_quiet_spell() -> None:
    inc = Incidents()
    inc.note("shop/web-1", 600.0, _alert(300.0, ["T1071"]))
    inc.calm("shop/web-1", 0.0)  # a row of an earlier window scored after the alert
    assert inc.note("shop/web-1", 600.0 + QUIET_S + 60, _alert(QUIET_S, ["T1071"]))
