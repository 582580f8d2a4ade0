"""Write the notebooks of this directory from the cells below (no outputs, stable bytes).

The .ipynb files are generated so they stay reviewable as Python and never carry outputs:
edit this file, then run ``.venv/bin/python notebooks/make_notebooks.py``. A test checks
that the committed notebooks match what this script writes.

Every notebook reads two environment variables: ``CHURNGUARD_NB_OUT`` (where it writes
simulations, captures, bundles, configs; default ``build/notebooks``, ignored by git) and
``CHURNGUARD_NB_IMG`` (where its PNG plots go; default ``$CHURNGUARD_NB_OUT/img``; the docs'
images are made with ``CHURNGUARD_NB_IMG=docs/img``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the notebooks also run headless in the tests
import matplotlib.pyplot as plt

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
OUT = Path(os.environ.get("CHURNGUARD_NB_OUT", "../build/notebooks")).resolve() / NAME
IMG = Path(os.environ.get("CHURNGUARD_NB_IMG", OUT / "img")).resolve()
OUT.mkdir(parents=True, exist_ok=True)
IMG.mkdir(parents=True, exist_ok=True)
# six simulated hours of an 8-namespace cluster: every attack scenario at least once, and
# seconds to run (the scikit-learn forests of 02 are the slow part)
SEED, HOURS, NAMESPACES = 3, 6.0, 8


def save(fig, name):
    fig.tight_layout()
    fig.savefig(IMG / name, metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)
    print("saved", IMG / name)
"""

SIMULATE_AND_CAPTURE = """\
from churnguard.offline import training
from churnguard.offline.capture import read_capture
from churnguard.config import Settings

settings = Settings()
run = training.simulate_to(OUT / "sim", seed=SEED, hours=HOURS, namespaces=NAMESPACES)
# online from empty baselines (no bundle), exactly what `churnguard replay --no-model
# --capture` does: every scored window with its score, threshold and baseline level
replay = training.replay_with_capture(
    run.telemetry, OUT / "capture.jsonl", settings, use_bundle=False
)
rows = read_capture(OUT / "capture.jsonl")
print(f"{len(rows):,} scored windows, {len(replay.alerts)} alerts, "
      f"{len(run.labels.read_text().splitlines())} labelled attacks")
"""


def nb_explore() -> nbformat.NotebookNode:
    return notebook(
        "01_explore_features",
        md(
            "# 01 · Explore features and scores per namespace\n\n"
            "Simulate a few hours of a labelled cluster, run the detection pipeline over it "
            "with the feature capture on, and look at what the models see: feature "
            "distributions per namespace (in the model view of `features/v1.toml`) and the "
            "scores the online baselines gave. Labelled attack windows are drawn in red."
        ),
        code(SETUP),
        code(SIMULATE_AND_CAPTURE),
        code(
            """\
import json
from collections import Counter

import numpy as np

from churnguard.offline.capture import flatten
from churnguard.profiling.spec import load_spec
from churnguard.offline.tuning import group_of, read_labels

spec = load_spec()
flat = [flatten(r) for r in rows]
bad = set().union(*read_labels(run.labels).values())
is_bad = np.array([r.profile.entity.key() in bad for r in rows])
ns = np.array([group_of(f["namespace"]) for f in flat])
namespaces = sorted(set(ns), key=lambda n: -np.count_nonzero(ns == n))
levels = Counter(f["level"] for f in flat)
print("windows per baseline level:", dict(levels))
for n in namespaces[:8]:
    print(f"  {n:<16} {np.count_nonzero(ns == n):>5} windows")
"""
        ),
        md(
            "Feature values per namespace, model view (`log1p` on counts, bytes and durations). "
            "Each namespace has its own normal: that is why baselines are learned per "
            "namespace and workload rather than one static rule."
        ),
        code(
            """\
X = spec.transform(spec.matrix([r.profile.values for r in rows]))
shown = [n for n in ("lifetime_s", "distinct_binaries", "egress_external_bytes", "api_read")
         if n in spec.names]
fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.2 * len(shown)), sharex=True)
for ax, name in zip(np.atleast_1d(axes), shown, strict=True):
    j = spec.names.index(name)
    ax.boxplot([X[ns == n, j] for n in namespaces], showfliers=False)
    for k, n in enumerate(namespaces, 1):
        sel = (ns == n) & is_bad
        ax.scatter(np.full(sel.sum(), k), X[sel, j], color="red", s=12, zorder=3)
    ax.set_ylabel(f"{name}\\n({spec.by_name(name).transform})")
ax.set_xticks(range(1, len(namespaces) + 1), namespaces, rotation=60, ha="right")
save(fig, "01_features_by_namespace.png")
"""
        ),
        md(
            "Scores per namespace (windows scored in learning mode are left out: the service "
            "never thresholds them), with the thresholds each namespace's windows were held "
            "to: the same figure `churnguard evaluate --report` draws "
            "(`churnguard.offline.plots`)."
        ),
        code(
            """\
from churnguard.offline import plots

fig = plots.score_distributions(rows, attacked=bad)
fig.savefig(IMG / "01_scores_by_namespace.png", metadata={"Software": None})
print("saved", IMG / "01_scores_by_namespace.png")
"""
        ),
        code(
            """\
summary = {
    "windows": len(rows),
    "alerts": len(replay.alerts),
    "namespaces": len(namespaces),
    "labelled_windows": int(is_bad.sum()),
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
summary
"""
        ),
    )


def nb_retrain() -> nbformat.NotebookNode:
    return notebook(
        "02_retrain_baselines",
        md(
            "# 02 · Retrain per-namespace / per-workload baselines, evaluate, export a bundle\n\n"
            "From a capture of what the service scored, learn scikit-learn `IsolationForest` "
            "baselines for every workload, namespace and the cluster (the key scheme of "
            "`churnguard.scoring.baselines`), leaving out windows that alerted and entities the "
            "labels mark malicious. Evaluate on a *held-out* simulation (the next seed) "
            "against the online models learned from empty, then export a signed bundle with "
            "`save_bundle` and verify it exactly as the service does before loading."
        ),
        code(SETUP),
        code(SIMULATE_AND_CAPTURE),
        code(
            """\
from churnguard.profiling.spec import load_spec

spec = load_spec()
data = training.from_capture(OUT / "capture.jsonl", run.labels)
print(data.description)
fitted = training.fit_baselines(data.learn, spec, settings, detector="iforest")
models = training.select_baselines(fitted, settings)  # those that learned enough to score
by_level = {}
for key in models:
    by_level.setdefault(key.split(":", 1)[0], []).append(key)
print({level: len(keys) for level, keys in by_level.items()})
forest = models["cluster:pod"].estimator_  # a plain scikit-learn estimator
forest
"""
        ),
        md(
            "Held-out evaluation: fresh scorers over the same unseen simulated hours: one "
            "that starts from empty and learns online (the service without a bundle), one "
            "seeded with the retrained scikit-learn forests, and one seeded with online "
            "forests warm-started on the same rows (what `churnguard model build` ships). "
            "scikit-learn's paper score sits near 0.5 for ordinary rows and rarely reaches "
            "the online forest's `min_score` floor, so the forests get a 0.6 floor; the "
            "streaming per-namespace quantile above it does the rest."
        ),
        code(
            """\
import msgspec

held_out = training.simulate_to(
    OUT / "held_out", seed=SEED + 1, hours=HOURS, namespaces=NAMESPACES
)
iforest_settings = msgspec.structs.replace(
    settings, thresholds=msgspec.structs.replace(settings.thresholds, min_score=0.6)
)
warm = training.select_baselines(
    training.fit_baselines(data.learn, spec, settings, detector="oif"), settings
)
results = {
    "online from empty": training.evaluate_on_run(
        training.scorer_for(None, settings), held_out, settings),
    "retrained iforest": training.evaluate_on_run(
        training.scorer_for(models, iforest_settings), held_out, iforest_settings),
    "warm-started oif": training.evaluate_on_run(
        training.scorer_for(warm, settings), held_out, settings),
}
for name, m in results.items():
    print(f"{name:<18} recall {m['recall']}  precision {m['precision']}  "
          f"false alerts/1k benign {m['false_per_1k_entities']}  "
          f"by technique { {t: r['recall'] for t, r in m['by_technique'].items()} }")
"""
        ),
        code(
            """\
names = list(results)
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, metric in zip(axes, ("recall", "precision", "false_per_1k_entities"), strict=True):
    values = [results[n][metric] or 0.0 for n in names]
    ax.bar(range(len(names)), values, color=["grey", "tab:blue", "tab:green"])
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_title(metric.replace("_", " "))
save(fig, "02_retrained_vs_online.png")
"""
        ),
        md(
            "Export: `bundle_version` is a hash of the content; the HMAC key comes from the "
            "environment in production (`model.hmac_key_env`), here a demo key."
        ),
        code(
            """\
import shutil

from churnguard.cli import main as churnguard
from churnguard.scoring.scorer import Scorer
from churnguard.store import load_bundle, save_bundle, verify_bundle

KEY = b"notebook-demo-key"
bundle_dir = OUT / "bundle"
shutil.rmtree(bundle_dir, ignore_errors=True)
training_info = {**data.description, "detector": "iforest", "levels": list(training.LEVELS)}
metrics = results["retrained iforest"]
version = training.bundle_version(
    models, spec_version=spec.version, training=training_info, metrics=metrics)
save_bundle(bundle_dir, models, spec_version=spec.version, bundle_version=version,
            training=training_info, metrics=metrics, key=KEY)
manifest = verify_bundle(bundle_dir, spec_version=spec.version, key=KEY)
scorer = Scorer(settings, spec, load_bundle(bundle_dir, spec_version=spec.version, key=KEY))
print(manifest.bundle_version, len(manifest.entries), "baselines;", scorer.model_version)
os.environ["NB_BUNDLE_KEY"] = KEY.decode()
assert churnguard(["model", "verify", str(bundle_dir), "--key-env", "NB_BUNDLE_KEY"]) == 0
"""
        ),
    )


def nb_tune() -> nbformat.NotebookNode:
    return notebook(
        "03_tune_thresholds",
        md(
            "# 03 · Tune thresholds per namespace\n\n"
            "Sweep the threshold of each namespace over the captured scores: alert volume "
            "per day, and entity-level precision and recall against the labels. Then choose "
            "values at a target alert rate (floored at `min_score`, like the service) and "
            'write them as `[namespaces.\\"<ns>\\"] threshold = ...` overrides that '
            "`churnguard.config.load_settings` reads; `churnguard thresholds suggest` does "
            "the same from the command line."
        ),
        code(SETUP),
        code(SIMULATE_AND_CAPTURE),
        code(
            """\
import numpy as np

from churnguard.offline import tuning

labels = tuning.read_labels(run.labels)
groups = tuning.by_namespace(rows)
span = tuning.capture_span_days(rows)
grid = np.linspace(0.5, 1.0, 101)
curves = {
    ns: tuning.NamespaceScores(g, span).sweep(grid, labels.get(ns, set()))
    for ns, g in groups.items()
}
# the namespaces with attacks in them, then the busiest others
shown = sorted(groups, key=lambda n: (n not in labels, -len(groups[n])))[:6]
fig, axes = plt.subplots(2, 3, figsize=(11, 5.5), sharex=True)
for ax, ns in zip(axes.flat, shown, strict=False):
    pts = curves[ns]
    ax.semilogy(grid, [max(p.alerts_per_day, 1e-1) for p in pts], color="black",
                label="alerts / day")
    ax.set_title(f"{ns} ({len(groups[ns])} windows)")
    ax.set_ylabel("alerts / day")
    ax2 = ax.twinx()
    ax2.plot(grid, [p.recall if p.recall is not None else np.nan for p in pts],
             color="tab:red", label="recall")
    ax2.plot(grid, [p.precision if p.precision is not None else np.nan for p in pts],
             color="tab:blue", label="precision")
    ax2.set_ylim(-0.05, 1.05)
handles = [*axes.flat[-1].get_legend_handles_labels()[0], *ax2.get_legend_handles_labels()[0]]
axes.flat[0].legend(handles=handles, loc="lower left")
for ax in axes[-1]:
    ax.set_xlabel("threshold")
save(fig, "03_threshold_curves.png")
"""
        ),
        md(
            "Choose: the score quantile at 1 - target rate per namespace, never below the "
            "floor. Compare the alert volume with the floor alone."
        ),
        code(
            """\
TARGET_RATE = 0.01
floor = settings.thresholds.min_score
chosen = tuning.suggest(rows, TARGET_RATE, min_score=floor, labels=labels)
print(tuning.render_table(chosen, with_labels=True))
at_floor = {ns: tuning.NamespaceScores(g, span).at(floor) for ns, g in groups.items()}
order = sorted(groups, key=lambda n: -at_floor[n].alerts_per_day)
fig, ax = plt.subplots(figsize=(10, 3))
x = np.arange(len(order))
by_ns = {s.namespace: s for s in chosen}
ax.bar(x - 0.2, [at_floor[n].alerts_per_day for n in order], 0.4, label=f"floor {floor:g}")
ax.bar(x + 0.2, [by_ns[n].at.alerts_per_day for n in order], 0.4,
       label=f"rate {TARGET_RATE:g}")
ax.set_xticks(x, order, rotation=60, ha="right")
ax.set_ylabel("alerts / day")
ax.legend()
save(fig, "03_alert_volume.png")
"""
        ),
        code(
            """\
from churnguard.config import load_settings

config_path = tuning.write_config(
    OUT / "thresholds.toml",
    {s.namespace: s.threshold for s in chosen if s.profiles},
    header=[f"03_tune_thresholds: target rate {TARGET_RATE:g}, floor {floor:g}"],
)
tuned = load_settings(config_path)
for s in chosen:
    override = tuned.namespace_override(s.namespace)
    print(f"{s.namespace:<16} {s.threshold:.4f} -> {override.threshold if override else 'default'}")
"""
        ),
    )


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text)


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.rstrip("\n"))


def notebook(name: str, *cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A notebook whose setup cell knows its own name (for its output directory)."""
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    cells[first_code].source = f'NAME = "{name}"\n' + cells[first_code].source
    nb = new_notebook(cells=list(cells))
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, cell in enumerate(nb.cells):
        cell.id = f"{name[:2]}-{i:02d}"  # stable ids: regenerating does not churn the diff
    return nb


NOTEBOOKS = {
    "01_explore_features.ipynb": nb_explore,
    "02_retrain_baselines.ipynb": nb_retrain,
    "03_tune_thresholds.ipynb": nb_tune,
}


def render(make) -> str:
    nb = make()
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main() -> int:
    for filename, make in NOTEBOOKS.items():
        (HERE / filename).write_text(render(make))
        print("wrote", HERE / filename)
    return 0


if __name__ == "__main__":
    sys.exit(main())
