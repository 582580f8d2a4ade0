"""Run the whole detection pipeline over telemetry files, sorted by event time, and write alerts.

The same pipeline the Kafka service runs: adapters, entity windows, per-namespace and
per-workload baselines, thresholds, guard rules and explained alerts. At the end of input the
entities still open are profiled too.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing

from churnguard.config import ALERT_FORMATS, load_settings
from churnguard.ingest import FORMATS
from churnguard.ingest.files import INPUTS_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=INPUTS_HELP,
    )
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
    parser.add_argument(
        "--alert-format",
        choices=ALERT_FORMATS,
        help="json (churnguard's alert), ocsf (OCSF Detection Finding) or falco (Falco's JSON"
        " output, for falcosidekick); default: the config's alerts.format, else json",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="S",
        help="replay as a service with kafka.repartition on S repartition partitions does:"
        " the records split by scope with the router's rule, one pipeline per shard, each"
        " told the other shards' namespaces' external contacts as the routers tell them"
        " (default 1: one pipeline for everything)",
    )
    parser.add_argument("--table", action="store_true", help="print the alerts as a table")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (drawn only on a terminal anyway)"
    )


def run(args: argparse.Namespace) -> int:
    # the pipeline (and the ML stack it scores with) loads only when the command runs
    from churnguard.alerts.formats import encode_alert
    from churnguard.offline.capture import write_capture
    from churnguard.offline.progress import Progress
    from churnguard.offline.replay import replay_files, summary_lines, write_jsonl, write_rejected
    from churnguard.offline.shards import replay_shards
    from churnguard.wiring import make_pipeline

    settings = load_settings(args.config)

    def pipeline():
        return make_pipeline(settings, model_dir=args.model, use_bundle=not args.no_model)

    pinned = None if args.format == "auto" else args.format
    if args.shards != 1:
        result = replay_shards(args.inputs, settings, args.shards, pipeline, pinned=pinned)
    else:
        with closing(Progress.for_files("replay", args.inputs, quiet=args.quiet)) as bar:
            result = replay_files(
                args.inputs, settings, pinned=pinned, pipeline=pipeline(), on_progress=bar.to
            )
    fmt = args.alert_format or settings.alerts.format
    write_jsonl(args.alerts, result.alerts, lambda a: encode_alert(a, settings.alerts, fmt))
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
