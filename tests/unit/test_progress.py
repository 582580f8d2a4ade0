"""Progress bars: records/s and ETA on a terminal, nothing when piped or with --quiet."""

from __future__ import annotations

import fcntl
import gzip
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tqdm import tqdm

from churnguard.offline.progress import count_records

CLI = [sys.executable, "-m", "churnguard.cli"]


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("progress")
    subprocess.run([*CLI, "simulate", "--out", str(out), "--hours", "1", "--quiet"], check=True)
    return [str(out / "k8s_audit.jsonl"), str(out / "flows.jsonl")]


def stderr_of(args: list[str], *, terminal: bool) -> str:
    """Run the CLI with stderr on a pseudo-terminal (as a person runs it) or a pipe."""
    if not terminal:
        return subprocess.run([*CLI, *args], capture_output=True, check=True).stderr.decode()
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    # every update drawn: tqdm redraws at most every 0.1 s, and a bar that is cleared when it
    # closes (leave=False) shows its last state only if a redraw fell after the last update
    drawn = {**os.environ, "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=follower, env=drawn)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode(errors="replace")


def test_features_shows_records_per_second_and_eta_on_a_terminal(telemetry, tmp_path) -> None:
    args = ["features", *telemetry, "--out", str(tmp_path / "rows.jsonl")]
    shown = stderr_of(args, terminal=True)
    total = count_records(telemetry)
    assert total and f"/{tqdm.format_sizeof(total)} " in shown  # a total, so an ETA
    assert "records/s" in shown and "100%" in shown
    assert "<" in shown  # tqdm's [elapsed<remaining]
    for quiet in (stderr_of(args, terminal=False), stderr_of([*args, "--quiet"], terminal=True)):
        assert "records/s" not in quiet
        assert "records read" in quiet  # the summary still comes


def test_simulate_shows_simulated_hours_on_a_terminal(tmp_path) -> None:
    args = ["simulate", "--out", str(tmp_path), "--hours", "0.5"]
    assert "h/s" in stderr_of(args, terminal=True)
    assert "h/s" not in stderr_of(args, terminal=False)


def test_count_records_counts_lines_or_gives_up(tmp_path: Path) -> None:
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b"{}\n{}\n{}")  # no newline after the last record
    assert count_records([str(plain)]) == 3
    zipped = tmp_path / "b.jsonl.gz"
    zipped.write_bytes(gzip.compress(b"{}\n"))
    assert count_records([str(plain), str(zipped)]) is None
    assert count_records(["-"]) is None
    assert count_records([str(tmp_path / "missing")]) is None
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert count_records([str(empty)]) == 0
