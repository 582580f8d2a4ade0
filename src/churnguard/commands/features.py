"""Profile entities from telemetry files and write one feature row per entity window.

Inputs are files in any supported format and shape, mixed freely (auto-detected per
record; docs/ingestion.md), or '-' for stdin; their events are sorted by event time
first. Bad records never stop the run: they are counted, summarised on stderr and written
with their reason to the dead-letter file.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing

from churnguard.config import load_settings
from churnguard.ingest import FORMATS
from churnguard.ingest.files import INPUTS_HELP
from churnguard.offline.progress import Progress
from churnguard.offline.replay import replay_files, summary_lines, write_jsonl, write_rejected


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=INPUTS_HELP,
    )
    parser.add_argument("--out", required=True, help="feature rows (JSONL), '-' = stdout")
    parser.add_argument(
        "--dead-letter",
        help="where rejected records go (default: <out>.rejected.jsonl; none with --out -)",
    )
    parser.add_argument(
        "--format",
        choices=(*FORMATS, "auto"),
        default="auto",
        help="pin every input to one format instead of detecting per record",
    )
    parser.add_argument("--config", help="churnguard TOML config (pipeline section)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (drawn only on a terminal anyway)"
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    pinned = None if args.format == "auto" else args.format
    with closing(Progress.for_files("features", args.inputs, quiet=args.quiet)) as bar:
        result = replay_files(args.inputs, settings, pinned=pinned, on_progress=bar.to)
    write_jsonl(args.out, result.profiles)
    dead_letter = write_rejected(result.rejected, args.out, args.dead_letter)
    entities = {p.entity.key() for p in result.profiles}
    lines = summary_lines(result.stats, len(result.profiles), len(entities))
    if dead_letter:
        lines.append(f"rejected records written to {dead_letter}")
    print("\n".join(lines), file=sys.stderr)
    return 0
