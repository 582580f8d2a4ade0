"""Typed settings from a TOML file plus ``CHURNGUARD_*`` / ``KAFKA_*`` environment overrides.

Every knob lives here with its default, so ``churnguard.example.toml`` and this file are the
whole configuration surface. Per-namespace overrides match namespace globs (fnmatch), first
match in file order wins.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from churnguard.errors import ConfigError


class PipelineSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    spec_version: str = "1"
    window_seconds: float | None = None  # None = the feature spec's value
    allowed_lateness_seconds: float | None = None
    idle_expiry_seconds: float | None = None
    max_record_bytes: int = 1_048_576  # longer records are dead-lettered, not parsed
    max_entities: int = 200_000  # hard cap; the idlest entities are profiled early past it
    cluster_cidrs: list[str] = msgspec.field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]
    )
    # CloudTrail role (ARN or role name) -> "namespace/serviceaccount" (IRSA-style mapping)
    role_map: dict[str, str] = msgspec.field(default_factory=dict)


class ScoringSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    detector: str = "oif"  # oif (online isolation forest) | hst (river HalfSpaceTrees) | iforest
    hierarchy: bool = True  # False = one cluster-wide model (the comparison baseline)
    workload_min_profiles: int = 12  # a workload baseline scores only once it has this many
    namespace_min_profiles: int = 30
    learning_profiles: int = 30  # a new namespace is in learning mode for this many profiles...
    learning_seconds: float = 3600.0  # ...or this much event time, whichever is later
    max_workload_share: float = 0.2  # poisoning guard: cap on one workload's share of a baseline
    # poisoning guard: rows scoring at or above this are not learned even when they do not
    # alert, so a suspicious-but-quiet pattern (a beacon) cannot become the baseline. Off
    # (1.0) by default: with range novelty every new-but-benign value scores near 1, is then
    # never learned and keeps scoring high; on 24 h simulations 0.95 cut recall from 8/9 to
    # 5/9 (seed 0) and 11/13 to 7/13 (seed 1) while adding false alerts
    learn_below_score: float = 1.0
    # learning gate, learning mode: rows a mature baseline scored at or above this are not
    # learned while their namespace is in learning mode. Off (1.0) by default for the same
    # reason; rows that hit a guard are withheld in learning mode whatever this says
    learning_withhold_score: float = 1.0
    # rows withheld from learning (they alerted, their entity alerted earlier, or they
    # scored at/above learn_below_score) are learned once this many distinct entities of
    # one workload produced them: a pattern every run of a CronJob shows is that CronJob's
    # behaviour; one hijacked pod or instance never teaches its own baseline
    release_after_entities: Annotated[int, msgspec.Meta(ge=1)] = 3
    seed: int = 7


class ThresholdSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # default: the score the rate * n-th most unusual entity of the window reached
    target_alert_rate: float = 0.005
    # a floor under the quantile threshold; on the simulated clusters it is what usually
    # binds (the tail of a quiet namespace sits below it), the quantile lifts it where a
    # namespace is noisy
    min_score: float = 0.93
    window_profiles: int = 5000  # how many recent scores the streaming quantile keeps


class NamespaceOverride(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per namespace glob: a fixed threshold, a target rate, or muting."""

    threshold: float | None = None
    target_alert_rate: float | None = None
    learning_profiles: int | None = None
    mute: bool = False


class KafkaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "churnguard"
    # topic -> pinned format ("auto" = detect per record)
    input_topics: dict[str, str] = msgspec.field(
        default_factory=lambda: {
            "k8s-audit": "k8s_audit",
            "cloudtrail": "cloudtrail",
            "runtime": "auto",
            "flows": "auto",
        }
    )
    alerts_topic: str = "churnguard-alerts"
    dead_letter_topic: str = "churnguard-dead-letter"
    checkpoint_topic: str = "churnguard-checkpoints"
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    auto_offset_reset: str = "earliest"
    checkpoint_interval_s: float = 30.0
    max_poll_records: int = 500  # records per poll; all are processed before the next poll
    reconnect_backoff_max_s: float = 30.0  # cap of the exponential backoff between sessions
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


class MetricsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    port: int = 9108  # Prometheus metrics and /healthz, /readyz; 0 = disabled
    host: str = "0.0.0.0"


class ModelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bundle_dir: str | None = None  # None = start from the shipped models/ bundle if present
    hmac_key_env: str = "CHURNGUARD_MODEL_KEY"  # env var holding the bundle HMAC key
    reload_interval_s: float = 10.0


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pipeline: PipelineSettings = msgspec.field(default_factory=PipelineSettings)
    scoring: ScoringSettings = msgspec.field(default_factory=ScoringSettings)
    thresholds: ThresholdSettings = msgspec.field(default_factory=ThresholdSettings)
    namespaces: dict[str, NamespaceOverride] = msgspec.field(default_factory=dict)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    model: ModelSettings = msgspec.field(default_factory=ModelSettings)

    def namespace_override(self, namespace: str | None) -> NamespaceOverride | None:
        """The first override whose glob matches the namespace, if any."""
        if namespace is None:
            return None
        for pattern, override in self.namespaces.items():
            if fnmatch.fnmatchcase(namespace, pattern):
                return override
        return None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read a TOML file (optional) and apply environment overrides.

    ``KAFKA_BOOTSTRAP_SERVERS`` overrides ``kafka.bootstrap_servers``.
    """
    env = os.environ if env is None else env
    data: dict = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {p}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {p} is not valid TOML: {exc}") from exc
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config {path}: {exc}") from exc
    if env.get("KAFKA_BOOTSTRAP_SERVERS"):
        settings.kafka.bootstrap_servers = env["KAFKA_BOOTSTRAP_SERVERS"]
    return settings
