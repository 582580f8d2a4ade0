"""Run the whole detection pipeline over telemetry files, in event-time order, and write alerts.

The same pipeline the Kafka service runs: adapters, entity windows, per-namespace and
per-workload baselines, thresholds, guard rules and explained alerts. At the end of input the
entities still open are profiled too.
"""

from __future__ import annotations

import argparse
import sys

from churnguard.config import load_settings
from churnguard.ingest import FORMATS
from churnguard.offline.capture import write_capture
from churnguard.offline.replay import replay_files, summary_lines, write_jsonl, write_rejected
from churnguard.wiring import make_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL file(s), '-' = stdin")
    parser.add_argument("--alerts", required=True, help="alerts JSONL output, '-' = stdout")
    parser.add_argument("--config", help="churnguard TOML config")
    parser.add_argument("--model", help="model bundle directory (verified before loading)")
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="start from empty baselines even if a bundle is configured",
    )
    parser.add_argument("--capture", help="also write every scored feature row (.jsonl/.parquet)")
    parser.add_argument("--dead-letter", help="rejected records (default: <alerts>.rejected.jsonl)")
    parser.add_argument(
        "--format",
        choices=(*FORMATS, "auto"),
        default="auto",
        help="pin every input to one format instead of detecting per record",
    )
    parser.add_argument("--table", action="store_true", help="print the alerts as a table")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    pipeline = make_pipeline(settings, model_dir=args.model, use_bundle=not args.no_model)
    pinned = None if args.format == "auto" else args.format
    result = replay_files(args.inputs, settings, pinned=pinned, pipeline=pipeline)
    write_jsonl(args.alerts, result.alerts)
    if args.capture:
        write_capture(args.capture, result.scored)
    write_rejected(result.rejected, args.alerts, args.dead_letter)
    entities = {s.profile.entity.key() for s in result.scored}
    lines = summary_lines(result.stats, len(result.scored), len(entities))
    lines.append(f"alerts            {len(result.alerts):>9,}")
    if args.table and result.alerts:
        from churnguard.alerts.alert import render_table

        lines.append(render_table(result.alerts))
    print("\n".join(lines), file=sys.stderr)
    return 0
