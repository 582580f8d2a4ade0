"""Alerts: deterministic ids, ATT&CK mapping, explanation percentiles, severity, views."""

from __future__ import annotations

import re

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scoring_fixtures import ATTACK_VALUES, make_profile, terminated_instance

from churnguard.alerts.alert import (
    RESPONSE_STEPS,
    Alert,
    FeatureExplanation,
    alert_id,
    build_alert,
    column_stats,
    explain,
    raw_percentiles,
    render_table,
    severity_for,
    technique_evidence,
    techniques_for,
    who_line,
)
from churnguard.profiling.profile import Evidence
from churnguard.profiling.spec import FeatureSpec, load_spec

SPEC = load_spec()  # read-only; the tests that build alerts by hand share it


def _top(*features: str) -> list[FeatureExplanation]:
    return [
        FeatureExplanation(
            feature=f,
            observed=1.0,
            baseline_median=0.0,
            baseline_percentile=100.0,
            contribution=5.0,
            doc="",
        )
        for f in features
    ]


def test_alert_id_is_deterministic_and_sensitive_to_entity_window_and_spec() -> None:
    p = make_profile(t=1000.0)
    assert alert_id(p) == alert_id(make_profile(t=1000.0))
    assert re.fullmatch(r"[0-9a-f]{24}", alert_id(p))  # 96 bits of a hash, as lowercase hex
    others = [
        make_profile(t=1001.0),
        make_profile(pod="web-2", t=1000.0),
        msgspec.structs.replace(p, window_end=p.window_end + 1),
        msgspec.structs.replace(p, spec_version="2"),
    ]
    assert len({alert_id(p), *(alert_id(o) for o in others)}) == 5


def test_techniques_follow_the_dominant_features_strategies_when_evidence_backs_them() -> None:
    archive = make_profile(values={"archive_writes": 1.0, "archive_bytes": 5e7})
    assert list(techniques_for(archive, _top("archive_writes"), SPEC, [])) == ["T1560.002"]
    reads = make_profile(values={"repo_reads": 4.0, "distinct_objects_read": 30.0})
    assert list(techniques_for(reads, _top("repo_reads", "api_list"), SPEC, [])) == ["T1213"]
    beacon = make_profile(values={"beacon_regularity": 0.97})
    assert list(techniques_for(beacon, _top("beacon_regularity"), SPEC, [])) == ["T1071"]
    deleted = make_profile(
        values={"deleted_by_person": 1.0, "lifetime_s": 120.0, "exec_to_delete_s": 30.0},
        final=True,
        deleted_by="erin@corp.example",
        deleter_kind="person",
    )
    backed = techniques_for(deleted, _top("lifetime_s"), SPEC, [])
    assert list(backed) == ["T1578.003", "T1070"]
    assert "erin@corp.example" in backed["T1578.003"][0] and "30 s after" in backed["T1578.003"][0]
    exfil = make_profile(
        values={"archive_writes": 1.0, "new_destinations": 1.0, "egress_external_bytes": 9e7}
    )
    backed = techniques_for(exfil, _top("archive_bytes"), SPEC, [])
    assert list(backed) == ["T1560.002", "T1041"]
    assert "new to the namespace" in backed["T1041"][0]
    # guard techniques are added, duplicates dropped, order kept
    both = make_profile(values={"archive_writes": 1.0, "beacon_regularity": 0.9})
    assert list(techniques_for(both, _top("archive_writes"), SPEC, ["T1560.002", "T1071"])) == [
        "T1560.002",
        "T1071",
    ]


def test_no_technique_without_its_evidence() -> None:
    """Issue 13: T1560.002 and T1041 were tagged on alerts with no archive and no egress."""
    quiet = make_profile(values={"egress_external_bytes": 9e7})
    assert techniques_for(quiet, _top("archive_bytes"), SPEC, ["T1560.002"]) == {}
    # egress with no archive backs no T1041, a live pod no T1578.003
    live = make_profile(values={"lifetime_s": 60.0, "egress_external_bytes": 9e7})
    assert techniques_for(live, _top("lifetime_s", "egress_bytes"), SPEC, []) == {}
    # moved by context features only: every evidenced technique is named, with its reason
    reads = make_profile(values={"secret_reads": 3.0})
    assert techniques_for(reads, _top("new_image"), SPEC, []) == {"T1213": ["3 secret reads"]}


def test_a_pod_that_started_a_container_on_its_node_backs_t1611() -> None:
    escaped = make_profile(values={"container_starts": 1.0, "shell_spawned": 1.0})
    got = techniques_for(escaped, _top("container_starts"), SPEC, [])
    assert got == {"T1611": ["1 container(s) started on its node with a runtime client"]}


def test_raw_percentiles_count_ties_half() -> None:
    recent = np.arange(100, dtype=float)[:, None]  # 0..99
    assert raw_percentiles(np.array([50.0]), recent)[0] == 50.5
    assert raw_percentiles(np.array([1000.0]), recent)[0] == 100.0
    assert raw_percentiles(np.array([-1.0]), recent)[0] == 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.lists(
            st.lists(
                st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan])
                | st.floats(allow_nan=True, allow_infinity=True),
                min_size=3,
                max_size=3,
            ),
            min_size=n,
            max_size=n,
        )
    )
)
def test_column_stats_are_numpys_median_and_quartiles_to_the_bit(rows) -> None:
    """Signed zeros (which of two equal zeros a partition puts first), NaNs, infinities."""
    a = np.array(rows, dtype=float)
    with np.errstate(all="ignore"):
        expected = [np.median(a, axis=0), *np.percentile(a, [25, 75], axis=0)]
        got = column_stats(a)
        (median,) = column_stats(a, quartiles=False)
    for want, have in zip(expected, got, strict=True):
        assert want.tobytes() == have.tobytes()
    assert median.tobytes() == expected[0].tobytes()


def test_column_stats_of_constant_columns_beside_varying_ones() -> None:
    """Columns of one value throughout (never partitioned) and columns that vary."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4, 5, 155, 512):
        a = rng.normal(size=(n, 6))
        a[:, 0], a[:, 2], a[:, 3], a[:, 5] = 0.0, -0.0, np.nan, np.inf
        a[: n // 2, 4] = -0.0  # both zeros in one column
        a[n // 2 :, 4] = 0.0
        with np.errstate(all="ignore"):
            expected = [np.median(a, axis=0), *np.percentile(a, [25, 75], axis=0)]
            got = column_stats(a)
        assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]


def test_explanation_on_a_known_window(spec: FeatureSpec) -> None:
    rng = np.random.default_rng(1)
    rows = [
        {"egress_bytes": float(e), "lifetime_s": float(life), "api_read": float(rng.integers(0, 3))}
        for e, life in zip(
            range(1000, 101_000, 1000), range(3600, 3600 + 100 * 60, 60), strict=True
        )
    ]
    recent = spec.matrix(rows)
    observed = {"egress_bytes": 5e8, "lifetime_s": 30.0, "api_read": 1.0}
    top = explain(spec, observed, recent)
    by_name = {x.feature: x for x in top}
    assert set(by_name) == {"egress_bytes", "lifetime_s"}  # api_read is ordinary
    assert by_name["egress_bytes"].baseline_percentile == 100.0
    assert by_name["egress_bytes"].baseline_median == 50_500.0
    assert by_name["lifetime_s"].baseline_percentile == 0.0  # shorter than every recent pod
    assert by_name["lifetime_s"].baseline_median == 3600 + 49.5 * 60
    assert by_name["egress_bytes"].doc.startswith("Bytes sent")
    assert all(x.contribution > 0 for x in top)
    # a long lifetime is not suspicious: it is never the explanation
    assert "lifetime_s" not in {x.feature for x in explain(spec, {"lifetime_s": 1e7}, recent)}


def test_explanation_without_history_compares_with_benign_defaults(spec: FeatureSpec) -> None:
    top = explain(spec, {"archive_writes": 3.0}, np.empty((0, len(spec.names))))
    assert top[0].feature == "archive_writes" and top[0].baseline_median == 0.0


def test_severity_by_margin_and_guards() -> None:
    assert severity_for(0.91, 0.9, []) == "low"
    assert severity_for(0.99, 0.9, []) == "medium"
    assert severity_for(0.99, 0.8, []) == "high"
    assert severity_for(0.91, 0.9, ["g"]) == "medium"
    assert severity_for(0.99, 0.8, ["g", "h"]) == "critical"


def test_built_alert_is_reproducible_data_in_event_time(spec: FeatureSpec) -> None:
    p = make_profile(
        t=1_772_409_600.0,  # 2026-03-02T00:00:00Z
        values=ATTACK_VALUES,
        final=True,
        end_reason="deleted",
        deleted_by="alice",
        deleter_kind="person",
    )
    p.evidence.append(Evidence(time=p.window_start + 10, kind="exec", summary="pods/exec by alice"))

    def build() -> Alert:
        return build_alert(
            p,
            score=0.97,
            threshold=0.9,
            level="workload",
            baseline_key="wl:shop/Deployment/web:pod",
            top=explain(spec, p.values, np.empty((0, len(spec.names)))),
            spec=spec,
            rules=["exec-then-delete-by-person"],
            rule_techniques=["T1578.003"],
            model_version="test",
        )

    a = build()
    assert msgspec.json.encode(a) == msgspec.json.encode(build())
    assert a.emitted_at == "2026-03-02T00:05:00.000Z"  # the window end, not the wall clock
    assert a.first_seen == "2026-03-02T00:00:00.000Z"
    assert "T1578.003" in a.techniques and a.severity == "high"
    assert a.response[: len(RESPONSE_STEPS[a.techniques[0]])] == list(
        RESPONSE_STEPS[a.techniques[0]]
    )
    # who made, acted on and removed it comes first, then the key records
    assert a.evidence[0].kind == "who"
    assert a.evidence[0].summary.endswith("deleted by alice (person)")
    assert a.evidence[1].summary == "pods/exec by alice"
    assert msgspec.json.decode(msgspec.json.encode(a), type=Alert) == a
    table = render_table([a])
    assert a.alert_id in table and "shop/web-1" in table and "HIGH" in table
    assert "score 0.970 > threshold 0.900" in table
    assert "guard rules also fired: exec-then-delete-by-person" in table

    # raised by the guard alone: the table names the rule, not a score comparison
    guarded = msgspec.structs.replace(a, score=0.0)
    table = render_table([guarded])
    assert "raised by guard rule exec-then-delete-by-person" in table
    assert "0.000 >" not in table


def test_a_campaign_alert_lists_its_members_and_says_why() -> None:
    from churnguard.alerts.alert import campaign_alert
    from churnguard.profiling.profile import EntityRef

    p = make_profile(pod="x-4", values={"archive_writes": 1.0, "egress_external_bytes": 9e6})
    base = build_alert(p, score=0.3, threshold=0.93, level="namespace", baseline_key="ns:shop:pod",
                       top=_top("archive_writes"), spec=SPEC, rules=[], rule_techniques=[],
                       model_version="t")  # fmt: skip
    members = [EntityRef(kind="pod", namespace="shop", pod=f"x-{i}") for i in range(1, 5)]
    c = campaign_alert(base, "shop|files-drop.cc", members)
    assert c.alert_id != base.alert_id and c.severity == "high"
    assert c.entity_keys() == ["shop/x-4", "shop/x-1", "shop/x-2", "shop/x-3"]
    assert "4 short-lived pods in shop sent to files-drop.cc" in c.summary
    assert "files-drop.cc" in c.technique_evidence["T1041"][-1]
    assert "campaign of 4" in render_table([c])


def test_the_alert_says_who_acted_and_how_many_are_new() -> None:
    p = make_profile(
        values={"new_identity": 1.0, "new_identity_in_cluster": 1.0},
        final=True,
        end_reason="deleted",
        deleted_by="mallory@corp.example",
        deleter_kind="person",
    )
    p = msgspec.structs.replace(
        p,
        created_by="system:serviceaccount:kube-system:replicaset-controller",
        creator_kind="controller",
        identities=["mallory@corp.example"],
    )
    line = who_line(p)
    assert line.startswith("created by system:serviceaccount:kube-system:replicaset-controller")
    assert "acting on it in this window: mallory@corp.example (never seen acting in" in line
    assert "the namespace before: 1 of them; new to the cluster: 1)" in line
    assert line.endswith("deleted by mallory@corp.example (person)")
    stranger = msgspec.structs.replace(p, strangers=["mallory@corp.example"])
    assert "; strangers over its life (no team the cluster knows): mallory@corp.example;" in (
        who_line(stranger)
    )


def test_a_controller_removing_its_own_pod_backs_no_evasion() -> None:
    """T1578.003 is backed by a deletion a person or another identity made, not by a
    ReplicaSet scaling down or the autoscaler reclaiming a node's instance."""
    churn = make_profile(
        final=True,
        end_reason="deleted",
        deleted_by="system:serviceaccount:kube-system:replicaset-controller",
        deleter_kind="controller",
        values={"lifetime_s": 300.0},
    )
    assert "T1578.003" not in technique_evidence(churn)
    person = msgspec.structs.replace(churn, deleted_by="erin@corp.example", deleter_kind="person")
    assert "T1578.003" in technique_evidence(person)
    unseen = terminated_instance("dan", {"lifetime_s": 0.0})
    assert "its creation not in the telemetry held" in technique_evidence(unseen)["T1578.003"][0]
