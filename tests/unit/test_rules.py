"""The static-rule baseline: it catches the obvious and it is noisy on benign churn (the point)."""

from __future__ import annotations

from collections import Counter

import pytest

from churnguard.config import NamespaceOverride, Settings
from churnguard.offline.replay import replay_files
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import EntityRef, Profile
from churnguard.profiling.spec import FeatureSpec
from churnguard.scoring.rules import STATIC_RULES, StaticRuleScorer
from churnguard.simulate import FILES, SimParams, generate, write

T0 = 1_772_409_600.0


def profile(
    values: dict[str, float],
    *,
    kind: str = "pod",
    namespace: str | None = "batch-jobs",
    name: str = "report-gen-29532960-abcde",
    final: bool = True,
    workload: str | None = "CronJob/report-gen",
) -> Profile:
    entity = (
        EntityRef(kind="instance", instance_id=name)
        if kind == "instance"
        else EntityRef(kind="pod", namespace=namespace, pod=name, workload=workload)
    )
    return Profile(
        entity=entity,
        window_start=T0,
        window_end=T0 + 300,
        final=final,
        end_reason="deleted" if final else "window",
        spec_version="1",
        values=values,
        first_seen=T0,
        last_seen=T0 + 90,
    )


@pytest.fixture(scope="module")
def scorer(spec: FeatureSpec) -> StaticRuleScorer:
    return StaticRuleScorer(Settings(), spec)


def test_short_lived_benign_cronjob_pod_fires(scorer: StaticRuleScorer) -> None:
    """A CronJob pod cleaned up by the TTL controller 90 s after creation: benign, and the
    "deleted within 5 minutes" rule pages for it all the same."""
    (s,) = scorer.score([profile({"lifetime_s": 90.0})])
    assert s.alert is not None
    assert (s.score, s.threshold, s.level) == (1.0, 0.5, "rules")
    assert s.baseline_key == "pod-deleted-within-5-min"
    assert s.alert.baseline.level == "rules"
    assert s.alert.rules == ["pod-deleted-within-5-min"]
    assert "T1578.003" in s.alert.techniques
    (x,) = s.alert.explanation
    assert (x.feature, x.observed, x.baseline_median, x.baseline_percentile) == (
        "lifetime_s",
        90.0,
        0.0,
        100.0,
    )


def test_backup_archive_and_upload_fires_two_rules(scorer: StaticRuleScorer) -> None:
    backup = profile(
        {"archive_writes": 1.0, "egress_bytes": 4.5e8, "lifetime_s": 86400.0},
        namespace="backups",
        name="pg-backup-29532960-xyz12",
        final=False,
    )
    (s,) = scorer.score([backup])
    assert s.alert is not None
    assert s.alert.rules == ["archive-written-in-container", "egress-over-100mb"]
    assert s.baseline_key == "archive-written-in-container+egress-over-100mb"
    assert "T1560.002" in s.alert.techniques
    assert [x.feature for x in s.alert.explanation] == ["archive_writes", "egress_bytes"]


def test_instance_lifetime_rule_and_quiet_profiles(scorer: StaticRuleScorer) -> None:
    spot = profile({"lifetime_s": 1200.0}, kind="instance", name="i-0abc")
    open_window = profile({"lifetime_s": 60.0}, final=False)  # a young live pod: not ended
    long_pod = profile({"lifetime_s": 301.0, "egress_bytes": 1e8})  # both exactly at/over limit
    old_instance = profile({"lifetime_s": 7200.0}, kind="instance", name="i-0def")
    scored = scorer.score([spot, open_window, long_pod, old_instance])
    assert [s.alert is not None for s in scored] == [True, False, False, False]
    assert scored[0].alert.rules == ["instance-terminated-within-1-h"]
    assert [s.score for s in scored] == [1.0, 0.0, 0.0, 0.0]
    assert {s.baseline_key for s in scored[1:]} == {"-"}


def test_rules_are_documented_and_mutable_by_namespace(spec: FeatureSpec) -> None:
    assert all(r.doc and r.technique.startswith("T") for r in STATIC_RULES)
    settings = Settings(namespaces={"batch-*": NamespaceOverride(mute=True)})
    muted = StaticRuleScorer(settings, spec)
    (s,) = muted.score([profile({"lifetime_s": 10.0})])
    assert s.score == 1.0 and s.alert is None
    assert muted.model_version == "static-rules"
    muted.restore(muted.snapshot())  # stateless, but the drivers checkpoint every scorer


def test_static_rules_page_on_simulated_benign_churn(tmp_path, spec: FeatureSpec) -> None:
    """Two hours of CronJobs and backups, no attacks: the rules alert anyway."""
    params = SimParams(
        seed=3, hours=2, attack_rate=0, scenarios=("deployments", "cronjobs", "backups")
    )
    paths = write(generate(params), tmp_path)
    settings = Settings()
    pipe = Pipeline(settings, scorer=StaticRuleScorer(settings, spec), spec=spec)
    result = replay_files([str(paths[f]) for f in FILES], pipeline=pipe)
    fired = Counter(rule for a in result.alerts for rule in a.rules)
    assert fired["pod-deleted-within-5-min"] >= 5  # CronJob pods cleaned up after their run
    assert fired["archive-written-in-container"] >= 1  # pg-backup / logs-compact
    assert any(a.entity.namespace in ("backups", "db-backups") for a in result.alerts)
