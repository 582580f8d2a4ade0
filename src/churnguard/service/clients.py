"""Kafka clients, built in one place from the settings, behind an injectable factory.

Every consumer, producer and short-lived reader the service opens comes from a
:class:`ClientFactory`, so connection and security settings are applied once and a test or
an embedding application can hand the service its own clients.
"""

from __future__ import annotations

from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer

from churnguard.config import KafkaSettings


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security settings shared by every client (consumer, producer, admin)."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
    }
    optional = {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_plain_username,
        "sasl_plain_password": kafka.sasl_plain_password,
        "ssl_cafile": kafka.ssl_cafile,
        "ssl_certfile": kafka.ssl_certfile,
        "ssl_keyfile": kafka.ssl_keyfile,
    }
    config.update({k: v for k, v in optional.items() if v is not None})
    return config


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
            heartbeat_interval_ms=max(100, k.session_timeout_ms // 3),
        )

    def producer(self) -> KafkaProducer:
        return KafkaProducer(
            **client_config(self.kafka),
            acks="all",
            linger_ms=5,
            retries=5,
            max_request_size=2 * 1024 * 1024,
        )

    def reader_config(self) -> dict[str, Any]:
        return {**client_config(self.kafka), "enable_auto_commit": False, "group_id": None}

    def reader(self) -> KafkaConsumer:
        return KafkaConsumer(**self.reader_config())
