"""The file driver keeps start-up objects out of the collector only while it replays
(``wiring.startup_frozen``)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from churnguard.config import Settings
from churnguard.offline import replay
from churnguard.offline.replay import replay_files


def test_frozen_during_replay_and_unfrozen_after(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "falco.jsonl"
    path.write_bytes(b'{"rule": "r", "output_fields": {}, "time": "2026-01-01T00:00:00Z"}\n')
    seen = []
    real = replay.sorted_events

    def probe(*args, **kwargs):
        seen.append(gc.get_freeze_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(replay, "sorted_events", probe)
    replay_files([str(path)], Settings())
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0


def test_unfrozen_when_the_replay_fails(tmp_path: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(replay, "sorted_events", broken)
    with pytest.raises(RuntimeError):
        replay_files([str(tmp_path / "none.jsonl")], Settings())
    assert gc.get_freeze_count() == 0
