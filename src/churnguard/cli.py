"""The ``churnguard`` command: parses flags and hands off to one module per subcommand.

Each subcommand lives in ``churnguard.commands.<name>`` with ``add_arguments(parser)`` and
``run(args) -> int``. Only the module of the subcommand being run is imported (the list and
its one-line help are in :data:`COMMANDS`): importing every command would load Kafka,
numpy and the simulator for ``churnguard --help``. Errors churnguard raises on purpose print
one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from churnguard import __version__
from churnguard.errors import ChurnguardError

# (subcommand, module under churnguard.commands, one-line help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("features", "features", "profile entities from telemetry files and write feature rows"),
    ("replay", "replay", "run the whole detection pipeline over files and write alerts"),
    ("evaluate", "evaluate", "score alerts against labels, side by side with baselines"),
    ("simulate", "simulate", "write labelled synthetic cluster telemetry in the real formats"),
    ("serve", "serve", "run the Kafka consumer service"),
    ("produce", "produce", "load telemetry files into Kafka topics"),
    ("demo", "demo", "embedded broker + simulated day + consumer service, end to end"),
    ("thresholds", "thresholds", "suggest per-namespace thresholds from captured features"),
    ("model", "model", "build and verify model bundles"),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` set just that subcommand's arguments (the others
    are listed with their help line, not imported)."""
    parser = argparse.ArgumentParser(
        prog="churnguard",
        description="Catch containers and cloud instances used to evade monitoring, "
        "learned per namespace and workload so benign Kubernetes churn stays quiet.",
    )
    parser.add_argument("--version", action="version", version=f"churnguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(f"churnguard.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"churnguard.commands.{module_name}":
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in args_in if not a.startswith("-")), None)
    known = {name for name, _, _ in COMMANDS}
    parser = build_parser(only=chosen if chosen in known else "")
    args = parser.parse_args(args_in)
    try:
        return int(args._run(args) or 0)
    except ChurnguardError as exc:
        print(f"churnguard {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
