"""Feature capture: the rows the service scored, with their scores, for the notebooks.

Notebooks retrain on exactly what the service saw (same feature spec version), so a capture
row is the profile plus score, threshold, baseline level and whether it alerted.
JSONL always; Parquet when the path ends in .parquet and pyarrow is installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from churnguard.errors import ConfigError
from churnguard.profiling.profile import Profile


class CaptureRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    profile: Profile
    score: float
    threshold: float
    level: str
    baseline_key: str
    alerted: bool
    model_version: str = ""


def capture_rows(scored: Iterable[Any], model_version: str = "") -> list[CaptureRow]:
    return [
        CaptureRow(
            profile=s.profile,
            score=float(s.score),
            threshold=float(s.threshold),
            level=s.level,
            baseline_key=s.baseline_key,
            alerted=s.alert is not None,
            model_version=model_version,
        )
        for s in scored
    ]


def write_capture(path: str | Path, scored: Iterable[Any], model_version: str = "") -> int:
    rows = capture_rows(scored, model_version)
    p = Path(path)
    if p.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError("writing Parquet needs pyarrow: pip install pyarrow") from exc
        flat = [flatten(r) for r in rows]
        pq.write_table(pa.Table.from_pylist(flat), p)
    else:
        enc = msgspec.json.Encoder()
        p.write_bytes(b"".join(enc.encode(r) + b"\n" for r in rows))
    return len(rows)


def read_capture(path: str | Path) -> list[CaptureRow]:
    dec = msgspec.json.Decoder(CaptureRow)
    with open(path, "rb") as fh:
        return [dec.decode(line) for line in fh if line.strip()]


def flatten(row: CaptureRow) -> dict[str, Any]:
    """One flat dict per row (entity fields, window, score, and every feature value)."""
    e = row.profile.entity
    out: dict[str, Any] = {
        "entity_kind": e.kind,
        "namespace": e.namespace,
        "pod": e.pod,
        "instance_id": e.instance_id,
        "workload": e.workload,
        "window_start": row.profile.window_start,
        "window_end": row.profile.window_end,
        "final": row.profile.final,
        "score": row.score,
        "threshold": row.threshold,
        "level": row.level,
        "baseline_key": row.baseline_key,
        "alerted": row.alerted,
    }
    out.update(row.profile.values)
    return out
