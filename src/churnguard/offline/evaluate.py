"""Detection quality against labels, and the harness that compares churnguard with baselines.

Counting follows the unit an analyst triages and the simulator labels (docs/contracts.md,
docs/evaluation.md):

- an attack label is *detected* when an alert names its entity (pods by namespace + pod,
  instances by instance id) and the alert's window ends at or after the label's ``start``:
  an alert on a hijacked long-running pod that closed before the attack began cannot have
  seen it, and counts as false. Its *delay* is that first alert's ``window.end`` minus
  ``start``;
- an alert is *true* when it detects a label that way, else *false*; precision = true /
  alerts. Alerts are deduplicated by ``alert_id`` first (a redelivered alert never pages
  twice, so it is not counted twice);
- false alerts per 1,000 benign entities (``summary.json`` ``benign_entities``) and, when the
  scored rows are known, per 1,000 benign profiles scored outside learning mode: what an
  operator sees once the baselines have settled.

:func:`compare_on_simulation` replays one simulated run through churnguard as configured, one
cluster-wide model, river HalfSpaceTrees with its defaults, and the static rules
(:mod:`churnguard.scoring.rules`), so every system sees the same bytes.

Over 400 lines on purpose: the counting rules, the comparison systems and the
report are read together when a number in docs/evaluation.md is questioned.
"""

from __future__ import annotations

import statistics
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import orjson

from churnguard.alerts.alert import Alert
from churnguard.config import Settings
from churnguard.errors import ConfigError
from churnguard.profiling.profile import Profile

__all__ = [
    "SYSTEMS",
    "FalseEntity",
    "Label",
    "Report",
    "TechniqueResult",
    "compare_on_simulation",
    "evaluate",
    "format_details",
    "format_reports",
    "pool",
    "read_alerts",
    "read_benign_entities",
    "read_labels",
]

_T = TypeVar("_T")

# column names of the side-by-side table, in order
CHURNGUARD = "churnguard"
CLUSTER_WIDE = "cluster-wide model"
RIVER_HST = "river HST defaults"
PLAIN_IFOREST = "plain IsolationForest"
STATIC_RULES = "static rules"
SYSTEMS = (CHURNGUARD, CLUSTER_WIDE, RIVER_HST, PLAIN_IFOREST, STATIC_RULES)
OTHER_KIND = "other"  # a benign entity the simulator did not list (files mode)


class Label(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One malicious entity, as the simulator writes it to ``labels.jsonl``."""

    kind: str  # "pod" | "container" | "instance"
    technique: str
    start: float
    end: float
    namespace: str | None = None
    pod: str | None = None
    instance_id: str | None = None
    scenario: str = ""
    node: str | None = None  # containers outside the orchestrator: node + container id
    container_id: str | None = None

    def key(self) -> str:
        """Same text as ``EntityRef.key()`` of the labelled entity."""
        if self.kind == "instance":
            return f"instance/{self.instance_id}"
        if self.kind == "container":
            return f"container/{self.node}/{self.container_id}"
        return f"{self.namespace}/{self.pod}"


class TechniqueResult(msgspec.Struct, kw_only=True):
    labels: int
    detected: int
    recall: float | None


class KindResult(msgspec.Struct, kw_only=True):
    """False alerts on one benign kind (``benign.jsonl``: the scenario behind an entity)."""

    entities: int  # benign entities of this kind in the measured period
    false_alerts: int
    days: float  # measured simulated days
    per_day: float | None = None
    per_1k_entities: float | None = None


class Miss(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A missed label and how close its entity came: its highest-scoring window after the
    attack began (when the scored rows are known), so tuning can see by how much it missed."""

    label: Label
    windows: int = 0  # the entity's windows scored from the attack's start
    best_score: float | None = None
    threshold: float | None = None  # the threshold that window was held to
    level: str | None = None  # the baseline level that scored it (learning = could not alert)


class FalseEntity(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A benign entity that was alerted on: enough to find out why without the raw alerts."""

    entity: str  # EntityRef.key()
    kind: str
    alerts: int
    namespace: str | None = None
    workload: str | None = None
    levels: list[str] = msgspec.field(default_factory=list)  # baseline levels that alerted
    techniques: list[str] = msgspec.field(default_factory=list)
    top_features: list[str] = msgspec.field(default_factory=list)  # most frequent first


class Report(msgspec.Struct, kw_only=True):
    """One system's numbers on one (or pooled) labelled run; None = not computable.

    The raw counts are kept beside the rates so reports of several seeds can be pooled
    (:func:`pool`) instead of averaging ratios.
    """

    labels: int
    detected: int
    recall: float | None
    by_technique: dict[str, TechniqueResult]
    alerts: int
    true_alerts: int
    false_alerts: int
    precision: float | None
    benign_entities_alerted: int
    benign_entities: int | None
    false_per_1k_entities: float | None
    benign_profiles: int | None  # benign profiles scored outside learning mode
    false_alerts_after_learning: int | None
    false_per_1k_profiles: float | None
    delay_median_s: float | None
    delay_max_s: float | None
    delays_s: list[float]
    missed: list[Miss]
    false_entities: list[FalseEntity]
    by_scenario: dict[str, TechniqueResult] = msgspec.field(default_factory=dict)
    by_benign_kind: dict[str, KindResult] = msgspec.field(default_factory=dict)


# ---- reading files ---------------------------------------------------------------------------


def _read_jsonl(path: str | Path, type_: type[_T], what: str) -> list[_T]:
    decoder = msgspec.json.Decoder(type_)
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}s {path}: {exc.strerror}") from exc
    out: list[_T] = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(decoder.decode(line))
            except msgspec.DecodeError as exc:
                raise ConfigError(f"{path}:{n}: not a valid {what}: {exc}") from exc
    return out


def read_labels(path: str | Path) -> list[Label]:
    return _read_jsonl(path, Label, "label")


def read_alerts(path: str | Path) -> list[Alert]:
    return _read_jsonl(path, Alert, "alert")


def read_benign_entities(summary_path: str | Path) -> int:
    """``benign_entities`` from a simulator ``summary.json``."""
    try:
        value = orjson.loads(Path(summary_path).read_bytes())["benign_entities"]
        return int(value)
    except OSError as exc:
        raise ConfigError(f"cannot read summary {summary_path}: {exc.strerror}") from exc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{summary_path}: no integer benign_entities ({exc!r})") from exc


# ---- metrics ---------------------------------------------------------------------------------


class _ScoredLike(Protocol):
    """``scorer.Scored`` or a ``capture.CaptureRow``: all the per-profile rate needs."""

    profile: Profile
    level: str
    score: float
    threshold: float


def _as_labels(labels: Iterable[Label | Mapping[str, Any]]) -> list[Label]:
    return [x if isinstance(x, Label) else msgspec.convert(x, Label) for x in labels]


def _ratio(num: int, den: int | None, per: float = 1.0) -> float | None:
    return per * num / den if den else None


def evaluate(
    labels: Iterable[Label | Mapping[str, Any]],
    alerts: Iterable[Alert],
    *,
    benign_entities: int | None = None,
    scored: Iterable[_ScoredLike] | None = None,
    learning_levels: Sequence[str] = ("learning",),
    benign_kinds: Mapping[str, str] | None = None,
    days: float = 1.0,
) -> Report:
    """Score alerts against labels (and, given the scored rows, per benign profile).

    ``labels`` may be simulator dicts (``SimResult.labels``) or :class:`Label` rows.
    ``learning_levels`` are the baseline levels that do not count as "after learning".
    ``benign_kinds`` maps each benign entity of the measured period (``EntityRef.key()``)
    to its kind: false alerts are then also counted per kind, per one of ``days``.
    """
    labs = _as_labels(labels)
    by_key: dict[str, list[Label]] = defaultdict(list)
    for lab in labs:
        by_key[lab.key()].append(lab)

    def matches(key: str, window_end: float) -> list[int]:
        return [id(lab) for lab in by_key.get(key, ()) if window_end >= lab.start]

    unique = list({a.alert_id: a for a in alerts}.values())
    first: dict[int, float] = {}  # id(label) -> earliest matching alert window end
    false: list[Alert] = []
    for a in unique:
        hit = [lid for key in a.entity_keys() for lid in matches(key, a.window.end)]
        for lid in hit:
            first[lid] = min(first.get(lid, a.window.end), a.window.end)
        if not hit:
            false.append(a)

    techniques: dict[str, list[bool]] = defaultdict(list)
    scenarios: dict[str, list[bool]] = defaultdict(list)
    for lab in labs:
        techniques[lab.technique].append(id(lab) in first)
        scenarios[lab.scenario or "-"].append(id(lab) in first)
    delays = sorted(round(first[id(lab)] - lab.start, 3) for lab in labs if id(lab) in first)

    missed = [Miss(label=lab) for lab in labs if id(lab) not in first]
    benign_profiles = false_after = None
    if scored is not None:
        rows = list(scored)
        benign_profiles = sum(
            1
            for s in rows
            if s.level not in learning_levels
            and not matches(s.profile.entity.key(), s.profile.window_end)
        )
        false_after = sum(1 for a in false if a.baseline.level not in learning_levels)
        _closest(missed, rows)

    return _derive(
        labels=len(labs),
        detected=len(first),
        by_technique={
            t: TechniqueResult(labels=len(h), detected=sum(h), recall=None)
            for t, h in sorted(techniques.items())
        },
        alerts=len(unique),
        false_alerts=len(false),
        benign_entities=benign_entities,
        benign_profiles=benign_profiles,
        false_after=false_after,
        delays=delays,
        missed=missed,
        false_entities=_false_entities(false),
        by_scenario={
            name: TechniqueResult(labels=len(h), detected=sum(h), recall=None)
            for name, h in sorted(scenarios.items())
        },
        by_benign_kind=_by_kind(false, benign_kinds, days) if benign_kinds is not None else {},
    )


def _by_kind(false: list[Alert], kinds: Mapping[str, str], days: float) -> dict[str, KindResult]:
    """False alerts per benign kind: the unit the issue-13 targets are stated in."""
    out = {
        kind: KindResult(entities=n, false_alerts=0, days=days)
        for kind, n in sorted(Counter(kinds.values()).items())
    }
    for a in false:
        kind = kinds.get(a.entity.key(), OTHER_KIND)
        out.setdefault(kind, KindResult(entities=0, false_alerts=0, days=days)).false_alerts += 1
    return out


def _closest(missed: list[Miss], rows: list[_ScoredLike]) -> None:
    """Fill each miss with its entity's highest-scoring window from the attack's start."""
    by_key: dict[str, list[Miss]] = defaultdict(list)
    for m in missed:
        by_key[m.label.key()].append(m)
    for s in rows:
        for m in by_key.get(s.profile.entity.key(), ()):
            if s.profile.window_end < m.label.start:
                continue
            m.windows += 1
            if m.best_score is None or s.score > m.best_score:
                m.best_score, m.threshold = round(s.score, 4), round(s.threshold, 4)
                m.level = s.level


def _derive(
    *,
    labels: int,
    detected: int,
    by_technique: dict[str, TechniqueResult],
    alerts: int,
    false_alerts: int,
    benign_entities: int | None,
    benign_profiles: int | None,
    false_after: int | None,
    delays: list[float],
    missed: list[Miss],
    false_entities: list[FalseEntity],
    by_scenario: dict[str, TechniqueResult],
    by_benign_kind: dict[str, KindResult],
) -> Report:
    """The rates from the counts: one place, shared by :func:`evaluate` and :func:`pool`."""
    for t in [*by_technique.values(), *by_scenario.values()]:
        t.recall = _ratio(t.detected, t.labels)
    for k in by_benign_kind.values():
        k.per_day = k.false_alerts / k.days if k.days > 0 else None
        k.per_1k_entities = _ratio(k.false_alerts, k.entities, 1000.0)
    true_alerts = alerts - false_alerts
    return Report(
        labels=labels,
        detected=detected,
        recall=_ratio(detected, labels),
        by_technique=by_technique,
        alerts=alerts,
        true_alerts=true_alerts,
        false_alerts=false_alerts,
        precision=_ratio(true_alerts, alerts),
        benign_entities_alerted=len(false_entities),
        benign_entities=benign_entities,
        false_per_1k_entities=_ratio(false_alerts, benign_entities, 1000.0),
        benign_profiles=benign_profiles,
        false_alerts_after_learning=false_after,
        false_per_1k_profiles=(
            None if false_after is None else _ratio(false_after, benign_profiles, 1000.0)
        ),
        delay_median_s=statistics.median(delays) if delays else None,
        delay_max_s=max(delays) if delays else None,
        delays_s=delays,
        missed=missed,
        false_entities=false_entities,
        by_scenario=by_scenario,
        by_benign_kind=by_benign_kind,
    )


def _false_entities(false: list[Alert]) -> list[FalseEntity]:
    grouped: dict[str, list[Alert]] = defaultdict(list)
    for a in false:
        grouped[a.entity.key()].append(a)
    out = []
    for key, items in grouped.items():
        e = items[0].entity
        features = Counter(x.feature for a in items for x in a.explanation)
        out.append(
            FalseEntity(
                entity=key,
                kind=e.kind,
                alerts=len(items),
                namespace=e.namespace,
                workload=e.workload,
                levels=sorted({a.baseline.level for a in items}),
                techniques=sorted({t for a in items for t in a.techniques}),
                top_features=[f for f, _ in features.most_common(3)],
            )
        )
    return sorted(out, key=lambda f: (-f.alerts, f.entity))


def _sum_optional(values: Iterable[int | None]) -> int | None:
    vals = list(values)
    return None if any(v is None for v in vals) else sum(v for v in vals if v is not None)


def pool(reports: Sequence[Report]) -> Report:
    """Several runs (seeds) as one: counts summed, rates recomputed from the sums."""

    def summed(get: Callable[[Report], dict[str, TechniqueResult]]) -> dict[str, TechniqueResult]:
        out: dict[str, TechniqueResult] = {}
        for r in reports:
            for t, res in get(r).items():
                acc = out.setdefault(t, TechniqueResult(labels=0, detected=0, recall=None))
                acc.labels += res.labels
                acc.detected += res.detected
        return dict(sorted(out.items()))

    kinds: dict[str, KindResult] = {}
    for r in reports:
        for kind, res in r.by_benign_kind.items():
            acc = kinds.setdefault(kind, KindResult(entities=0, false_alerts=0, days=0.0))
            acc.entities += res.entities
            acc.false_alerts += res.false_alerts
            acc.days += res.days
    return _derive(
        labels=sum(r.labels for r in reports),
        detected=sum(r.detected for r in reports),
        by_technique=summed(lambda r: r.by_technique),
        alerts=sum(r.alerts for r in reports),
        false_alerts=sum(r.false_alerts for r in reports),
        benign_entities=_sum_optional(r.benign_entities for r in reports),
        benign_profiles=_sum_optional(r.benign_profiles for r in reports),
        false_after=_sum_optional(r.false_alerts_after_learning for r in reports),
        delays=sorted(d for r in reports for d in r.delays_s),
        missed=[m for r in reports for m in r.missed],
        false_entities=sorted(
            (f for r in reports for f in r.false_entities), key=lambda f: (-f.alerts, f.entity)
        ),
        by_scenario=summed(lambda r: r.by_scenario),
        by_benign_kind=dict(sorted(kinds.items())),
    )


# ---- views -----------------------------------------------------------------------------------


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _recall_cell(recall: float | None, detected: int, labels: int) -> str:
    return "-" if recall is None else f"{recall:.2f} ({detected}/{labels})"


def _delay(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def format_reports(named_reports: Mapping[str, Report]) -> str:
    """Systems as columns, metrics as rows: a recall row per technique and per attack
    scenario, and false alerts per simulated day for each benign kind."""
    names = list(named_reports)
    reports = [named_reports[n] for n in names]
    techniques = sorted({t for r in reports for t in r.by_technique})
    scenarios = sorted({t for r in reports for t in r.by_scenario})
    kinds = sorted({k for r in reports for k in r.by_benign_kind})

    def recall_row(t: str, get: Callable[[Report], dict[str, TechniqueResult]]) -> Callable:
        def cell(r: Report) -> str:
            res = get(r).get(t)
            return "-" if res is None else _recall_cell(res.recall, res.detected, res.labels)

        return cell

    def kind_row(kind: str) -> Callable[[Report], str]:
        def cell(r: Report) -> str:
            res = r.by_benign_kind.get(kind)
            if res is None or res.per_day is None:
                return "-"
            return f"{res.per_day:.2f} ({res.false_alerts}/{res.entities:,})"

        return cell

    rows: list[tuple[str, Callable[[Report], str]]] = [
        ("recall", lambda r: _recall_cell(r.recall, r.detected, r.labels)),
        *((f"  {t}", recall_row(t, lambda r: r.by_technique)) for t in techniques),
        *(
            (f"  {'' if i else 'scenario '}{t}", recall_row(t, lambda r: r.by_scenario))
            for i, t in enumerate(scenarios)
        ),
        ("alerts", lambda r: f"{r.alerts:,}"),
        ("precision", lambda r: _num(r.precision, ".2f")),
        ("false alerts", lambda r: f"{r.false_alerts:,}"),
        ("benign entities alerted", lambda r: f"{r.benign_entities_alerted:,}"),
        ("false / 1k benign entities", lambda r: _num(r.false_per_1k_entities, ".1f")),
        ("false / 1k benign profiles*", lambda r: _num(r.false_per_1k_profiles, ".2f")),
        ("detection delay median", lambda r: _delay(r.delay_median_s)),
        ("detection delay max", lambda r: _delay(r.delay_max_s)),
        *(
            (f"{'false/day ' if i == 0 else '  '}{kind}", kind_row(kind))
            for i, kind in enumerate(kinds)
        ),
    ]
    per_profile = any(r.benign_profiles is not None for r in reports)
    if not per_profile:  # needs the scored rows: leave the row out rather than show dashes
        rows = [row for row in rows if not row[0].endswith("*")]
    table = [["", *names]] + [[title, *(get(r) for r in reports)] for title, get in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]
    if per_profile:
        lines.append("* scored outside learning mode")
    if kinds:
        lines.append(
            "false/day: false alerts per simulated day of that benign kind (false/entities)"
        )
    return "\n".join(lines)


def format_details(report: Report, *, top: int = 10) -> str:
    """What was missed and the noisiest benign entities: where tuning starts."""
    lines = [f"missed ({len(report.missed)}):"]
    for m in sorted(report.missed, key=lambda m: (m.label.technique, m.label.scenario)):
        lab = m.label
        closest = ""
        if m.best_score is not None:
            closest = f"  best {m.best_score:.3f} vs {m.threshold:.3f} ({m.level}, {m.windows} w)"
        lines.append(f"  {lab.technique:<10} {lab.scenario:<24} {lab.key()}{closest}")
    lines.append(
        f"false alerts by entity ({report.benign_entities_alerted} entities,"
        f" top {min(top, report.benign_entities_alerted)}):"
    )
    lines += [
        f"  {f.alerts:>3}x {f.entity} ({f.workload or 'bare'}) {'/'.join(f.levels)}"
        f" {','.join(f.techniques)} [{', '.join(f.top_features)}]"
        for f in report.false_entities[:top]
    ]
    return "\n".join(lines)


# ---- the harness -----------------------------------------------------------------------------


def _copy(settings: Settings, **scoring: Any) -> Settings:
    """A deep copy with some scoring fields changed: the caller's settings stay untouched."""
    fresh = msgspec.convert(msgspec.to_builtins(settings), Settings)
    return msgspec.structs.replace(fresh, scoring=msgspec.structs.replace(fresh.scoring, **scoring))


def _pipelines(settings: Settings, model_dir: str | None) -> dict[str, Callable[[], Any]]:
    """A factory per system, each giving a fresh pipeline (no state shared between runs).

    churnguard runs without the shipped bundle unless ``model_dir`` is given: the shipped
    bundle was fitted on simulated days, and starting from it would let the evaluation see
    data of the kind it is scored on before the run begins. Every system then learns online
    from the same empty start, which is also what makes the columns comparable.
    """
    from churnguard.pipeline import Pipeline
    from churnguard.profiling.spec import load_spec
    from churnguard.scoring.rules import StaticRuleScorer
    from churnguard.wiring import make_pipeline

    own = _copy(settings)
    cluster = _copy(settings, hierarchy=False)
    hst = _copy(settings, hierarchy=False, detector="hst")
    iforest = _copy(settings, hierarchy=False, detector="iforest")
    rules = _copy(settings)
    spec = load_spec(version=settings.pipeline.spec_version)
    return {
        CHURNGUARD: lambda: make_pipeline(
            own, model_dir=model_dir, use_bundle=model_dir is not None
        ),
        CLUSTER_WIDE: lambda: make_pipeline(cluster, use_bundle=False),
        RIVER_HST: lambda: make_pipeline(hst, use_bundle=False),
        PLAIN_IFOREST: lambda: make_pipeline(iforest, use_bundle=False),
        STATIC_RULES: lambda: Pipeline(rules, scorer=StaticRuleScorer(rules, spec), spec=spec),
    }


def compare_on_simulation(
    params: Any,
    settings: Settings,
    *,
    model_dir: str | None = None,
    systems: Sequence[str] = SYSTEMS,
    progress: Callable[[str], None] | None = None,
    warmup_hours: float = 0.0,
    on_measured: Callable[[str, list[Label], list[Alert], list[Any]], None] | None = None,
) -> dict[str, Report]:
    """Simulate ``params`` (a ``simulate.SimParams``), write the files, and replay the same
    files through each system in ``systems``; one :class:`Report` per system, in order.

    With ``warmup_hours`` the first hours of the simulation (its ``hours`` include them)
    train every system but are not measured: attacks starting in them, alerts ending in
    them and profiles of them are left out, which is "after learning mode" for all four.
    ``on_measured(system, labels, alerts, scored rows)`` sees what churnguard's report is
    made of (the other systems' are not kept).
    """
    return compare_on_simulations(
        [params], settings, model_dir=model_dir, systems=systems, progress=progress,
        warmup_hours=warmup_hours, jobs=1, on_measured=on_measured,
    )[0]  # fmt: skip


def compare_on_simulations(
    runs: Sequence[Any],
    settings: Settings,
    *,
    model_dir: str | None = None,
    systems: Sequence[str] = SYSTEMS,
    progress: Callable[[str], None] | None = None,
    warmup_hours: float = 0.0,
    jobs: int | None = None,
    on_measured: Callable[[str, list[Label], list[Alert], list[Any]], None] | None = None,
    pair_done: Callable[[int, int], None] | None = None,
    shards: int = 1,
) -> list[dict[str, Report]]:
    """:func:`compare_on_simulation` for several runs (seeds), in ``jobs`` worker processes
    (joblib; None = one per core, 1 = all in this process). ``pair_done(done, total)``
    follows the (run, system) replays as they finish. ``shards``: churnguard replays as a
    service on that many repartition partitions does (``replay --shards``).

    The runs are simulated in parallel, then every (run, system) pair is replayed in
    parallel. The reports do not depend on ``jobs``: each replay starts from a fresh
    pipeline, and what it learns depends only on its files and seeds.
    """
    from joblib import Parallel, delayed, effective_n_jobs

    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ConfigError(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    pairs = [(i, name) for i in range(len(runs)) for name in systems]
    workers = effective_n_jobs(jobs or -1)
    parallel = Parallel(n_jobs=workers)
    with tempfile.TemporaryDirectory(prefix="churnguard-evaluate-") as tmp:
        if progress:
            progress(f"simulating {len(runs)} run(s), {workers} worker(s)")
        sims = parallel(
            delayed(_simulate)(params, Path(tmp) / f"run-{i}") for i, params in enumerate(runs)
        )
        if progress:
            progress(f"replaying {len(pairs)} (run, system) pairs")
        results = Parallel(n_jobs=workers, return_as="generator")(
            delayed(_replay)(
                sims[i], name, settings, model_dir, warmup_hours,
                keep=on_measured is not None and name == CHURNGUARD,
                shards=shards if name == CHURNGUARD else 1,
            )
            for i, name in pairs
        )  # fmt: skip
        out: list[dict[str, Report]] = [{} for _ in runs]
        for done, ((i, name), (report, measured)) in enumerate(
            zip(pairs, results, strict=True), start=1
        ):
            out[i][name] = report
            if on_measured is not None and measured is not None:
                on_measured(name, *measured)
            if pair_done is not None:
                pair_done(done, len(pairs))
    return out


def _simulate(params: Any, directory: Path) -> dict[str, Any]:
    """One simulated run written to ``directory``: its input files, labels and summary."""
    from churnguard.simulate import FILES, generate, write

    sim = generate(params)
    paths = write(sim, directory)
    return {
        "inputs": [str(paths[fmt]) for fmt in FILES],
        "labels": sim.labels,
        "summary": sim.summary,
        "benign": sim.benign,  # entity key -> benign kind
        "hours": params.hours,
    }


def _replay(
    sim: dict[str, Any],
    system: str,
    settings: Settings,
    model_dir: str | None,
    warmup_hours: float,
    *,
    keep: bool = False,
    shards: int = 1,
) -> tuple[Report, tuple[list[Label], list[Alert], list[Any]] | None]:
    """Replay one simulated run through one system and score it (a joblib task); with
    ``keep`` also return the labels, alerts and scored rows the report is made of;
    ``shards``: split as a repartitioned service on that many shards does."""
    from churnguard.offline.shards import replay_shards

    cut = _start_of(sim["summary"]) + warmup_hours * 3600.0
    # an attack still going on when the measurement starts (a beacon or a hijacked pod
    # begun in the warm-up) is measured too: its alerts are neither false nor unmatched
    labels = [lb for lb in sim["labels"] if lb["end"] >= cut]
    result = replay_shards(sim["inputs"], settings, shards, _pipelines(settings, model_dir)[system])
    # the warm-up hours train every system alike; only what follows is measured
    attacked = {Label(**lb).key() for lb in sim["labels"]}
    scored = [s for s in result.scored if s.profile.window_end >= cut]
    measured = {s.profile.entity.key() for s in scored} - attacked
    benign = len(measured)
    if warmup_hours == 0:
        benign = int(sim["summary"]["benign_entities"])
        measured = set(sim["benign"])
    alerts = _measured_alerts(result.alerts, sim["labels"], cut)
    report = evaluate(
        labels,
        alerts,
        benign_entities=benign,
        scored=scored,
        benign_kinds={k: sim["benign"].get(k, OTHER_KIND) for k in measured},
        days=(sim["hours"] - warmup_hours) / 24.0,
    )
    return report, ((_as_labels(labels), alerts, scored) if keep else None)


def _measured_alerts(alerts: list[Alert], labels: list[dict], cut: float) -> list[Alert]:
    """Alerts of the measured period, and the warm-up's pages of attacks still going on at
    ``cut``: an implant paged in the warm-up stays one open incident (later windows fold
    into it), so that page is its detection, not a miss.

    ``labels`` are all of the run's labels. An attack that ended in the warm-up is not
    measured, and its entity is not counted as benign (``_replay``); its alerts from its
    start on are that attack's (the rule :func:`evaluate` applies to a measured label), so
    they are neither detections nor false alerts. Before this, a pod hijacked minutes
    before the cut counted every later page of its story as a false alert on ``other``.
    """
    ongoing = _starts(lb for lb in labels if lb["end"] >= cut and lb["start"] < cut)
    measured = _starts(lb for lb in labels if lb["end"] >= cut)
    ended = _starts(lb for lb in labels if lb["end"] < cut)

    def after(a: Alert, starts: Mapping[str, float]) -> bool:
        return any(a.window.end >= starts.get(k, float("inf")) for k in a.entity_keys())

    return [
        a
        for a in alerts
        if (a.window.end >= cut or after(a, ongoing))
        and (after(a, measured) or not after(a, ended))
    ]


def _starts(labels: Iterable[dict]) -> dict[str, float]:
    """Each labelled entity's earliest attack start."""
    out: dict[str, float] = {}
    for lb in labels:
        key = Label(**lb).key()
        out[key] = min(out.get(key, float("inf")), lb["start"])
    return out


def _start_of(summary: Mapping[str, Any]) -> float:
    start = summary["start"]
    if isinstance(start, str):
        return datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
    return float(start)
