"""Kafka clients, built in one place from the settings, behind an injectable factory.

Every consumer, producer and short-lived reader the service opens comes from a
:class:`ClientFactory`, so connection and security settings are applied once and a test or
an embedding application can hand the service its own clients.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec
from kafka import KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.range import RangePartitionAssignor

from churnguard.config import KafkaSettings, Settings
from churnguard.errors import ConfigError
from churnguard.service.assignor import ShardLoadAssignor, records_held
from churnguard.validation import convert


def assignors(kafka: KafkaSettings, reader: Callable[[], KafkaConsumer]) -> list:
    """The group member's partition assignors, preferred first (``kafka.assignor``)."""
    if kafka.assignor == "range":
        return [RangePartitionAssignor]
    return [ShardLoadAssignor(records_held(reader)), RangePartitionAssignor]


def client_config(kafka: KafkaSettings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Connection and security settings shared by every client (consumer, producer, admin).

    The SASL password is resolved here, at the last moment, from the inline setting, the
    file ``sasl_password_file`` or the variable named by ``sasl_password_env``, so it lives
    only in the client's own config: churnguard never logs it or writes it anywhere else.
    """
    # settings built in code skip the load-time check: the types' allowed values hold here too
    convert({"kafka": msgspec.to_builtins(kafka)}, Settings, "kafka settings")
    protocol = kafka.security_protocol
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        config.update(_sasl(kafka, os.environ if env is None else env))
    if protocol in ("SSL", "SASL_SSL"):
        optional = {
            "ssl_cafile": kafka.ssl_cafile,
            "ssl_certfile": kafka.ssl_certfile,
            "ssl_keyfile": kafka.ssl_keyfile,
        }
        for key, path in optional.items():
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"kafka.{key}: {path} is not a readable file")
        config.update({k: v for k, v in optional.items() if v is not None})
        config["ssl_check_hostname"] = kafka.ssl_check_hostname
    return config


def _sasl(kafka: KafkaSettings, env: Mapping[str, str]) -> dict[str, Any]:
    mechanism = kafka.sasl_mechanism
    if mechanism is None:
        raise ConfigError(f"kafka.sasl_mechanism: required with {kafka.security_protocol}")
    if not kafka.sasl_plain_username:
        raise ConfigError(f"kafka.sasl_plain_username: required with {kafka.security_protocol}")
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": kafka.sasl_plain_username,
        "sasl_plain_password": sasl_password(kafka, env),
    }


def sasl_password(kafka: KafkaSettings, env: Mapping[str, str]) -> str:
    """The SASL password from (in order) the inline setting, the file, the environment."""
    if kafka.sasl_plain_password:
        return kafka.sasl_plain_password
    if kafka.sasl_password_file:
        try:
            secret = Path(kafka.sasl_password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"kafka.sasl_password_file: cannot read {kafka.sasl_password_file}: {exc.strerror}"
            ) from exc
        if secret:
            return secret
        raise ConfigError(f"kafka.sasl_password_file: {kafka.sasl_password_file} is empty")
    secret = env.get(kafka.sasl_password_env, "")
    if secret:
        return secret
    raise ConfigError(
        "kafka: SASL needs a password: set kafka.sasl_password_file or the environment "
        f"variable {kafka.sasl_password_env}"
    )


def compression(kafka: KafkaSettings) -> str | None:
    """kafka-python's ``compression_type`` for the configured codec (None = uncompressed)."""
    return None if kafka.compression_type == "none" else kafka.compression_type


def heartbeat_interval_ms(kafka: KafkaSettings) -> int:
    """The group heartbeat: a third of the session timeout, as Kafka recommends."""
    return max(100, kafka.session_timeout_ms // 3)


def join_poll_timeout_ms(kafka: KafkaSettings) -> int:
    """How long a group member without a share waits in ``poll()``: past the rebalance
    timeout, so its join completes inside that poll, and at most 10 s (a stop waits for it).

    kafka-python (3.0.12) drops a JoinGroup/SyncGroup that completes between two polls and
    sends a new JoinGroup (``join_group_async`` re-creates a join task that is already done).
    A broker may hold a JoinGroup for the whole rebalance timeout (tansu always does), so a
    shorter poll that returns just before the answer costs the member another round, and
    with tansu's fixed delay the answer lands on a poll boundary again and again.
    """
    return min(kafka.max_poll_interval_ms + 1000, 10_000)


class ClientFactory(Protocol):
    """What the service needs to talk to Kafka."""

    def consumer(self) -> KafkaConsumer:
        """The group member that reads the input topics."""
        ...

    def producer(self) -> KafkaProducer:
        """The producer of alerts, dead letters and checkpoints."""
        ...

    def reader_config(self) -> dict[str, Any]:
        """Config of group-less readers (checkpoints, alert ids read back)."""
        ...

    def reader(self) -> KafkaConsumer:
        """A short-lived group-less reader."""
        ...


class KafkaClients:
    """The production :class:`ClientFactory`: kafka-python clients from :class:`KafkaSettings`."""

    def __init__(self, kafka: KafkaSettings) -> None:
        client_config(kafka)  # a bad security setting fails here, at start, not per session
        self.kafka = kafka

    def consumer(self) -> KafkaConsumer:
        k = self.kafka
        return KafkaConsumer(
            **client_config(k),
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            max_poll_interval_ms=k.max_poll_interval_ms,
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms(k),
            # the response-rate window that says whether the broker answers (service.contact)
            metrics_sample_window_ms=heartbeat_interval_ms(k),
            metrics_num_samples=2,
            # exactly-once producers: records of aborted transactions are never processed
            isolation_level="read_committed",
            fetch_max_wait_ms=k.fetch_max_wait_ms,
            partition_assignment_strategy=assignors(k, self.reader),
        )

    def producer(self) -> KafkaProducer:
        return KafkaProducer(
            **client_config(self.kafka),
            acks="all",
            linger_ms=5,
            retries=5,
            max_request_size=2 * 1024 * 1024,
            compression_type=compression(self.kafka),
        )

    def reader_config(self) -> dict[str, Any]:
        return {
            **client_config(self.kafka),
            "enable_auto_commit": False,
            "group_id": None,
            "isolation_level": "read_committed",  # reads what the group member reads
        }

    def reader(self) -> KafkaConsumer:
        return KafkaConsumer(**self.reader_config())
