"""Work with model bundles (a manifest plus one serialised detector per baseline).

Bundles are checked exactly as the service checks them before loading: every file's
sha256, the manifest's HMAC signature when a key is set, and the feature-spec version.
A refused bundle prints its one-line reason and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from churnguard.config import Settings, load_settings
from churnguard.errors import ConfigError
from churnguard.offline import training
from churnguard.offline.training import LEVELS
from churnguard.scoring.detectors import DETECTORS
from churnguard.store import Manifest, key_from_env, verify_bundle

Handler = Callable[[argparse.Namespace], int]
# subcommand name -> function that adds its flags to the subparser and returns its handler
ACTIONS: dict[str, Callable[[argparse.ArgumentParser], Handler]] = {}


def action(
    configure: Callable[[argparse.ArgumentParser], Handler],
) -> Callable[[argparse.ArgumentParser], Handler]:
    """Register a ``churnguard model <name>`` subcommand; its docstring's first line is the help."""
    ACTIONS[configure.__name__] = configure
    return configure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    for name, configure in ACTIONS.items():
        doc = (configure.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc)
        p.set_defaults(_model_run=configure(p))


def run(args: argparse.Namespace) -> int:
    return args._model_run(args)


def hmac_key(key_env: str | None, settings: Settings) -> bytes | None:
    """The bundle key from --key-env's variable, else from the config's model.hmac_key_env."""
    if key_env:
        if not os.environ.get(key_env):
            raise ConfigError(f"--key-env {key_env}: that variable is not set")
        return os.environ[key_env].encode()
    return key_from_env(settings)


@action
def verify(parser: argparse.ArgumentParser) -> Handler:
    """Verify a bundle (hashes, HMAC, spec version) and print its summary.

    The key comes from the env var named by --key-env, else by the config's
    model.hmac_key_env; without a key the signature is not checked. The spec version
    defaults to the config's pipeline.spec_version.
    """
    parser.add_argument("directory", metavar="DIR", help="bundle directory")
    parser.add_argument("--key-env", metavar="VAR", help="env var holding the HMAC key")
    parser.add_argument("--spec-version", metavar="V", help="feature spec the bundle must match")
    parser.add_argument("--config", help="churnguard TOML config (model and pipeline sections)")

    def run_verify(args: argparse.Namespace) -> int:
        settings = load_settings(args.config)
        key = hmac_key(args.key_env, settings)
        spec_version = args.spec_version or settings.pipeline.spec_version
        manifest = verify_bundle(args.directory, spec_version=spec_version, key=key)
        print("\n".join(summary_lines(args.directory, manifest, signed_checked=key is not None)))
        return 0

    return run_verify


def summary_lines(directory: str, manifest: Manifest, *, signed_checked: bool) -> list[str]:
    """What an operator checks before shipping: versions, signature state, baselines, metrics."""
    if signed_checked:
        signature = "valid (HMAC-SHA256)"
    elif manifest.signature:
        signature = "present, not checked (no key)"
    else:
        signature = "none"
    lines = [
        f"bundle     {directory}: OK",
        f"version    {manifest.bundle_version}",
        f"spec       v{manifest.spec_version}",
        f"detector   {manifest.detector}",
        f"created    {manifest.created_at or '-'}",
        f"signature  {signature}",
        f"files      {len(manifest.files)} (sha256 verified)",
        f"entries    {len(manifest.entries)}",
    ]
    width = max((len(k) for k in manifest.entries), default=0)
    for baseline, entry in sorted(manifest.entries.items()):
        lines.append(f"  {baseline:<{width}}  {entry.detector}  n_seen={entry.n_seen}")
    for title, data in (("metrics", manifest.metrics), ("training", manifest.training)):
        lines.append(f"{title:<10} {'-' if not data else ''}".rstrip())
        lines += [f"  {k}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(data.items())]
    return lines


@action
def build(parser: argparse.ArgumentParser) -> Handler:
    """Build a model bundle from a simulation or a capture, evaluate it, and save it signed.

    From --seed/--hours: simulate that many hours to train and the next seed to evaluate
    (recall, precision, false alerts against its labels). From --capture: learn the rows that
    did not alert (minus --labels' entities), evaluated in-sample when --labels is given.
    Deterministic: the same command writes the same bytes (bundle_version = content hash).
    """
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="new (or, with --force, old) bundle directory"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--capture", metavar="ROWS.jsonl", help="train on captured rows")
    source.add_argument("--seed", type=int, default=None, help="simulation seed (default 7)")
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours (default 6)")
    parser.add_argument("--labels", help="labels.jsonl for --capture: excluded and evaluated")
    parser.add_argument(
        "--detector",
        choices=sorted(DETECTORS),
        default=None,
        help="detector kind (default: the config's scoring.detector)",
    )
    parser.add_argument(
        "--levels",
        default=",".join(LEVELS),
        help="baseline levels to ship, comma-separated (default: all)",
    )
    parser.add_argument("--key-env", metavar="VAR", help="env var holding the HMAC signing key")
    parser.add_argument("--config", help="churnguard TOML config (scoring and model sections)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")

    def run_build(args: argparse.Namespace) -> int:
        settings = load_settings(args.config)
        key = hmac_key(args.key_env, settings)
        detector = args.detector or settings.scoring.detector
        levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
        with staged(args.out, force=args.force) as stage:
            if args.capture:
                data = training.from_capture(args.capture, args.labels)
                result = training.build_bundle(
                    stage,
                    data,
                    settings,
                    detector=detector,
                    levels=levels,
                    labels=args.labels,
                    key=key,
                )
            else:
                if args.labels:
                    raise ConfigError("--labels goes with --capture (simulations carry labels)")
                result = training.build_from_simulation(
                    stage,
                    settings,
                    seed=7 if args.seed is None else args.seed,
                    hours=args.hours,
                    detector=detector,
                    levels=levels,
                    key=key,
                )
        # read back exactly as the service will before it trusts the bundle
        manifest = verify_bundle(args.out, spec_version=result.manifest.spec_version, key=key)
        print("\n".join(summary_lines(args.out, manifest, signed_checked=key is not None)))
        return 0

    return run_build


@contextmanager
def staged(out: str, *, force: bool) -> Iterator[Path]:
    """A fresh sibling directory that replaces ``out`` only once the build succeeded."""
    target = Path(out)
    if target.exists() and any(target.iterdir()) and not force:
        raise ConfigError(f"{target} is not empty (pass --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield stage / "bundle"
        if target.exists():
            shutil.rmtree(target)
        (stage / "bundle").rename(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
