"""Secured Kafka from config: protocols and mechanisms refused by value, secrets from a file
or the environment, resolved only into the client's config."""

from __future__ import annotations

import re

import pytest

from churnguard.config import KafkaSettings
from churnguard.errors import ConfigError
from churnguard.service.clients import KafkaClients, client_config


def _sasl(**kw) -> KafkaSettings:
    base = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "churnguard"}  # fmt: skip
    return KafkaSettings(**{**base, **kw})


def test_plaintext_carries_no_security_keys() -> None:
    config = client_config(KafkaSettings(bootstrap_servers="a:9092,b:9092"))
    assert config == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_password_from_a_file(tmp_path, mechanism: str) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-file\n")
    config = client_config(_sasl(sasl_mechanism=mechanism, sasl_password_file=str(secret)), env={})
    assert config["sasl_mechanism"] == mechanism
    assert config["sasl_plain_username"] == "churnguard"
    assert config["sasl_plain_password"] == "s3cret-from-file"
    assert config["ssl_check_hostname"] is True


def test_sasl_password_from_the_named_environment_variable() -> None:
    kafka = _sasl(sasl_password_env="MY_KAFKA_PW")
    assert client_config(kafka, env={"MY_KAFKA_PW": "from-env"})["sasl_plain_password"] == (
        "from-env"
    )


def test_inline_password_wins_over_file_and_environment(tmp_path) -> None:
    secret = tmp_path / "password"
    secret.write_text("file")
    kafka = _sasl(sasl_plain_password="inline", sasl_password_file=str(secret))
    assert (
        client_config(kafka, env={"CHURNGUARD_KAFKA_PASSWORD": "env"})["sasl_plain_password"]
        == "inline"
    )


@pytest.mark.parametrize(
    ("kafka", "words"),
    [
        (
            KafkaSettings(security_protocol="SASL_TLS"),
            'kafka.security_protocol = "SASL_TLS" is not allowed; allowed: "PLAINTEXT"',
        ),
        (_sasl(sasl_mechanism="GSSAPI"), 'kafka.sasl_mechanism = "GSSAPI" is not allowed'),
        (_sasl(sasl_mechanism=None), "kafka.sasl_mechanism: required with SASL_SSL"),
        (_sasl(sasl_plain_username=None), "kafka.sasl_plain_username: required"),
        (_sasl(), "CHURNGUARD_KAFKA_PASSWORD"),
        (_sasl(sasl_password_file="/nonexistent/pw"), "cannot read /nonexistent/pw"),
        (
            KafkaSettings(security_protocol="SSL", ssl_cafile="/nonexistent/ca.pem"),
            "kafka.ssl_cafile: /nonexistent/ca.pem is not a readable file",
        ),
    ],
)
def test_bad_security_settings_are_refused_with_the_key(kafka: KafkaSettings, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        client_config(kafka, env={})


def test_the_service_refuses_bad_security_settings_at_start() -> None:
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        KafkaClients(_sasl(sasl_mechanism="NOPE"))


def test_empty_password_file_is_an_error(tmp_path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        client_config(_sasl(sasl_password_file=str(empty)), env={})
