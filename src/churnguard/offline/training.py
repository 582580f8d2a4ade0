"""Build model bundles offline: fit the baseline hierarchy on benign rows, evaluate, save.

The service learns online from an empty model; a bundle lets a fresh install start from
baselines learned elsewhere (the shipped ``models/default``, or one retrained from a capture
of what the service itself saw). Training reuses the service's own :class:`Hierarchy`, so
a bundle has exactly the keys (``wl:``/``ns:``/``cluster:``), per-scope detector settings,
seeds and poisoning guard the scorer uses; only the rows differ: entities that labels mark
malicious (simulation) or rows that alerted (capture) are never learned.

Everything is a function of the inputs: no wall clock, no temporary paths in the manifest,
``bundle_version`` = a hash of the content. The same command gives the same bundle.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from churnguard.config import Settings
from churnguard.errors import ConfigError
from churnguard.offline.capture import read_capture, write_capture
from churnguard.offline.evaluate import evaluate, read_labels
from churnguard.offline.replay import ReplayResult, replay_files
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import FeatureSpec, load_spec, spec_path
from churnguard.scoring.baselines import Hierarchy, level_of_key
from churnguard.scoring.detectors import BatchIsolationForest, Detector
from churnguard.scoring.learning import LearningGate
from churnguard.scoring.scorer import Scored, Scorer
from churnguard.simulate import FILES, SimParams, generate, write
from churnguard.store import FORMAT, Bundle, Entry, Manifest, save_bundle

LEVELS = ("workload", "namespace", "cluster")
LEARN_CHUNK = 512  # rows per learn_many, the size of a busy pipeline tick
HOLDOUT_SEED_OFFSET = 1  # simulated bundles are evaluated on the next seed, never on train data


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """One simulation on disk: the telemetry files and the labels of its attacks."""

    directory: Path
    telemetry: list[str]
    labels: Path
    summary: dict[str, Any]


def simulate_to(
    directory: str | Path, *, seed: int, hours: float, namespaces: int = 20
) -> SimulatedRun:
    """``churnguard simulate`` as a function: write labelled telemetry into ``directory``."""
    params = SimParams(seed=seed, hours=hours, namespaces=namespaces)
    paths = write(generate(params), directory)
    return SimulatedRun(
        directory=Path(directory),
        telemetry=[str(paths[fmt]) for fmt in FILES],
        labels=paths["labels"],
        summary=json.loads(paths["summary"].read_text()),
    )


def replay_with_capture(
    telemetry: Sequence[str],
    capture: str | Path,
    settings: Settings | None = None,
    *,
    model_dir: str | Path | None = None,
    use_bundle: bool = True,
) -> ReplayResult:
    """``churnguard replay ... --capture`` as a function (what the notebooks start from)."""
    from churnguard.wiring import make_pipeline  # wiring imports the scorer stack lazily

    settings = settings or Settings()
    pipeline = make_pipeline(
        settings, model_dir=None if model_dir is None else str(model_dir), use_bundle=use_bundle
    )
    result = replay_files(telemetry, settings, pipeline=pipeline)
    write_capture(capture, result.scored)
    return result


@dataclass
class TrainingData:
    """Profiles to learn from, the entities labelled malicious, and what the data was."""

    profiles: list[Profile]
    learn: list[Profile]
    malicious: set[str]
    description: dict[str, Any] = field(default_factory=dict)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(profiles: Sequence[Profile], learn: Sequence[Profile], **source: Any) -> dict:
    start = min((p.window_start for p in profiles), default=0.0)
    end = max((p.window_end for p in profiles), default=0.0)
    return {
        **source,
        "profiles": len(profiles),
        "rows": len(learn),
        "entities": len({p.entity.key() for p in profiles}),
        "start": _iso(start),
        "end": _iso(end),
    }


def malicious_keys(labels_path: str | Path) -> set[str]:
    """Entity keys (``EntityRef.key()``) of every labelled malicious entity."""
    return {label.key() for label in read_labels(labels_path)}


def from_simulation(run: SimulatedRun, settings: Settings) -> TrainingData:
    """Profiles of a simulated run; labelled malicious entities are not learned."""
    profiles = replay_files(run.telemetry, settings).profiles
    bad = malicious_keys(run.labels)
    learn = [p for p in profiles if p.entity.key() not in bad]
    desc = _describe(
        profiles,
        learn,
        source="simulate",
        seed=run.summary["seed"],
        hours=run.summary["hours"],
        malicious_entities=len(bad),
    )
    return TrainingData(profiles, learn, bad, desc)


def from_capture(path: str | Path, labels: str | Path | None = None) -> TrainingData:
    """Rows the service captured; rows that alerted (and labelled entities) are not learned."""
    try:
        raw = Path(path).read_bytes()
        rows = read_capture(path)
    except OSError as exc:
        raise ConfigError(f"cannot read capture {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not a feature capture: {exc}") from exc
    if not rows:
        raise ConfigError(f"{path} holds no captured rows")
    bad = malicious_keys(labels) if labels else set()
    profiles = [r.profile for r in rows]
    learn = [r.profile for r in rows if not r.alerted and r.profile.entity.key() not in bad]
    desc = _describe(
        profiles,
        learn,
        source="capture",
        file=Path(path).name,
        sha256=hashlib.sha256(raw).hexdigest(),
        alerted_rows=sum(r.alerted for r in rows),
        labelled=bool(labels),
    )
    return TrainingData(profiles, learn, bad, desc)


def _event_order(profiles: Sequence[Profile]) -> list[Profile]:
    """Event-time order with a total tie-break, so learning order is input-independent."""
    return sorted(profiles, key=lambda p: (p.window_end, p.entity.key(), p.window_start))


def fit_baselines(
    profiles: Sequence[Profile], spec: FeatureSpec, settings: Settings, *, detector: str
) -> dict[str, Detector]:
    """One detector per baseline key, learned the way the scorer learns (same guard, seeds).

    A scikit-learn forest is fitted on its whole reservoir at the end (not left at its last
    periodic refit), so it reflects every row it sampled.
    """
    scoring = msgspec.structs.replace(settings.scoring, detector=detector)
    hierarchy = Hierarchy(scoring, len(spec.names))
    ordered = _event_order(profiles)
    # one call: the guard still goes row by row, and each forest is fitted once, not per chunk
    admits = LearningGate(scoring).admits  # the share cap the scorer applies
    hierarchy.learn(ordered, spec.transform(spec.matrix([p.values for p in ordered])), None, admits)
    models = {key: b.detector for key, b in sorted(hierarchy.baselines.items())}
    for det in models.values():
        if isinstance(det, BatchIsolationForest) and det.pending_:
            det.refit()
    return models


def select_baselines(
    models: dict[str, Detector], settings: Settings, levels: Sequence[str] = LEVELS
) -> dict[str, Detector]:
    """The models worth shipping: at the chosen levels, and able to score on arrival.

    A model that has learned fewer rows than its level's minimum would not score until the
    service had taught it more, so it only costs bundle size. Workload and namespace keys
    name one cluster's objects: a bundle for other clusters keeps only ``cluster``.
    """
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ConfigError(f"unknown baseline level(s) {sorted(unknown)}; choose from {LEVELS}")
    s = settings.scoring
    minimum = {
        "workload": s.workload_min_profiles,
        "namespace": s.namespace_min_profiles,
        "cluster": s.namespace_min_profiles,
    }
    return {
        key: det
        for key, det in models.items()
        if level_of_key(key) in levels and det.n_seen >= minimum[level_of_key(key)]
    }


def metrics_of(
    scored: Sequence[Scored], labels_path: str | Path, benign_entities: int | None = None
) -> dict[str, Any]:
    """:func:`churnguard.offline.evaluate.evaluate` over scored rows, as plain JSON for a manifest.

    ``benign_entities`` defaults to the unlabelled entities among the scored rows.
    """
    labels = read_labels(labels_path)
    if benign_entities is None:
        bad = {label.key() for label in labels}
        benign_entities = len({s.profile.entity.key() for s in scored} - bad)
    alerts = [s.alert for s in scored if s.alert is not None]
    report = evaluate(labels, alerts, benign_entities=benign_entities, scored=scored)
    doc = msgspec.to_builtins(report)
    for itemised in ("delays_s", "missed", "false_entities"):  # counts stay, lists go
        doc.pop(itemised, None)
    return doc


def rescore(scorer: Scorer, profiles: Sequence[Profile]) -> list[Scored]:
    """Score profiles in event-time order, in chunks, as the pipeline would hand them over."""
    ordered = _event_order(profiles)
    out: list[Scored] = []
    for i in range(0, len(ordered), LEARN_CHUNK):
        out.extend(scorer.score(ordered[i : i + LEARN_CHUNK]))
    return out


def bundle_version(
    models: dict[str, Detector], *, spec_version: str, training: dict, metrics: dict
) -> str:
    """Content hash: every model's bytes plus the manifest's data (not the version itself)."""
    h = hashlib.sha256()
    doc = {"spec_version": spec_version, "training": training, "metrics": metrics}
    h.update(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    for key in sorted(models):
        h.update(key.encode() + b"\0" + hashlib.sha256(models[key].to_bytes()).digest())
    return "sha256-" + h.hexdigest()[:16]


def scorer_for(models: dict[str, Detector] | None, settings: Settings) -> Scorer:
    """A fresh scorer as the service starts: seeded from these models, or empty (``None``).

    The scorer gets deep copies wrapped as an (unsaved) bundle, so its online learning never
    changes the models a caller goes on to save; no serialisation round trip, which for
    scikit-learn forests costs far more than the evaluation itself.
    """
    spec = load_spec(version=settings.pipeline.spec_version)
    if models is None:
        return Scorer(settings, spec)
    copies = {key: copy.deepcopy(det) for key, det in sorted(models.items())}
    manifest = Manifest(
        format=FORMAT,
        bundle_version="unsaved",
        spec_version=spec.version,
        detector="+".join(sorted({d.name for d in copies.values()})),
        files={},
        entries={
            key: Entry(file="-", detector=det.name, n_seen=det.n_seen)
            for key, det in copies.items()
        },
    )
    return Scorer(settings, spec, Bundle(manifest=manifest, models=copies))


def evaluate_on_run(scorer: Scorer, run: SimulatedRun, settings: Settings) -> dict[str, Any]:
    """Metrics of a scorer over a labelled simulation, through the whole pipeline."""
    result = replay_files(run.telemetry, settings, pipeline=Pipeline(settings, scorer=scorer))
    metrics = metrics_of(result.scored, run.labels, run.summary["benign_entities"])
    metrics["evaluated_on"] = {
        "source": "simulate",
        "seed": run.summary["seed"],
        "hours": run.summary["hours"],
        "profiles": len(result.scored),
    }
    return metrics


def evaluate_on_profiles(
    scorer: Scorer, profiles: Sequence[Profile], labels: str | Path
) -> dict[str, Any]:
    """Metrics of a scorer re-scoring captured profiles (in-sample when it trained on them)."""
    metrics = metrics_of(rescore(scorer, profiles), labels)
    metrics["evaluated_on"] = {"source": "training capture (in-sample)"}
    return metrics


@dataclass(frozen=True, slots=True)
class BuildResult:
    manifest: Manifest
    directory: Path
    metrics: dict[str, Any]


def build_bundle(
    out: str | Path,
    data: TrainingData,
    settings: Settings,
    *,
    detector: str = "oif",
    levels: Sequence[str] = LEVELS,
    evaluate_on: SimulatedRun | None = None,
    labels: str | Path | None = None,
    key: bytes | None = None,
) -> BuildResult:
    """Fit, evaluate, and save a bundle into ``out`` (a new or empty directory).

    Evaluation scores with a fresh :class:`Scorer` seeded from the bundle, as the service
    would start: on ``evaluate_on`` (a held-out simulation, through the whole pipeline), or
    on the training profiles themselves re-scored when only ``labels`` are given.
    """
    spec = load_spec(version=settings.pipeline.spec_version)
    fitted = fit_baselines(data.learn, spec, settings, detector=detector)
    models = select_baselines(fitted, settings, levels)
    if not models:
        raise ConfigError("no baseline learned enough benign rows to score: train on more data")
    training = {
        **data.description,
        "detector": detector,
        "levels": list(levels),
        # the spec's scales shape the model view: a bundle is stale once this file changes
        "spec_sha256": hashlib.sha256(spec_path(spec.version).read_bytes()).hexdigest(),
    }
    metrics: dict[str, Any] = {}
    if evaluate_on is not None:
        metrics = evaluate_on_run(scorer_for(models, settings), evaluate_on, settings)
    elif labels is not None:
        metrics = evaluate_on_profiles(scorer_for(models, settings), data.profiles, labels)
    version = bundle_version(models, spec_version=spec.version, training=training, metrics=metrics)
    manifest = save_bundle(
        out,
        models,
        spec_version=spec.version,
        bundle_version=version,
        training=training,
        metrics=metrics,
        key=key,
    )
    return BuildResult(manifest, Path(out), metrics)


def build_from_simulation(
    out: str | Path,
    settings: Settings,
    *,
    seed: int,
    hours: float,
    detector: str = "oif",
    levels: Sequence[str] = LEVELS,
    key: bytes | None = None,
) -> BuildResult:
    """Simulate ``hours`` with ``seed`` to train, the next seed to evaluate, then build."""
    with tempfile.TemporaryDirectory(prefix="churnguard-train-") as tmp:
        train = simulate_to(Path(tmp) / "train", seed=seed, hours=hours)
        held_out = simulate_to(Path(tmp) / "eval", seed=seed + HOLDOUT_SEED_OFFSET, hours=hours)
        data = from_simulation(train, settings)
        return build_bundle(
            out, data, settings, detector=detector, levels=levels, evaluate_on=held_out, key=key
        )
