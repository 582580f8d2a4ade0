"""The pictures of an evaluation: one function per figure, shared by the HTML report and the
notebooks, so what a notebook shows is what ``evaluate --report`` writes.

Each function returns a matplotlib ``Figure`` built without pyplot (no global state, no
display needed). matplotlib is optional (``pip install 'churnguard[report]'``, also in the
notebooks extra): without it :func:`require_matplotlib` says so in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from churnguard.errors import ConfigError
from churnguard.offline.tuning import group_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from churnguard.alerts.alert import Alert
    from churnguard.offline.evaluate import Label

ATTACK, BENIGN, THRESHOLD = "tab:red", "tab:grey", "black"


def require_matplotlib() -> None:
    """Raise a one-line error when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "pictures need matplotlib: pip install 'churnguard[report]' (or the notebooks extra)"
        ) from exc


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80, layout="constrained")


def score_distributions(
    rows: Sequence[Any], *, attacked: Iterable[str] = (), max_namespaces: int = 16
) -> Figure:
    """Scores per namespace (learning-mode windows left out) with the thresholds they met.

    ``rows`` are scored windows (``Scored`` or capture rows: ``profile``, ``score``,
    ``threshold``, ``level``); windows of ``attacked`` entity keys are drawn in red. The black
    tick is the namespace's median threshold, its bar the range the threshold moved in.
    """
    bad = set(attacked)
    by_ns: dict[str, list[Any]] = {}
    for r in rows:
        if r.level != "learning":
            by_ns.setdefault(group_of(r.profile.entity.namespace), []).append(r)
    shown = sorted(by_ns, key=lambda n: (-len(by_ns[n]), n))[:max_namespaces]
    fig = _figure(10, 3.8)
    ax = fig.subplots()
    if not shown:
        ax.text(0.5, 0.5, "no windows scored outside learning mode", ha="center")
        return fig
    ax.boxplot([[r.score for r in by_ns[n]] for n in shown], showfliers=True)
    for k, n in enumerate(shown, 1):
        red = [r.score for r in by_ns[n] if r.profile.entity.key() in bad]
        ax.scatter([k] * len(red), red, color=ATTACK, s=14, zorder=3)
        thresholds = sorted(r.threshold for r in by_ns[n])
        ax.vlines(k + 0.3, thresholds[0], thresholds[-1], color=THRESHOLD, lw=1)
        ax.scatter(
            [k + 0.3],
            [thresholds[len(thresholds) // 2]],
            marker="_",
            s=200,
            color=THRESHOLD,
            zorder=3,
        )
    ax.set_xticks(range(1, len(shown) + 1), shown, rotation=60, ha="right")
    ax.set_ylabel("anomaly score")
    ax.set_title("scores per namespace (red: attacked entities; black: threshold median, range)")
    return fig


def grouped_bars(values: Mapping[str, Mapping[str, float]], *, xlabel: str, title: str) -> Figure:
    """One horizontal bar per (group, system): ``values[system][group]``."""
    systems = list(values)
    groups = sorted({g for per in values.values() for g in per})
    fig = _figure(10, max(2.0, 0.35 * len(groups) * max(1, len(systems)) ** 0.5 + 1.0))
    ax = fig.subplots()
    height = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        ys = [k + i * height for k in range(len(groups))]
        ax.barh(ys, [values[system].get(g, 0.0) for g in groups], height, label=system)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(groups))], groups)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if systems:
        ax.legend(loc="lower right", fontsize="small")
    return fig


def _hours(ts: float, start: float) -> float:
    return (ts - start) / 3600.0


def alert_timeline(alerts: Sequence[Alert], labels: Sequence[Label]) -> Figure:
    """Alerts over event time, one row per namespace: labelled attacks as red spans, alerts
    on attacked entities as red dots, the others (false alerts) as grey crosses."""
    attacked = {lb.key() for lb in labels}
    times = [a.window.end for a in alerts] + [lb.start for lb in labels]
    fig = _figure(10, 4.0)
    ax = fig.subplots()
    if not times:
        ax.text(0.5, 0.5, "no alerts and no labelled attacks", ha="center")
        return fig
    start = min(times)
    rows = sorted(
        {group_of(a.entity.namespace) for a in alerts} | {group_of(lb.namespace) for lb in labels}
    )
    y = {n: i for i, n in enumerate(rows)}
    for lb in labels:
        ax.plot(
            [_hours(lb.start, start), _hours(max(lb.end, lb.start + 60), start)],
            [y[group_of(lb.namespace)]] * 2,
            color=ATTACK,
            lw=6,
            alpha=0.3,
            solid_capstyle="butt",
        )
    for hit in (True, False):
        chosen = [a for a in alerts if (a.entity.key() in attacked) is hit]
        ax.scatter(
            [_hours(a.window.end, start) for a in chosen],
            [y[group_of(a.entity.namespace)] for a in chosen],
            color=ATTACK if hit else BENIGN,
            marker="o" if hit else "x",
            s=22,
            zorder=3,
            label="alert on an attacked entity" if hit else "false alert",
        )
    ax.set_yticks(range(len(rows)), rows)
    when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M UTC")
    ax.set_xlabel(f"hours since {when} (event time)")
    ax.set_title("alerts over time (red bands: labelled attacks)")
    ax.legend(loc="upper right", fontsize="small")
    return fig
