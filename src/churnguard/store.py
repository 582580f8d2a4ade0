"""Model bundles: save, verify (sha256 of every file, HMAC of the manifest) before load, reload.

A bundle is one flat directory::

    manifest.json             format, versions, training/metrics, {file: sha256}, entries
    model-<hash>.<detector>   one serialised detector per baseline key ("cluster", "ns:...")
    <extra files>             whatever the builder adds (thresholds, notes), hashed the same

Verification reads every file into memory, checks the manifest's signature (when a key is
given) and every hash, refuses files the manifest does not list and names that could leave
the directory, and only then hands the *same bytes* to the deserialisers, so nothing can be
swapped between the check and the load. The HMAC is over the canonical JSON of the manifest
without its ``signature`` field (sorted keys, no whitespace, UTF-8).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from churnguard.config import Settings
from churnguard.errors import ModelError
from churnguard.scoring.detectors import DETECTORS, Detector, detector_from_bytes

FORMAT = "churnguard-bundle/1"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# flat names only: no separators, no leading dot, so a name can never leave the directory
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


class BundleError(ModelError):
    """Base of the reasons a bundle is refused."""


class BundleInvalid(BundleError):
    """Not a churnguard bundle: unreadable or malformed manifest, unsafe file names."""


class BundleTampered(BundleError):
    """A file differs from its manifest hash, is missing, or is not listed at all."""


class SignatureInvalid(BundleError):
    """The manifest's HMAC does not match the key, or a key is required and there is none."""


class SpecMismatch(BundleError):
    """The bundle was trained on another feature spec version."""


class Entry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One baseline's model: which file, which detector, how many rows it learned."""

    file: str
    detector: str
    n_seen: int


class Manifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: str
    bundle_version: str
    spec_version: str
    created_at: str | None = None
    detector: str
    training: dict[str, Any] = msgspec.field(default_factory=dict)
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    files: dict[str, str]
    entries: dict[str, Entry] = msgspec.field(default_factory=dict)
    signature: str | None = None


@dataclass(frozen=True)
class Bundle:
    """A verified, loaded bundle. ``digest`` is the sha256 of the manifest file's bytes."""

    manifest: Manifest
    models: dict[str, Detector]
    extras: dict[str, bytes] = field(default_factory=dict)
    digest: str = ""


def key_from_env(settings: Settings, env: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key from the env var named by ``model.hmac_key_env`` (UTF-8), None if unset."""
    env = os.environ if env is None else env
    value = env.get(settings.model.hmac_key_env, "")
    return value.encode() if value else None


def save_bundle(
    directory: str | Path,
    models: Mapping[str, Detector],
    *,
    spec_version: str,
    bundle_version: str,
    created_at: str | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    key: bytes | None = None,
) -> Manifest:
    """Write models (and extra files) plus a manifest into a new or empty directory.

    The manifest is written last, so a watcher never sees a new manifest before its files.
    ``created_at`` comes from the caller: the library never reads the clock.
    """
    root = Path(directory)
    if root.exists() and any(root.iterdir()):
        raise BundleError(f"{root} is not empty: write each bundle into a new directory")
    contents: dict[str, bytes] = {}
    entries: dict[str, Entry] = {}
    for baseline in sorted(models):
        model = models[baseline]
        name = f"model-{hashlib.sha256(baseline.encode()).hexdigest()[:16]}.{model.name}"
        contents[name] = model.to_bytes()
        entries[baseline] = Entry(file=name, detector=model.name, n_seen=model.n_seen)
    for name, data in (extra_files or {}).items():
        if not _is_safe_name(name) or name in contents:
            raise BundleInvalid(f"extra file name {name!r} is unsafe or taken")
        contents[name] = bytes(data)
    kinds = sorted({e.detector for e in entries.values()})
    manifest = Manifest(
        format=FORMAT,
        bundle_version=bundle_version,
        spec_version=spec_version,
        created_at=created_at,
        detector=kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none"),
        training=dict(training or {}),
        metrics=dict(metrics or {}),
        files={name: _sha256(data) for name, data in sorted(contents.items())},
        entries=entries,
    )
    try:
        doc = msgspec.to_builtins(manifest)
        if key is not None:
            doc["signature"] = manifest.signature = _sign(doc, key)
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise BundleInvalid(f"training/metrics must be plain finite JSON data: {exc}") from exc
    root.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (root / name).write_bytes(data)
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(text)
    os.replace(tmp, root / MANIFEST)
    return manifest


def verify_bundle(
    directory: str | Path, *, spec_version: str | None, key: bytes | None
) -> Manifest:
    """Check a bundle without deserialising anything; raises a :class:`BundleError` subclass.

    ``spec_version=None`` skips the spec check; ``key=None`` accepts unsigned bundles (a
    signature present is then not checked), while with a key an unsigned bundle is refused.
    """
    return _verified(Path(directory), spec_version, key)[0]


def load_bundle(directory: str | Path, *, spec_version: str | None, key: bytes | None) -> Bundle:
    """Verify, then deserialise each model from the very bytes that were verified."""
    manifest, contents, digest = _verified(Path(directory), spec_version, key)
    models = {
        baseline: detector_from_bytes(entry.detector, contents[entry.file])
        for baseline, entry in manifest.entries.items()
    }
    model_files = {entry.file for entry in manifest.entries.values()}
    extras = {name: data for name, data in contents.items() if name not in model_files}
    return Bundle(manifest=manifest, models=models, extras=extras, digest=digest)


class BundleWatcher:
    """Hot reload: ``poll()`` returns a newly verified bundle when the manifest changed.

    A changed bundle that fails verification is not retried until its manifest or files
    change again (so a half-copied bundle is picked up once the copy completes, and a
    tampered one is not re-hashed every poll); the reason stays in ``last_error`` and the
    caller keeps scoring with the bundle it has. Pass the bundle loaded at start-up as
    ``current`` so the first poll does not load it twice.

    Example
    -------
    >>> import tempfile
    >>> from churnguard.scoring.detectors import make_detector
    >>> root = Path(tempfile.mkdtemp()) / "bundle"
    >>> _ = save_bundle(root, {"cluster": make_detector("oif", 3)}, spec_version="1",
    ...                 bundle_version="v1", key=b"k")
    >>> watcher = BundleWatcher(root, spec_version="1", key=b"k")
    >>> watcher.poll().manifest.bundle_version, watcher.poll()
    ('v1', None)
    """

    def __init__(
        self,
        directory: str | Path,
        spec_version: str | None,
        key: bytes | None,
        *,
        current: Bundle | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.spec_version = spec_version
        self.key = key
        self.last_error: str | None = None
        self._loaded = current.digest if current is not None else None
        self._refused: tuple[object, ...] | None = None

    def poll(self) -> Bundle | None:
        try:
            digest = _sha256((self.directory / MANIFEST).read_bytes())
        except OSError as exc:
            self.last_error = f"cannot read {self.directory / MANIFEST}: {exc.strerror}"
            return None
        if digest == self._loaded:
            return None
        fingerprint = (digest, _listing(self.directory))
        if fingerprint == self._refused:
            return None
        try:
            bundle = load_bundle(self.directory, spec_version=self.spec_version, key=self.key)
        except ModelError as exc:
            self._refused, self.last_error = fingerprint, str(exc)
            return None
        self._loaded, self._refused, self.last_error = bundle.digest, None, None
        return bundle


# -- verification -----------------------------------------------------------------------


def _verified(
    root: Path, spec_version: str | None, key: bytes | None
) -> tuple[Manifest, dict[str, bytes], str]:
    raw = _read_manifest(root)
    doc = _parse(raw, root)
    manifest = _validate(doc, root)
    _check_signature(doc, manifest, key, root)
    contents = _read_listed_files(root, manifest)
    if spec_version is not None and manifest.spec_version != spec_version:
        raise SpecMismatch(
            f"bundle {root} was built for feature spec v{manifest.spec_version}, "
            f"expected v{spec_version}"
        )
    return manifest, contents, _sha256(raw)


def _read_manifest(root: Path) -> bytes:
    path = root / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise BundleInvalid(f"{root} is not a model bundle: no {MANIFEST}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleInvalid(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
    return path.read_bytes()


def _parse(raw: bytes, root: Path) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleInvalid(f"{root / MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BundleInvalid(f"{root / MANIFEST} is not a JSON object")
    if doc.get("format") != FORMAT:
        raise BundleInvalid(f"{root} has format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def _validate(doc: dict[str, Any], root: Path) -> Manifest:
    try:
        manifest = msgspec.convert(doc, Manifest)
    except msgspec.ValidationError as exc:
        raise BundleInvalid(f"{root / MANIFEST} is malformed: {exc}") from exc
    for name in manifest.files:
        if not _is_safe_name(name):
            raise BundleInvalid(f"{root / MANIFEST} lists an unsafe file name {name!r}")
    for baseline, entry in manifest.entries.items():
        if entry.file not in manifest.files:
            raise BundleInvalid(f"entry {baseline!r} names unlisted file {entry.file!r}")
        if entry.detector not in DETECTORS:
            raise BundleInvalid(f"entry {baseline!r} has unknown detector {entry.detector!r}")
    return manifest


def _check_signature(
    doc: dict[str, Any], manifest: Manifest, key: bytes | None, root: Path
) -> None:
    if key is None:
        return
    if manifest.signature is None:
        raise SignatureInvalid(f"bundle {root} is unsigned and a signing key is configured")
    if not hmac.compare_digest(manifest.signature, _sign(doc, key)):
        raise SignatureInvalid(f"bundle {root} signature does not match the configured key")


def _read_listed_files(root: Path, manifest: Manifest) -> dict[str, bytes]:
    present: dict[str, os.DirEntry[str]] = {}
    with os.scandir(root) as it:
        for item in it:
            if item.name != MANIFEST:
                present[item.name] = item
    extra = sorted(set(present) - set(manifest.files))
    if extra:
        raise BundleTampered(f"bundle {root} has files its manifest does not list: {extra}")
    missing = sorted(set(manifest.files) - set(present))
    if missing:
        raise BundleTampered(f"bundle {root} is missing files: {missing}")
    contents = {}
    for name, expected in manifest.files.items():
        if not present[name].is_file(follow_symlinks=False):
            raise BundleTampered(f"bundle {root}: {name} is not a regular file")
        data = (root / name).read_bytes()
        if not hmac.compare_digest(_sha256(data), expected.lower()):
            raise BundleTampered(f"bundle {root}: {name} does not match its sha256")
        contents[name] = data
    return contents


def _sign(doc: dict[str, Any], key: bytes) -> str:
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    canonical = json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_safe_name(name: str) -> bool:
    return name != MANIFEST and _SAFE_NAME.fullmatch(name) is not None


def _listing(root: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        with os.scandir(root) as it:
            return tuple(sorted((e.name, *_size_mtime(e)) for e in it))
    except OSError:
        return ()


def _size_mtime(item: os.DirEntry[str]) -> tuple[int, int]:
    st = item.stat(follow_symlinks=False)
    return st.st_size, st.st_mtime_ns
