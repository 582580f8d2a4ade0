"""Deterministic building blocks of the simulator: ids, timestamps, addresses, record sinks.

Everything random is drawn from one seeded :class:`random.Random`, in a fixed order, so a
seed reproduces every byte. Nothing here reads the wall clock, uses ``uuid4`` or iterates
a set: ids that look random (pod uids, audit ids, container ids) are drawn from the rng.
"""

from __future__ import annotations

import base64
import random
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

ACCOUNT = "123456789012"
REGION = "us-east-1"
FILES: dict[str, str] = {
    "k8s_audit": "k8s_audit.jsonl",
    "cloudtrail": "cloudtrail.jsonl",
    "falco": "falco.jsonl",
    "tetragon": "tetragon.jsonl",
    "flow": "flows.jsonl",
}
# Kubernetes random name suffixes never contain vowels or 0/1/3 (apimachinery's rand).
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@lru_cache(maxsize=4096)
def _second(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def rfc3339(t: float, digits: int = 6) -> str:
    """``t`` (epoch seconds) as RFC3339 UTC with ``digits`` fraction digits (0 = none)."""
    sec = int(t)
    if digits == 0:
        return _second(sec) + "Z"
    frac = int((t - sec) * 10**digits)
    return f"{_second(sec)}.{frac:0{digits}d}Z"


def parse_start(text: str) -> float:
    """An ISO/RFC3339 start time (``Z`` or offset) as epoch seconds."""
    from datetime import UTC, datetime

    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class Ids:
    """Random-looking identifiers drawn from the simulation's rng (never from the OS)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uid(self) -> str:
        """A version-4-shaped UUID string, as Kubernetes and CloudTrail ids look."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def suffix(self, n: int = 5) -> str:
        """A Kubernetes ``generateName`` suffix (``-x7k2p``) or template hash alphabet."""
        return "".join(self.rng.choice(_K8S_ALPHABET) for _ in range(n))

    def digits(self, n: int) -> str:
        return f"{self.rng.randrange(10 ** (n - 1), 10**n)}"

    def instance_id(self) -> str:
        return "i-" + self.hex(17)

    def public_ip(self, prefix: str) -> str:
        """A host in ``prefix`` (``"52.216"`` -> ``52.216.x.y``)."""
        missing = 4 - prefix.count(".") - 1
        tail = ".".join(str(self.rng.randrange(1, 255)) for _ in range(missing))
        return f"{prefix}.{tail}"


def exec_id(node: str, ktime_ns: int, pid: int) -> str:
    """Tetragon's exec id: base64 of ``node:ktime:pid`` (unique per process start)."""
    return base64.b64encode(f"{node}:{ktime_ns}:{pid}".encode()).decode()


@dataclass(slots=True)
class Sink:
    """Records per output format with their event time; sorted stably on the way out."""

    rows: dict[str, list[tuple[float, int, dict]]] = field(
        default_factory=lambda: {fmt: [] for fmt in FILES}
    )
    seq: int = 0

    def add(self, fmt: str, t: float, record: dict) -> None:
        self.rows[fmt].append((t, self.seq, record))
        self.seq += 1

    def sorted_records(self, fmt: str) -> list[dict]:
        return [r for _, _, r in sorted(self.rows[fmt], key=lambda row: (row[0], row[1]))]


@dataclass(frozen=True, slots=True)
class External:
    """A named service outside the cluster that flows and cloud calls can point at."""

    fqdn: str | None
    ip: str
    port: int = 443


# Benign external services (real providers' public ranges, fixed hosts for stability).
S3 = External("s3.amazonaws.com", "52.216.144.237")
ECR = External(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com", "3.227.88.14")
DOCKER_HUB = External("registry-1.docker.io", "54.236.113.205")
GHCR = External("ghcr.io", "140.82.113.33")
GITHUB = External("github.com", "140.82.112.3")
PYPI = External("files.pythonhosted.org", "151.101.64.223")
DEBIAN = External("deb.debian.org", "151.101.2.132")
STRIPE = External("api.stripe.com", "54.187.216.72")
SQS = External(f"sqs.{REGION}.amazonaws.com", "52.46.154.84")
GRAFANA = External("prometheus-prod-13-prod-us-east-0.grafana.net", "34.120.177.193")
STS = External(f"sts.{REGION}.amazonaws.com", "52.94.241.138")
# Attacker infrastructure: ordinary-looking hosting ranges, no fqdn or throwaway names.
ATTACKER_PREFIXES = ("45.137.21", "91.215.85", "193.142.146", "194.26.29", "185.225.74")
ATTACKER_NAMES = (None, None, "cdn-sync-update.net", "telemetry-edge.io", "files-drop.cc")
