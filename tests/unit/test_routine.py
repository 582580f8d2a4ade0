"""An operator's routine does not page: a model alert must show more than a known person's
deletion of a pod."""

from __future__ import annotations

import msgspec
from scoring_fixtures import make_profile

from churnguard.alerts.alert import Alert, BaselineRef, Window
from churnguard.scoring.routine import routine


def _alert(techniques: list[str], rules: list[str] | None = None) -> Alert:
    p = make_profile()
    return Alert(
        alert_id="a",
        summary="s",
        entity=p.entity,
        score=0.99,
        threshold=0.93,
        baseline=BaselineRef(level="namespace", key="ns:shop:pod"),
        severity="medium",
        techniques=techniques,
        explanation=[],
        evidence=[],
        first_seen="",
        last_seen="",
        emitted_at="",
        window=Window(start=0.0, end=300.0),
        response=[],
        rules=rules or [],
    )


def _deleted(**values: float):
    base = {"deleted_by_person": 1.0, "new_identity": 1.0, "new_identity_in_cluster": 0.0}
    return make_profile(final=True, end_reason="deleted", values={**base, **values})


def test_a_known_persons_deletion_alone_is_routine() -> None:
    assert routine(_deleted(), _alert(["T1578.003", "T1070"]))
    assert routine(_deleted(), _alert([]))  # context features only, nothing backed


def test_anything_more_pages() -> None:
    lifecycle = _alert(["T1578.003", "T1070"])
    assert not routine(_deleted(new_identity_in_cluster=1.0), lifecycle)  # a stranger
    assert not routine(_deleted(deleted_by_other_identity=1.0), lifecycle)  # a stolen token
    assert not routine(_deleted(), _alert(["T1578.003", "T1213"]))  # it read something
    assert not routine(_deleted(), _alert(["T1578.003"], rules=["exec-then-delete-by-person"]))
    instance = msgspec.structs.replace(
        _deleted(), entity=make_profile(kind="instance", instance_id="i-1").entity
    )
    assert not routine(instance, lifecycle)
