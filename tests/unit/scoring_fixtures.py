"""Profiles and settings for the scoring tests (baselines, thresholds, guards, scorer)."""

from __future__ import annotations

import numpy as np

from churnguard.config import ScoringSettings, Settings, ThresholdSettings
from churnguard.profiling.profile import EntityRef, Profile

WINDOW = 300.0


def make_profile(
    *,
    ns: str | None = "shop",
    pod: str = "web-1",
    workload: str | None = "Deployment/web",
    kind: str = "pod",
    t: float = 0.0,
    values: dict[str, float] | None = None,
    final: bool = False,
    end_reason: str = "window",
    instance_id: str | None = None,
    image: str | None = "registry.local/web:1.0",
    deleted_by: str | None = None,
    deleter_kind: str | None = None,
) -> Profile:
    """One window ``[t, t + WINDOW)`` of a pod (or, with ``kind="instance"``, an instance)."""
    if kind == "instance":
        entity = EntityRef(kind="instance", instance_id=instance_id or pod)
    else:
        entity = EntityRef(kind="pod", namespace=ns, pod=pod, workload=workload, image=image)
    return Profile(
        entity=entity,
        window_start=t,
        window_end=t + WINDOW,
        final=final,
        end_reason=end_reason,
        spec_version="1",
        values=dict(values or {}),
        first_seen=t,
        last_seen=t + WINDOW,
        deleted_by=deleted_by,
        deleter_kind=deleter_kind,
    )


def benign_values(rng: np.random.Generator) -> dict[str, float]:
    """A quiet web pod's window: long-lived, some API reads, modest in-cluster egress."""
    return {
        "lifetime_s": float(rng.uniform(20_000, 80_000)),
        "egress_bytes": float(rng.uniform(1e5, 1e6)),
        "api_read": float(rng.integers(0, 5)),
        "api_list": float(rng.integers(0, 3)),
        "distinct_binaries": float(rng.integers(1, 3)),
    }


ATTACK_VALUES = {
    "lifetime_s": 90.0,
    "exec_to_delete_s": 30.0,
    "deleted_by_person": 1.0,
    "exec_count": 3.0,
    "shell_spawned": 1.0,
    "archive_writes": 4.0,
    "archive_bytes": 3e8,
    "egress_bytes": 4e8,
    "egress_external_bytes": 4e8,
    "new_destinations": 2.0,
}


def quick_settings(**scoring: object) -> Settings:
    """Small minima and no learning period, so a test reaches scoring in a few dozen rows."""
    base = {
        "workload_min_profiles": 20,
        "namespace_min_profiles": 40,
        "learning_profiles": 0,
        "learning_seconds": 0.0,
        "seed": 3,
    }
    base.update(scoring)
    return Settings(
        scoring=ScoringSettings(**base),  # type: ignore[arg-type]
        thresholds=ThresholdSettings(target_alert_rate=0.01, min_score=0.8),
    )


def terminated_instance(deleted_by: str, values: dict[str, float]) -> Profile:
    """An instance's last row: a person terminated it, its launch not in the telemetry."""
    return make_profile(
        kind="instance",
        instance_id="i-1",
        final=True,
        end_reason="terminated",
        deleted_by=deleted_by,
        deleter_kind="person",
        values=values,
    )
