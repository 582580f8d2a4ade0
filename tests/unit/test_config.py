"""The documented example config is the real configuration surface, refused by value."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.cli import main
from churnguard.config import DetectorName, InputFormat, Settings, load_settings
from churnguard.errors import ConfigError
from churnguard.validation import convert

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_with_the_defaults_it_documents() -> None:
    example = load_settings(ROOT / "churnguard.example.toml", env={})
    defaults = Settings()
    assert example.scoring == defaults.scoring
    assert example.thresholds == defaults.thresholds
    assert example.pipeline.max_record_bytes == defaults.pipeline.max_record_bytes


def test_namespace_globs_first_match_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[namespaces."ci-*"]\nthreshold = 0.97\n[namespaces."*"]\nmute = true\n')
    s = load_settings(cfg, env={})
    assert s.namespace_override("ci-mobile").threshold == 0.97
    assert s.namespace_override("payments").mute


def test_bad_config_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[scoring]\nno_such_knob = 1\n")
    with pytest.raises(ConfigError, match="no_such_knob"):
        load_settings(cfg, env={})


def test_release_after_entities_below_one_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[scoring]\nrelease_after_entities = 0\n")
    with pytest.raises(ConfigError, match="release_after_entities"):
        load_settings(cfg)


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        (
            '[scoring]\ndetector = "oiff"\n',
            'scoring.detector = "oiff" is not allowed; allowed: "hst", "iforest", "oif"',
        ),
        (
            "[thresholds]\nmin_score = 1.5\n",
            "thresholds.min_score = 1.5 is not allowed; allowed: a number >= 0 and <= 1",
        ),
        (
            '[namespaces."prod-*"]\nthreshold = 2\n',
            'namespaces."prod-*".threshold = 2 is not allowed; allowed: a number >= 0 and <= 1'
            " (or left out)",
        ),
        (
            '[kafka.input_topics]\nflows = "auto"\naudit = "hubble"\n',
            'kafka.input_topics.audit = "hubble" is not allowed; allowed: "auto", "cloudtrail",'
            ' "falco", "flow", "k8s_audit", "tetragon"',
        ),
        (
            '[kafka]\nsecurity_protocol = "TLS"\n',
            'kafka.security_protocol = "TLS" is not allowed; allowed: "PLAINTEXT",'
            ' "SASL_PLAINTEXT", "SASL_SSL", "SSL"',
        ),
        ("[metrics]\nport = 70000\n", "metrics.port = 70000 is not allowed; allowed: an integer"),
        ("[scoring]\ndetectr = 1\n", "unknown key scoring.detectr; allowed keys: detector, "),
    ],
)
def test_a_bad_value_is_refused_with_key_value_and_allowed(
    tmp_path: Path, toml: str, line: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"config {cfg}: {line}")


def test_the_allowed_names_are_the_registries(tmp_path: Path) -> None:
    from churnguard.ingest import FORMATS
    from churnguard.scoring.detectors import DETECTORS

    assert set(get_args(DetectorName)) == set(DETECTORS)
    assert set(get_args(InputFormat)) == {*FORMATS, "auto"}


@settings(max_examples=60, deadline=None)
@given(
    section=st.sampled_from(["scoring", "thresholds", "pipeline", "kafka", "metrics", "model"]),
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20),
    value=st.one_of(
        st.integers(), st.floats(allow_nan=False), st.text(max_size=300), st.booleans()
    ),
)
def test_any_value_loads_or_is_refused_in_one_line(section: str, key: str, value: object) -> None:
    """Whatever an operator writes, loading either works or says one line: never a traceback."""
    try:
        convert({section: {key: value}}, Settings, "config x")
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1200
        assert f"{section}.{key}" in message


def test_serve_and_replay_exit_2_with_the_line(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[scoring]\ndetector = "oiff"\n')
    for argv in (
        ["serve", "--config", str(cfg)],
        ["replay", "-", "--alerts", "-", "--config", str(cfg)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err
        assert 'scoring.detector = "oiff" is not allowed; allowed: "hst", "iforest", "oif"' in err


def test_compression_type_is_validated_and_reaches_the_producers(tmp_path: Path) -> None:
    from churnguard.service.clients import compression

    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka]\ncompression_type = "lz4"\n')
    assert compression(load_settings(cfg, env={}).kafka) == "lz4"
    assert compression(Settings().kafka) is None  # "none": uncompressed batches
    cfg.write_text('[kafka]\ncompression_type = "brotli"\n')
    with pytest.raises(ConfigError, match="compression_type"):
        load_settings(cfg, env={})


def test_fetch_max_wait_is_bounded_and_reaches_the_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch of caught-up partitions holds up the refill of a backlogged one for up to
    fetch_max_wait_ms (kafka-python keeps one fetch in flight per broker): bounded, and the
    consumer is built with it."""
    from churnguard.service import clients

    cfg = tmp_path / "c.toml"
    cfg.write_text("[kafka]\nfetch_max_wait_ms = 2000\n")
    with pytest.raises(ConfigError, match=r"kafka\.fetch_max_wait_ms = 2000 is not allowed"):
        load_settings(cfg, env={})
    built: dict[str, object] = {}
    monkeypatch.setattr(clients, "KafkaConsumer", lambda **kw: built.update(kw))
    cfg.write_text("[kafka]\nfetch_max_wait_ms = 50\n")
    clients.KafkaClients(load_settings(cfg, env={}).kafka).consumer()
    assert built["fetch_max_wait_ms"] == 50
    assert Settings().kafka.fetch_max_wait_ms == 100
