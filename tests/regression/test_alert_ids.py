"""The behaviour lock: fixed simulator days give exactly the recorded alert ids."""

from __future__ import annotations

import pytest
from alert_ids import DAYS, alert_ids, recorded


@pytest.mark.parametrize(("name", "seed", "hours"), DAYS, ids=[d[0] for d in DAYS])
def test_alert_ids_as_recorded(name: str, seed: int, hours: float) -> None:
    expected = recorded(name)
    got = alert_ids(seed, hours)
    assert expected, f"{name}: the recorded day has no alerts, so it locks nothing"
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert got == expected, f"{name}: {len(missing)} alert ids missing, {len(extra)} new"
