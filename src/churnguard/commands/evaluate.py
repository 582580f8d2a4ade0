"""Measure detection quality against labels: recall per technique, precision, false alerts, delay.

Either score existing alerts (--labels and --alerts, e.g. from `churnguard simulate` and
`churnguard replay`; --summary adds false alerts per 1,000 benign entities), or --simulate:
generate a labelled run, replay it through churnguard (baseline hierarchy), one cluster-wide
model, river HalfSpaceTrees with its defaults, and the static rules, and print them side by
side. An attack counts as detected when any alert names its entity (pod by namespace/pod,
instance by id); the delay is the first such alert's emitted_at minus the attack's start.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from churnguard.config import load_settings
from churnguard.errors import ConfigError
from churnguard.evaluate import (
    SYSTEMS,
    Report,
    compare,
    evaluate,
    read_alerts,
    read_benign_entities,
    read_labels,
    render_table,
)
from churnguard.simulate import FILES, SimParams, generate, write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", help="labels.jsonl (one row per malicious entity)")
    parser.add_argument("--alerts", help="alerts JSONL written by replay/serve")
    parser.add_argument("--summary", help="summary.json beside the labels (benign entity count)")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="generate a labelled run and compare churnguard with the baselines",
    )
    parser.add_argument("--seed", type=int, default=0, help="--simulate: rng seed (default 0)")
    parser.add_argument(
        "--hours", type=float, default=24.0, help="--simulate: simulated hours (default 24)"
    )
    parser.add_argument(
        "--namespaces", type=int, default=20, help="--simulate: namespaces (default 20)"
    )
    parser.add_argument(
        "--attack-rate",
        type=float,
        default=2.0,
        help="--simulate: attacks per attack scenario per simulated day (default 2)",
    )
    parser.add_argument(
        "--system",
        action="append",
        choices=SYSTEMS,
        default=[],
        help="--simulate: run only these systems (repeatable; default all)",
    )
    parser.add_argument("--config", help="churnguard TOML config (scoring and thresholds)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.simulate:
        reports = _simulated(args)
    elif args.labels and args.alerts:
        benign = read_benign_entities(args.summary) if args.summary else None
        reports = {
            "alerts": evaluate(
                read_labels(args.labels), read_alerts(args.alerts), benign_entities=benign
            )
        }
    else:
        raise ConfigError("give --labels and --alerts, or --simulate")
    if args.json:
        print(json.dumps({name: r.as_dict() for name, r in reports.items()}, indent=2))
    else:
        print(render_table(reports))
    return 0


def _simulated(args: argparse.Namespace) -> dict[str, Report]:
    settings = load_settings(args.config)
    params = SimParams(
        seed=args.seed, hours=args.hours, namespaces=args.namespaces, attack_rate=args.attack_rate
    )
    with tempfile.TemporaryDirectory(prefix="churnguard-evaluate-") as tmp:
        paths = write(generate(params), tmp)
        print(f"simulated {args.hours:g} h, seed {args.seed} → replaying", file=sys.stderr)
        return compare(
            [str(paths[fmt]) for fmt in FILES],
            read_labels(paths["labels"]),
            settings,
            benign_entities=read_benign_entities(paths["summary"]),
            only=args.system,
        )
