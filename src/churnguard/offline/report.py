"""``evaluate --report DIR``: one self-contained HTML page of an evaluation, pictures inline.

What it shows: each system's headline numbers side by side (churnguard next to the static
rules when ``--simulate`` ran them), recall per attack scenario, false alerts per benign
workload kind, churnguard's score distribution and thresholds per namespace, and a
timeline of its alerts against the labelled attacks. The numbers come from the
:class:`~churnguard.offline.evaluate.Report` objects (the tables ``evaluate`` prints); the
figures from :mod:`churnguard.offline.plots`, which the notebooks use too.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnguard import __version__
from churnguard.offline import plots
from churnguard.offline.evaluate import FalseEntity, Label, Report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from churnguard.alerts.alert import Alert

INDEX = "index.html"


def scenario_recall(report: Report, labels: Sequence[Label]) -> dict[str, tuple[int, int]]:
    """Per attack scenario: (detected, labelled), from the labels and the report's misses."""
    total = Counter(lb.scenario or lb.technique for lb in labels)
    missed = Counter(m.label.scenario or m.label.technique for m in report.missed)
    return {s: (n - missed[s], n) for s, n in sorted(total.items())}


def benign_kind(entity: FalseEntity) -> str:
    """The kind of benign churn an entity is: its workload kind, a bare pod or an instance."""
    if entity.kind == "instance":
        return "instance"
    return entity.workload.split("/", 1)[0] if entity.workload else "bare pod"


def false_alerts_by_kind(report: Report) -> dict[str, int]:
    """False alerts per benign kind (alerts on entities no label names)."""
    out: Counter[str] = Counter()
    for entity in report.false_entities:
        out[benign_kind(entity)] += entity.alerts
    return dict(sorted(out.items()))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


HEADLINE = (
    ("labelled attacks", "labels"),
    ("detected", "detected"),
    ("recall", "recall"),
    ("alerts", "alerts"),
    ("false alerts", "false_alerts"),
    ("precision", "precision"),
    ("benign entities alerted", "benign_entities_alerted"),
    ("benign entities", "benign_entities"),
    ("median delay (s)", "delay_median_s"),
)

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}
.note{color:#666}"""


def write_report(
    out_dir: str | Path,
    *,
    reports: Mapping[str, Report],
    labels: Sequence[Label],
    alerts: Sequence[Alert],
    rows: Sequence[Any] | None = None,
    title: str = "churnguard evaluation",
) -> Path:
    """Write ``out_dir/index.html``; ``alerts`` and ``rows`` are churnguard's (the figures)."""
    plots.require_matplotlib()
    systems = list(reports)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=note>churnguard {__version__}; {len(labels)} labelled attacks</p>",
        "<h2>Side by side</h2>",
        _table(
            ["", *systems],
            [[name, *(getattr(reports[s], f) for s in systems)] for name, f in HEADLINE],
        ),
    ]
    if len(systems) == 1:
        parts.append(
            "<p class=note>Only churnguard's alerts were given; <code>churnguard evaluate"
            " --simulate --report DIR</code> also runs the static rules next to it.</p>"
        )
    recall = {s: scenario_recall(reports[s], labels) for s in systems}
    scenarios = sorted({k for per in recall.values() for k in per})
    parts += [
        "<h2>Recall per attack scenario</h2>",
        _table(
            ["scenario", *systems],
            [
                [
                    sc,
                    *(
                        f"{recall[s][sc][0]}/{recall[s][sc][1]}" if sc in recall[s] else "-"
                        for s in systems
                    ),
                ]
                for sc in scenarios
            ],
        ),
        _img(
            plots.grouped_bars(
                {s: {sc: d / n for sc, (d, n) in recall[s].items() if n} for s in systems},
                xlabel="recall",
                title="recall per attack scenario",
            )
        ),
    ]
    kinds = {s: false_alerts_by_kind(reports[s]) for s in systems}
    names = sorted({k for per in kinds.values() for k in per})
    parts += [
        "<h2>False alerts per benign kind</h2>",
        _table(
            ["benign kind", *systems], [[k, *(kinds[s].get(k, 0) for s in systems)] for k in names]
        ),
    ]
    if names:
        parts.append(
            _img(
                plots.grouped_bars(
                    kinds, xlabel="false alerts", title="false alerts per benign workload kind"
                )
            )
        )
    if rows is not None:
        attacked = {lb.key() for lb in labels}
        parts += [
            "<h2>churnguard scores and thresholds per namespace</h2>",
            _img(plots.score_distributions(rows, attacked=attacked)),
        ]
    else:
        parts.append(
            "<p class=note>No scored windows given (replay --capture, then"
            " evaluate --capture): no score distributions.</p>"
        )
    parts += ["<h2>churnguard alerts over time</h2>", _img(plots.alert_timeline(alerts, labels))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    (out / INDEX).write_text(page, encoding="utf-8")
    return out / INDEX


def _img(fig: Figure) -> str:
    return f'<img alt="" src="data:image/png;base64,{_png(fig)}">'
