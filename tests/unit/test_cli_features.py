"""`churnguard features` on a mixed-format file: rows out, a summary, bad lines dead-lettered."""

from __future__ import annotations

from pathlib import Path

import msgspec

from churnguard.cli import main
from churnguard.profiling.profile import Profile


def test_features_on_mixed_real_samples(tmp_path: Path, capsys, real_data: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    parts = [
        (real_data / name).read_bytes()
        for name in ("falco_output.jsonl", "tetragon_events.jsonl", "hubble_flows.jsonl")
    ]
    mixed.write_bytes(b"".join(parts) + b'{"not": "a known format"}\n{broken json\n')
    out = tmp_path / "features.jsonl"
    assert main(["features", str(mixed), "--out", str(out)]) == 0
    rows = [msgspec.json.decode(line, type=Profile) for line in out.read_bytes().splitlines()]
    pods = {r.entity.pod for r in rows}
    assert {"tiefighter", "alpine-deployment-77789455d6-m7flp"} <= pods
    # the Falco sample's second line (2017, after a 2021 line) has no namespace: no pod
    assert "falco-74htl" not in pods
    assert all(set(r.values) >= {"lifetime_s", "egress_bytes", "shell_spawned"} for r in rows)
    err = capsys.readouterr().err
    assert "events by source" in err and "tetragon" in err and "falco" in err
    assert "unknown_format" in err and "malformed_json" in err
    assert "late" not in err  # a bounded input is sorted by event time: nothing is late
    dead = (tmp_path / "features.jsonl.rejected.jsonl").read_bytes().splitlines()
    reasons = sorted(msgspec.json.decode(line)["reason"] for line in dead)
    assert reasons == ["malformed_json", "unknown_format"]


def test_features_reads_stdin(tmp_path: Path, monkeypatch, capsys, real_data: Path) -> None:
    import io
    import sys

    data = (real_data / "tetragon_events.jsonl").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "f.jsonl"
    assert main(["features", "-", "--out", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) >= 3
