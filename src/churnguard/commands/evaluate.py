"""Measure detection quality against labels: recall per technique, precision, false alerts, delay.

Two ways in:

  churnguard evaluate --labels labels.jsonl --alerts alerts.jsonl [--summary summary.json]
                      [--capture rows.jsonl] [--json]
      score alerts you already have (from `churnguard replay` or the alerts topic) against
      labels from `churnguard simulate`; --summary adds false alerts per 1,000 benign
      entities, --capture (replay --capture) per 1,000 benign profiles after learning.

  churnguard evaluate --simulate [--seed N ...] [--hours H] [--namespaces N]
                      [--scenario NAME ...] [--mix hard] [--attack-rate R]
                      [--config cfg.toml] [--model DIR] [--jobs N] [--shards S]
                      [--json] [--details]
      simulate a labelled run per seed, replay the same files through churnguard as
      configured, one cluster-wide model, river HalfSpaceTrees with its defaults, a plain
      scikit-learn IsolationForest (one cluster-wide model) and the static rules, and print
      them side by side (per seed, then pooled over the seeds): recall per technique and per
      attack scenario, false alerts per benign kind per simulated day. Seeds and systems run
      in parallel (--jobs, default one worker per core). churnguard starts from empty
      baselines unless --model names a bundle to evaluate. --shards S replays churnguard as
      a service with kafka.repartition on S repartition partitions raises its alerts.

--report DIR (either way) also writes DIR/index.html: the numbers side by side, recall per
scenario, false alerts per benign kind, churnguard's scores and thresholds per namespace
and its alerts over time. Alerts are read in churnguard's JSON format.

An attack counts as detected when an alert names its entity (pod by namespace/pod, instance
by id) with a window ending at or after the attack's start; see docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from churnguard.alerts.alert import Alert
from churnguard.config import load_settings
from churnguard.errors import ConfigError
from churnguard.offline.evaluate import (
    CHURNGUARD,
    CLUSTER_WIDE,
    PLAIN_IFOREST,
    RIVER_HST,
    STATIC_RULES,
    SYSTEMS,
    Label,
    Report,
    compare_on_simulations,
    evaluate,
    format_details,
    format_reports,
    pool,
    read_alerts,
    read_benign_entities,
    read_labels,
)
from churnguard.offline.plots import require_matplotlib
from churnguard.offline.progress import Progress
from churnguard.offline.report import write_report

# --system names on the command line -> table columns
SYSTEM_FLAGS = {
    "churnguard": CHURNGUARD,
    "cluster": CLUSTER_WIDE,
    "hst": RIVER_HST,
    "iforest": PLAIN_IFOREST,
    "rules": STATIC_RULES,
}


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
    sim.add_argument(
        "--jobs",
        type=_positive_int,
        help="worker processes for the seeds and systems (default: one per core; 1 = serial;"
        " the reports are the same either way)",
    )
    sim.add_argument(
        "--shards",
        type=_positive_int,
        default=1,
        metavar="S",
        help="churnguard replays as a service with kafka.repartition on S repartition"
        " partitions does (replay --shards; default 1); the other systems are unchanged",
    )
    sim.add_argument("--config", help="churnguard TOML config (scoring and thresholds)")
    sim.add_argument("--model", help="evaluate this model bundle (verified before loading)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (drawn only on a terminal anyway)"
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="also write an HTML report to DIR/index.html: per-scenario recall and per-kind"
        " false alerts side by side, score distributions and thresholds per namespace (needs"
        " --capture in files mode), alert timeline (needs matplotlib: churnguard[report])",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="also list missed attacks and the benign entities alerted on most",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.report:
        require_matplotlib()  # before minutes of replay, not after
    seen = Measured()
    if args.simulate:
        if args.labels or args.alerts:
            raise ConfigError("--simulate generates its own labels; drop --labels/--alerts")
        runs = _simulated(args, seen)
    elif args.labels and args.alerts:
        runs = {"": {CHURNGUARD: _from_files(args, seen)}}
    else:
        raise ConfigError("give --labels and --alerts, or --simulate")
    if args.report:
        final = runs.get("pooled") or runs[next(iter(runs))]
        page = write_report(
            args.report, reports=final, labels=seen.labels, alerts=seen.alerts, rows=seen.rows
        )
        print(f"report written to {page}", file=sys.stderr)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(_as_json(runs)), indent=2).decode())
    else:
        print(_as_text(runs, details=args.details))
    return 0


class Measured:
    """churnguard's labels, alerts and scored rows behind the reports (for --report)."""

    def __init__(self) -> None:
        self.labels: list[Label] = []
        self.alerts: list[Alert] = []
        self.rows: list[Any] | None = None

    def add(self, system: str, labels: list[Label], alerts: list[Alert], rows: list[Any]) -> None:
        if system != CHURNGUARD:
            return
        self.labels += labels
        self.alerts += alerts
        self.rows = [*(self.rows or []), *rows]


def _from_files(args: argparse.Namespace, seen: Measured) -> Report:
    scored: list[Any] | None = None
    if args.capture:
        from churnguard.offline.capture import read_capture

        try:
            scored = read_capture(args.capture)
        except OSError as exc:
            raise ConfigError(f"cannot read capture {args.capture}: {exc.strerror}") from exc
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{args.capture}: not a feature capture: {exc}") from exc
    labels, alerts = read_labels(args.labels), read_alerts(args.alerts)
    seen.labels, seen.alerts, seen.rows = labels, alerts, scored
    return evaluate(
        labels,
        alerts,
        benign_entities=read_benign_entities(args.summary) if args.summary else None,
        scored=scored,
    )


def _simulated(args: argparse.Namespace, seen: Measured) -> dict[str, dict[str, Report]]:
    from churnguard.simulate import SimParams

    settings = load_settings(args.config)
    seeds = list(dict.fromkeys(args.seed or [0]))
    params = [
        SimParams(
            seed=seed,
            hours=args.warmup_hours + args.hours,
            namespaces=args.namespaces,
            attack_rate=args.attack_rate,
            scenarios=tuple(args.scenario),
            mix=args.mix,
        )
        for seed in seeds
    ]
    bar = Progress("replays", None, quiet=args.quiet, unit="replays")
    try:
        reports = compare_on_simulations(
            params,
            settings,
            model_dir=args.model,
            systems=tuple(SYSTEM_FLAGS[s] for s in args.system) if args.system else SYSTEMS,
            progress=lambda line: print(line, file=sys.stderr),
            warmup_hours=args.warmup_hours,
            jobs=args.jobs,
            on_measured=seen.add if args.report else None,
            pair_done=bar.to,
            shards=args.shards,
        )
    finally:
        bar.close()
    runs = {f"seed {seed}": r for seed, r in zip(seeds, reports, strict=True)}
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
