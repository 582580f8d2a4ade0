"""Input a person must fix: one line naming the file and the problem, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.cli import main


@pytest.mark.parametrize("command", ["replay", "features"])
@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "no such file"), (b"", "empty input"), (b"PK\x03\x04zip", "unknown format")],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys, command: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_bytes(content)
    out = str(tmp_path / "out.jsonl")
    extra = ["--alerts", out, "--no-model"] if command == "replay" else ["--out", out]
    assert main([command, str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and problem in err, err
    assert "Traceback" not in err
