"""Measure detection quality against labels: recall per technique, precision, false alerts, delay.

Two ways in:

  churnguard evaluate --labels labels.jsonl --alerts alerts.jsonl [--summary summary.json]
                      [--capture rows.jsonl] [--json]
      score alerts you already have (from `churnguard replay` or the alerts topic) against
      labels from `churnguard simulate`; --summary adds false alerts per 1,000 benign
      entities, --capture (replay --capture) per 1,000 benign profiles after learning.

  churnguard evaluate --simulate [--seed N ...] [--hours H] [--namespaces N]
                      [--scenario NAME ...] [--mix hard] [--attack-rate R]
                      [--config cfg.toml] [--model DIR] [--json] [--details]
      simulate a labelled run per seed, replay the same files through churnguard as
      configured, one cluster-wide model, river HalfSpaceTrees with its defaults, a plain
      scikit-learn IsolationForest (one cluster-wide model) and the static rules, and print
      them side by side (per seed, then pooled over the seeds): recall per technique and per
      attack scenario, false alerts per benign kind per simulated day. churnguard starts
      from empty baselines unless --model names a bundle to evaluate.

An attack counts as detected when an alert names its entity (pod by namespace/pod, instance
by id) with a window ending at or after the attack's start; see docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from churnguard.config import load_settings
from churnguard.errors import ConfigError
from churnguard.offline.evaluate import (
    CHURNGUARD,
    CLUSTER_WIDE,
    PLAIN_IFOREST,
    RIVER_HST,
    STATIC_RULES,
    SYSTEMS,
    Report,
    compare_on_simulation,
    evaluate,
    format_details,
    format_reports,
    pool,
    read_alerts,
    read_benign_entities,
    read_labels,
)

# --system names on the command line -> table columns
SYSTEM_FLAGS = {"churnguard": CHURNGUARD, "cluster": CLUSTER_WIDE, "hst": RIVER_HST,
                "iforest": PLAIN_IFOREST, "rules": STATIC_RULES}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("existing alerts")
    files.add_argument("--labels", help="labels.jsonl (one row per malicious entity)")
    files.add_argument("--alerts", help="alerts JSONL written by replay (or read from the topic)")
    files.add_argument("--summary", help="summary.json beside the labels (benign entity count)")
    files.add_argument("--capture", help="feature capture of the same run (replay --capture)")
    sim = parser.add_argument_group("--simulate")
    sim.add_argument(
        "--simulate", action="store_true", help="simulate, replay and compare the systems"
    )
    sim.add_argument(
        "--seed",
        type=int,
        nargs="+",
        action="extend",
        help="rng seed(s); several = one report per seed plus the pooled one (default 0)",
    )
    sim.add_argument(
        "--hours", type=float, default=24.0, help="measured simulated hours (default 24)"
    )
    sim.add_argument(
        "--warmup-hours",
        type=float,
        default=0.0,
        help="simulate this many hours first to train every system, unmeasured (default 0:"
        " systems start empty and their learning mode is measured too)",
    )
    sim.add_argument("--namespaces", type=int, default=20, help="namespaces (default 20)")
    sim.add_argument(
        "--scenario",
        nargs="+",
        action="extend",
        metavar="NAME",
        default=[],
        help="run only these scenarios (default all; see simulate --list-scenarios)",
    )
    sim.add_argument(
        "--mix",
        choices=("default", "hard"),
        default="default",
        help="scenario mix (default, or hard: benign look-alikes and adaptive attacks)",
    )
    sim.add_argument(
        "--attack-rate",
        type=float,
        default=2.0,
        help="attacks per attack scenario per simulated day of 20 namespaces (default 2)",
    )
    sim.add_argument(
        "--system",
        nargs="+",
        action="extend",
        choices=SYSTEM_FLAGS,
        help="compare only these systems (default all)",
    )
    sim.add_argument("--config", help="churnguard TOML config (scoring and thresholds)")
    sim.add_argument("--model", help="evaluate this model bundle (verified before loading)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--details",
        action="store_true",
        help="also list missed attacks and the benign entities alerted on most",
    )


def run(args: argparse.Namespace) -> int:
    if args.simulate:
        if args.labels or args.alerts:
            raise ConfigError("--simulate generates its own labels; drop --labels/--alerts")
        runs = _simulated(args)
    elif args.labels and args.alerts:
        runs = {"": {CHURNGUARD: _from_files(args)}}
    else:
        raise ConfigError("give --labels and --alerts, or --simulate")
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(_as_json(runs)), indent=2).decode())
    else:
        print(_as_text(runs, details=args.details))
    return 0


def _from_files(args: argparse.Namespace) -> Report:
    scored: list[Any] | None = None
    if args.capture:
        from churnguard.offline.capture import read_capture

        try:
            scored = read_capture(args.capture)
        except OSError as exc:
            raise ConfigError(f"cannot read capture {args.capture}: {exc.strerror}") from exc
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{args.capture}: not a feature capture: {exc}") from exc
    return evaluate(
        read_labels(args.labels),
        read_alerts(args.alerts),
        benign_entities=read_benign_entities(args.summary) if args.summary else None,
        scored=scored,
    )


def _simulated(args: argparse.Namespace) -> dict[str, dict[str, Report]]:
    from churnguard.simulate import SimParams

    settings = load_settings(args.config)
    seeds = list(dict.fromkeys(args.seed or [0]))
    runs: dict[str, dict[str, Report]] = {}
    for seed in seeds:
        params = SimParams(
            seed=seed,
            hours=args.warmup_hours + args.hours,
            namespaces=args.namespaces,
            attack_rate=args.attack_rate,
            scenarios=tuple(args.scenario),
            mix=args.mix,
        )
        runs[f"seed {seed}"] = compare_on_simulation(
            params,
            settings,
            model_dir=args.model,
            systems=tuple(SYSTEM_FLAGS[s] for s in args.system) if args.system else SYSTEMS,
            progress=lambda line: print(line, file=sys.stderr),
            warmup_hours=args.warmup_hours,
        )
    if len(seeds) > 1:
        first = next(iter(runs.values()))
        runs["pooled"] = {name: pool([r[name] for r in runs.values()]) for name in first}
    return runs


def _as_json(runs: dict[str, dict[str, Report]]) -> Any:
    """Files mode: the one report; --simulate: {run: {system: report}}."""
    if list(runs) == [""]:
        return runs[""][CHURNGUARD]
    return runs


def _as_text(runs: dict[str, dict[str, Report]], *, details: bool) -> str:
    blocks = []
    for title, reports in runs.items():
        block = ([title] if title else []) + [format_reports(reports)]
        if details:
            block += [f"{name}: {format_details(r)}" for name, r in reports.items()]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)
