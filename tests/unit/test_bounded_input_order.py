"""A bounded input gives the same alerts in any order: replay sorts it by event time.

The same labelled simulator day, written as one file sorted by event time, as the
per-source files concatenated, and in delivery order (shuffled within 10-minute chunks,
sorted with a tiny run size so the external sort spills and merges), gives identical
alert ids and identical feature rows (evidence differs only in its file:line pointers).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import orjson
import pytest

from churnguard.config import Settings
from churnguard.offline.replay import replay_files
from churnguard.simulate import SimParams, generate
from churnguard.simulate.delivery import per_source, shuffled_within, sorted_order
from churnguard.wiring import make_pipeline


@pytest.fixture(scope="module")
def sim():
    return generate(SimParams(seed=5, hours=3.0))


def replay(rows: list[dict], path: Path, run_events: int = 200_000) -> tuple[list[str], list]:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    settings = Settings()
    result = replay_files(
        [str(path)], settings, pipeline=make_pipeline(settings), run_events=run_events
    )
    assert result.stats["late_events"] == 0
    # what was computed, without the evidence's file coordinates (they differ by arrangement)
    rows_out = sorted(
        msgspec.json.encode([p.entity, p.window_start, p.window_end, p.end_reason, p.values])
        for p in (s.profile for s in result.scored)
    )
    return sorted(a.alert_id for a in result.alerts), rows_out


def test_sorted_concatenated_and_delivery_order_give_identical_alerts(sim, tmp_path: Path) -> None:
    ids, rows = replay(sorted_order(sim.records), tmp_path / "sorted.jsonl")
    assert ids, "the simulated attacks should raise alerts"
    assert replay(per_source(sim.records), tmp_path / "concatenated.jsonl") == (ids, rows)
    delivered = shuffled_within(sim.records, 600.0, seed=1)
    assert delivered != sorted_order(sim.records)
    assert replay(delivered, tmp_path / "delivered.jsonl", run_events=997) == (ids, rows)
