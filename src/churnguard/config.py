"""Typed settings from a TOML file, plus the ``KAFKA_BOOTSTRAP_SERVERS`` environment override.

Every knob lives here with its default and the values it may take (``Literal`` choices and
``Meta`` ranges), so ``churnguard.example.toml`` and this file are the whole configuration
surface and a bad value is refused at load (and at hot reload) with one line naming the key
path, the value and what is allowed. Per-namespace overrides match namespace globs
(fnmatch), first match in file order wins.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec

from churnguard.errors import ConfigError
from churnguard.ingest.common import AdapterContext
from churnguard.validation import convert

# the names of churnguard.scoring.detectors.DETECTORS and churnguard.ingest.FORMATS (a test
# checks both lists against those registries)
DetectorName = Literal["oif", "hst", "iforest"]
InputFormat = Literal["auto", "k8s_audit", "cloudtrail", "falco", "tetragon", "flow"]

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Share = Annotated[float, msgspec.Meta(gt=0, le=1)]  # a rate or share in (0, 1]
Score = Annotated[float, msgspec.Meta(ge=0, le=1)]  # detectors score in [0, 1]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class PipelineSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    spec_version: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+$")] = "1"
    window_seconds: Positive | None = None  # None = the feature spec's value
    # how far behind the newest record of its input an event may arrive and still be
    # folded in order; an event later than that is applied to its entity while the entity
    # is held, else dead-lettered with reason "late". Per source kind (audit, cloudtrail,
    # runtime, flows) or per topic name; unnamed ones use allowed_lateness_seconds (None =
    # the feature spec's value, 60 s). CloudTrail is delivered in files up to ~15 min late.
    allowed_lateness_seconds: NonNegative | None = None
    lateness_seconds: dict[str, NonNegative] = msgspec.field(
        default_factory=lambda: {"cloudtrail": 900.0}
    )
    idle_expiry_seconds: Positive | None = None
    # how far ahead of the wall clock an event time may be (skewed clocks); further ahead it
    # is dead-lettered "future". Event time counts toward the watermark only up to the wall
    # clock: one forged or skewed record must not carry it ahead and make the rest late
    max_future_seconds: NonNegative = 300.0
    max_record_bytes: Count = 1_048_576  # longer records are dead-lettered, not parsed
    max_entities: Count = 200_000  # hard cap; past it the fullest namespace's idlest go early
    # caps against telemetry floods (docs/reliability.md says what happens at each)
    max_events_per_entity: Count = 20_000  # then the pending events are scored early
    max_pending_records: Count = 1_000_000  # then dead-lettered (pending_cap)
    flood_new_entities: Annotated[int, msgspec.Meta(ge=0)] = 1_000  # per namespace per window
    # ranges the cluster uses beyond the private ones (RFC 1918, 100.64/10, fc00::/7),
    # e.g. pods on public address space: a hint for "not external", never an attribution
    cluster_cidrs: list[str] = msgspec.field(default_factory=list)
    # CloudTrail role (ARN or role name) -> "namespace/serviceaccount" (IRSA-style mapping)
    role_map: dict[str, str] = msgspec.field(default_factory=dict)


class ScoringSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    detector: DetectorName = "oif"  # online isolation forest | river HalfSpaceTrees | sklearn
    hierarchy: bool = True  # False = one cluster-wide model (the comparison baseline)
    workload_min_profiles: Count = 12  # a workload baseline scores only once it has this many
    namespace_min_profiles: Count = 30
    # a new namespace is in learning mode for this many profiles or this much event time,
    # whichever is later
    learning_profiles: Annotated[int, msgspec.Meta(ge=0)] = 30
    learning_seconds: NonNegative = 3600.0
    max_workload_share: Share = 0.2  # poisoning guard: cap on one workload's share of a baseline
    # poisoning guard: rows scoring at or above this are not learned even when they do not
    # alert, so a suspicious-but-quiet pattern (a beacon) cannot become the baseline. Off
    # (1.0) by default: with range novelty every new-but-benign value scores near 1, is then
    # never learned and keeps scoring high; on 24 h simulations 0.95 cut recall from 8/9 to
    # 5/9 (seed 0) and 11/13 to 7/13 (seed 1) while adding false alerts
    learn_below_score: Score = 1.0
    # learning gate, learning mode: rows a mature baseline scored at or above this are not
    # learned while their namespace is in learning mode. Off (1.0) by default for the same
    # reason; rows that hit a guard are withheld in learning mode whatever this says
    learning_withhold_score: Score = 1.0
    # rows withheld from learning (they alerted, their entity alerted earlier, or they
    # scored at/above learn_below_score) are learned once this many distinct entities of
    # one workload produced them: a pattern every run of a CronJob shows is that CronJob's
    # behaviour; one hijacked pod or instance never teaches its own baseline
    release_after_entities: Count = 3
    seed: int = 7


class ThresholdSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # default: the score the rate * n-th most unusual entity of the window reached
    target_alert_rate: Share = 0.005
    # a floor under the quantile threshold; on the simulated clusters it is what usually
    # binds (the tail of a quiet namespace sits below it), the quantile lifts it where a
    # namespace is noisy
    min_score: Score = 0.93
    window_profiles: Count = 5000  # how many recent scores the streaming quantile keeps


class NamespaceOverride(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per namespace glob: a fixed threshold, a target rate, or muting."""

    threshold: Score | None = None
    target_alert_rate: Share | None = None
    learning_profiles: Annotated[int, msgspec.Meta(ge=0)] | None = None
    mute: bool = False


# the batch codecs Kafka defines; kafka-python reads and writes all of them with the codec
# libraries churnguard depends on (lz4, python-snappy, zstandard)
CompressionType = Literal["none", "gzip", "snappy", "lz4", "zstd"]
COMPRESSION_TYPES: tuple[str, ...] = CompressionType.__args__


class KafkaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "churnguard"
    # topic -> pinned format ("auto" = detect per record)
    input_topics: dict[str, InputFormat] = msgspec.field(
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
    max_poll_interval_ms: Count = 300_000
    session_timeout_ms: Count = 10_000
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    checkpoint_interval_s: Positive = 30.0
    max_poll_records: Count = 500  # records per poll; all are processed before the next poll
    # how long the broker may hold a fetch with nothing new. kafka-python keeps one fetch in
    # flight per broker, for the partitions with nothing buffered; a fetch of caught-up
    # partitions blocks the refill of a backlogged one for up to this long (docs/benchmarks.md)
    fetch_max_wait_ms: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    reconnect_backoff_max_s: Positive = 30.0  # cap of the exponential backoff between sessions
    # codec of the batches churnguard produces (alerts, dead letters, checkpoints, `produce`);
    # input is read in whatever codec its producer chose
    compression_type: CompressionType = "none"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    # the SASL password: prefer a file (a mounted Secret) or an environment variable; an
    # inline password works but sits in the ConfigMap. Never logged (service/clients.py).
    sasl_plain_password: str | None = None
    sasl_password_file: str | None = None
    sasl_password_env: str = "CHURNGUARD_KAFKA_PASSWORD"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    # repartition by entity inside the service (service/route.py): the input topics may be
    # partitioned any way (unkeyed shippers, CloudTrail); a route stage keys every record by
    # the scope its state lives in and writes it to repartition_topic, which the shards read.
    # False = producers must key every input topic by namespace (docs/operations.md)
    repartition: bool = False
    # how the group hands out shards (a partition number across every input topic): "load"
    # = the heaviest first, each to the least loaded member, by the records they hold
    # (service/assignor.py; with more partitions than members it evens out namespaces of
    # unequal size); "range" = kafka-python's range assignor. A group agrees on range
    # while any member does not offer "load" (a rolling upgrade)
    assignor: Literal["load", "range"] = "load"
    repartition_topic: str = "churnguard-repartition"
    repartition_partitions: Count | None = None  # None = the input topics' partition count
    bindings_topic: str = "churnguard-bindings"  # compacted: the global bindings table
    # a record whose scope needs a binding not seen yet waits, bounded: past this many
    # waiting records or this many seconds it goes on under the fallback key (counted)
    route_max_waiting: Count = 100_000
    route_max_wait_s: Positive = 30.0


class MetricsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    port: Port = 9108  # Prometheus metrics and /healthz, /readyz; 0 = disabled
    host: str = "0.0.0.0"


class ModelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bundle_dir: str | None = None  # None = start from the shipped models/ bundle if present
    hmac_key_env: str = "CHURNGUARD_MODEL_KEY"  # env var holding the bundle HMAC key
    reload_interval_s: NonNegative = 10.0  # 0 = check on every loop


AlertFormat = Literal["json", "ocsf", "falco"]
ALERT_FORMATS: tuple[AlertFormat, ...] = get_args(AlertFormat)


class AlertSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How alerts are written: churnguard JSON, OCSF Detection Finding or Falco's shape."""

    format: AlertFormat = "json"
    # the cloud the cluster runs in, for OCSF's `cloud` object (records do not name it)
    cloud_provider: str | None = None  # e.g. "AWS"
    cloud_account: str | None = None  # e.g. the AWS account id
    cloud_region: str | None = None


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pipeline: PipelineSettings = msgspec.field(default_factory=PipelineSettings)
    scoring: ScoringSettings = msgspec.field(default_factory=ScoringSettings)
    thresholds: ThresholdSettings = msgspec.field(default_factory=ThresholdSettings)
    namespaces: dict[str, NamespaceOverride] = msgspec.field(default_factory=dict)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    model: ModelSettings = msgspec.field(default_factory=ModelSettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)

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
    settings = convert(data, Settings, f"config {path}")
    try:  # the adapters' own check of the addresses, run now rather than at the first record
        AdapterContext.from_settings(settings.pipeline)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: pipeline.{exc}") from None
    if env.get("KAFKA_BOOTSTRAP_SERVERS"):
        settings.kafka.bootstrap_servers = env["KAFKA_BOOTSTRAP_SERVERS"]
    return settings
