"""Where the real telemetry samples are: ``../shared/data/real`` beside the checkout.

They are real captures, read in place and never copied into the repository (CI clones the
repo with ``../shared`` beside it). ``CHURNGUARD_REAL_DATA`` names another place (a git
worktree elsewhere). Tests that need them skip, saying why, only when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL = Path(
    os.environ.get("CHURNGUARD_REAL_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
)


def real(*parts: str) -> Path:
    """A path under the real samples, or skip the test with the reason."""
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real telemetry samples not found at {path} (../shared beside the checkout)")
    return path


def real_files(folder: str) -> list[str]:
    """The JSON files of one sample folder, sorted (licence files left out)."""
    return sorted(str(p) for p in real(folder).glob("*.json"))
