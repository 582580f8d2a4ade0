"""Where the shared real telemetry samples are: one place for the conftest fixture and for
test modules that parametrize over the samples at import time."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# CI clones the repo with the shared data set beside it as ../shared; a checkout elsewhere
# (a git worktree) points CHURNGUARD_REAL_DATA at it
REAL_DATA = Path(os.environ.get("CHURNGUARD_REAL_DATA") or ROOT.parent / "shared" / "data" / "real")
