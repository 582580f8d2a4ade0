"""Alert ids of fixed simulator days replayed with the shipped model: the behaviour lock.

A change that only moves code must leave these ids exactly as recorded. A change that
means to alter detection regenerates them in the same commit, with the reason in the
message: ``python tests/regression/alert_ids.py --write``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

RECORDED = Path(__file__).with_name("recorded")
# (name, seed, hours): the demo's day, and a held-out seed never used for tuning
DAYS = (("demo_seed7_24h", 7, 24.0), ("heldout_seed404_12h", 404, 12.0))


def alert_ids(seed: int, hours: float) -> list[str]:
    """Simulate a day, replay it through the default pipeline, return the sorted alert ids."""
    from churnguard.config import Settings
    from churnguard.simulate import SimParams, generate, write

    try:
        from churnguard.offline.replay import replay_files
        from churnguard.wiring import make_pipeline
    except ImportError:  # before the package was split into stages
        from churnguard.replay import replay_files

        from churnguard.wiring import make_pipeline

    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write(generate(SimParams(seed=seed, hours=hours)), tmp)
        inputs = [str(p) for k, p in paths.items() if k not in ("labels", "summary")]
        result = replay_files(inputs, settings, pipeline=make_pipeline(settings))
    return sorted(a.alert_id for a in result.alerts)


def recorded(name: str) -> list[str]:
    return (RECORDED / f"{name}.txt").read_text().split()


if __name__ == "__main__":
    write_mode = "--write" in sys.argv
    RECORDED.mkdir(exist_ok=True)
    for name, seed, hours in DAYS:
        ids = alert_ids(seed, hours)
        print(f"{name}: {len(ids)} alerts")
        if write_mode:
            (RECORDED / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
