"""The feature spec is the single source: docs are generated from it, code computes its names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from churnguard.errors import ConfigError
from churnguard.featurespec import load_spec, render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_spec() -> None:
    assert (ROOT / "docs" / "features.md").read_text() == render_markdown(load_spec())


def test_transform_scales_and_orients_so_larger_is_more_suspicious() -> None:
    spec = load_spec()
    raw = spec.vector({"egress_bytes": np.e - 1, "shell_spawned": 1.0, "lifetime_s": 60.0})
    x = spec.transform(raw)[0]
    egress = spec.by_name("egress_bytes")
    assert x[spec.names.index("egress_bytes")] == pytest.approx(1.0 / egress.scale)
    assert x[spec.names.index("shell_spawned")] == 1.0
    life = spec.names.index("lifetime_s")
    assert spec.by_name("lifetime_s").direction == "low"
    short = x[life]
    long = spec.transform(spec.vector({}))[0][life]  # missing = a day: not short-lived
    assert short > long  # shorter lives map higher
    assert spec.inverse(life, short) == pytest.approx(60.0)


def test_bad_spec_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "v9.toml"
    bad.write_text('version = "9"\n[[feature]]\nname = "x"\nkind = "count"\n')
    with pytest.raises(ConfigError, match="lacks"):
        load_spec(bad)
