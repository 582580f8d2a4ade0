"""Work with model bundles (a manifest plus one serialised detector per baseline).

Bundles are checked exactly as the service checks them before loading: every file's
sha256, the manifest's HMAC signature when a key is set, and the feature-spec version.
A refused bundle prints its one-line reason and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

from churnguard.config import load_settings
from churnguard.errors import ConfigError
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
        if args.key_env:
            if not os.environ.get(args.key_env):
                raise ConfigError(f"--key-env {args.key_env}: that variable is not set")
            key: bytes | None = os.environ[args.key_env].encode()
        else:
            key = key_from_env(settings)
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
