"""Simulation parameters and the namespace plan (which personality each namespace has)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from churnguard.simulate.cluster import Namespace

DEFAULT_START = "2026-03-02T00:00:00Z"
PODS_PER_NAMESPACE_HOUR = 10.0  # the natural rate the scenarios are tuned to

# One personality per namespace, cycled: 20 namespaces = 4 web, 4 ci, 2 of the others.
PERSONALITIES = (
    "web",
    "batch",
    "ci",
    "backups",
    "data",
    "monitoring",
    "api",
    "worker",
    "web",
    "ci",
)
_NAMES = {
    "web": ("storefront", "web-portal", "landing", "docs-site"),
    "api": ("payments-api", "orders-api", "search-api", "auth-api"),
    "worker": ("email-worker", "thumbnailer", "notifier", "queue-workers"),
    "batch": ("batch-jobs", "reports", "billing-batch"),
    "ci": ("ci-runners", "ci-mobile", "ci-platform", "ci-data"),
    "backups": ("backups", "db-backups"),
    "data": ("analytics", "data-pipeline", "ml-features"),
    "monitoring": ("monitoring", "observability"),
}


@dataclass(frozen=True, slots=True)
class SimParams:
    """What to simulate. ``scenarios`` empty = all; ``pods_per_hour`` None = 10 per namespace.

    ``attack_rate`` is attacks per attack scenario per simulated day of 20 namespaces
    (scaled by hours and namespaces); any rate > 0 gives at least one per attack scenario
    when ``hours >= 6``.
    """

    seed: int = 0
    hours: float = 24.0
    start: str = DEFAULT_START
    namespaces: int = 20
    pods_per_hour: float | None = None
    attack_rate: float = 2.0
    scenarios: tuple[str, ...] = ()
    mix: str = "default"  # "hard": also the look-alikes and adaptive attacks (issue 13)

    @property
    def churn_scale(self) -> float:
        """How much faster than the natural rate CI runners and CronJobs arrive."""
        if self.pods_per_hour is None:
            return 1.0
        return max(self.pods_per_hour, 0.0) / (PODS_PER_NAMESPACE_HOUR * self.namespaces)

    @property
    def cluster_scale(self) -> float:
        """Cluster-wide event rates (drains, instances, attacks) scale with size."""
        return self.namespaces / 20.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["scenarios"] = list(self.scenarios)
        return d


def plan_namespaces(n: int) -> list[Namespace]:
    """``n`` namespaces with personalities in a fixed cycle and stable, realistic names."""
    used: dict[str, int] = {}
    out = []
    for i in range(n):
        personality = PERSONALITIES[i % len(PERSONALITIES)]
        k = used.get(personality, 0)
        used[personality] = k + 1
        names = _NAMES[personality]
        name = names[k] if k < len(names) else f"{names[k % len(names)]}-{k // len(names) + 1}"
        out.append(Namespace(name, personality, i))
    return out
