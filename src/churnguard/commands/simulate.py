"""Write labelled synthetic cluster telemetry in the real formats, deterministic per seed.

One JSONL file per format in OUT (k8s_audit, cloudtrail, falco, tetragon, flows), each sorted
by event time, plus labels.jsonl (one row per malicious entity) and summary.json. Benign
churn (autoscaling, rolling deploys, CronJobs, CI runners, backups, node drains, spot
instances, admins) is mixed with attacks (T1578.003, T1213, T1560.002, T1071).
See docs/scenarios.md; --list-scenarios prints the names for --scenario.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing

from churnguard.errors import ConfigError
from churnguard.offline.progress import Progress
from churnguard.simulate import DEFAULT_START, MIXES, SCENARIOS, SimParams, generate, write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="rng seed (default 0)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument(
        "--scenario",
        action="append",
        nargs="+",
        metavar="NAME",
        default=[],
        help="run only these scenarios (repeatable; default all)",
    )
    parser.add_argument("--namespaces", type=int, default=20, help="namespaces (default 20)")
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="default",
        help="scenario mix when no --scenario is given: default, or hard (adds benign"
        " look-alikes and adaptive attacks; see docs/scenarios.md)",
    )
    parser.add_argument(
        "--pods-per-hour",
        type=float,
        default=None,
        help="approximate pod creations per hour (default 10 per namespace)",
    )
    parser.add_argument(
        "--attack-rate",
        type=float,
        default=2.0,
        help="attacks per attack scenario per simulated day of 20 namespaces "
        "(default 2; 0 = benign only)",
    )
    parser.add_argument(
        "--start",
        default=DEFAULT_START,
        help=f"simulated start time, ISO 8601 (default {DEFAULT_START})",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (drawn only on a terminal anyway)"
    )
    parser.add_argument(
        "--list-scenarios",
        action="store_true",
        help="print the scenario names and what they emit, then exit",
    )


def run(args: argparse.Namespace) -> int:
    if args.list_scenarios:
        width = max(len(s.name) for s in SCENARIOS)
        for s in SCENARIOS:
            tag = s.technique or "benign"
            mix = "(hard) " if s.mix == "hard" else ""
            print(f"{s.name:<{width}}  {tag:<17}  {mix}{s.summary}")
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (or --list-scenarios)")
    params = SimParams(
        seed=args.seed,
        hours=args.hours,
        start=args.start,
        namespaces=args.namespaces,
        pods_per_hour=args.pods_per_hour,
        attack_rate=args.attack_rate,
        scenarios=tuple(name for group in args.scenario for name in group),
        mix=args.mix,
    )
    with closing(Progress("simulate", args.hours, quiet=args.quiet, unit="h")) as bar:
        result = generate(params, on_time=lambda seconds: bar.to(round(seconds / 3600, 2)))
        bar.to(args.hours)
    paths = write(result, args.out)
    summary = result.summary
    lines = [
        f"wrote {args.out}: {summary['entities']['pod']:,} pods, "
        f"{summary['entities']['instance']:,} instances, {summary['labels']} labels"
    ]
    lines += [f"  {paths[fmt].name:<18} {n:>9,} records" for fmt, n in summary["records"].items()]
    print("\n".join(lines), file=sys.stderr)
    return 0
