"""Suggest per-namespace thresholds from a feature capture (``replay --capture``).

``thresholds suggest`` takes the score quantile at 1 - R per namespace (floored at the
service's ``thresholds.min_score``), prints the alert volume per day it would give on the
capture and, with ``--labels``, the entity-level precision and recall at it. ``--write-config``
writes the values as ``[namespaces."<ns>"] threshold = ...`` overrides for the config file.
"""

from __future__ import annotations

import argparse

from churnguard.config import load_settings
from churnguard.errors import ConfigError
from churnguard.offline import tuning
from churnguard.offline.capture import read_capture


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser(
        "suggest",
        help="per-namespace thresholds at a target alert rate",
        description=__doc__,
    )
    p.add_argument("--features", required=True, help="captured rows (replay --capture, JSONL)")
    p.add_argument(
        "--target-rate", type=float, required=True, help="share of profiles to alert on, e.g. 0.001"
    )
    p.add_argument("--labels", help="labels.jsonl (simulator format): adds precision and recall")
    p.add_argument("--config", help="churnguard TOML config (for thresholds.min_score)")
    p.add_argument("--min-score", type=float, help="floor under every threshold (default: config)")
    p.add_argument("--write-config", metavar="OUT.toml", help="write [namespaces] overrides here")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    min_score = settings.thresholds.min_score if args.min_score is None else args.min_score
    try:
        rows = read_capture(args.features)
    except OSError as exc:
        raise ConfigError(f"cannot read capture {args.features}: {exc.strerror}") from exc
    except ValueError as exc:  # msgspec.DecodeError / ValidationError
        raise ConfigError(f"{args.features} is not a feature capture: {exc}") from exc
    if not rows:
        raise ConfigError(f"{args.features} holds no captured rows")
    labels = tuning.read_labels(args.labels) if args.labels else None
    suggestions = tuning.suggest(rows, args.target_rate, min_score=min_score, labels=labels)
    print(tuning.render_table(suggestions, with_labels=labels is not None))
    if args.write_config:
        days = tuning.capture_span_days(rows)
        header = (
            f"churnguard thresholds suggest --target-rate {args.target_rate:g}"
            f" (floor {min_score:g}) on {len(rows):,} profiles over {days * 24:.1f} h",
        )
        thresholds = {s.namespace: s.threshold for s in suggestions if s.profiles}
        path = tuning.write_config(args.write_config, thresholds, header=header)
        print(f"wrote {path}")
    return 0
