"""The documented example config is the real configuration surface."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.config import Settings, load_settings
from churnguard.errors import ConfigError

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
