"""The feature spec is the single source: docs are generated from it, code computes its names."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from churnguard.errors import ConfigError
from churnguard.profiling.spec import GAP_FLOOR, FeatureSpec, load_spec, render_markdown

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
    with pytest.raises(ConfigError, match=r"required key feature\[0\]\.transform is missing"):
        load_spec(bad)


@pytest.mark.parametrize(
    ("wrong", "right", "line"),
    [
        ('transform = "log1p"', 'transfrom = "log1p"', "unknown key feature[0].transfrom;"),
        ('applies = "both"', 'applies = "pods"', 'feature[0].applies = "pods" is not allowed'),
        (
            "scale = 4.0",
            "scale = -4.0",
            "feature[0].scale = -4.0 is not allowed; allowed: a number > 0",
        ),
        ("window_seconds = 300", "windows_seconds = 300", "unknown key windows_seconds;"),
    ],
)
def test_a_misspelt_spec_is_refused_in_one_line(
    tmp_path: Path, wrong: str, right: str, line: str
) -> None:
    text = (ROOT / "features" / "v1.toml").read_text()
    assert wrong in text
    bad = tmp_path / "v1.toml"
    bad.write_text(text.replace(wrong, right, 1))
    with pytest.raises(ConfigError) as err:
        load_spec(bad)
    assert str(err.value).startswith(f"feature spec {bad}: {line}")
    assert "\n" not in str(err.value)


def test_log_gap_resolves_ratios_near_one() -> None:
    spec = load_spec()
    j = spec.names.index("beacon_regularity")
    assert spec.by_name("beacon_regularity").transform == "log_gap"
    raw = np.zeros((4, len(spec.names)))
    raw[:, j] = [0.0, 0.6, 0.94, 0.99]  # none, an app's polling, a jittery and a clockwork beacon
    view = spec.transform(raw)[:, j]
    assert abs(view[0]) < 0.01  # missing stays at (about) zero
    assert np.all(np.diff(view) > 0)
    assert view[3] - view[1] > 5.0  # clockwork is far above polling, not 0.39 above it
    assert [spec.inverse(j, v) for v in view] == pytest.approx([0.0, 0.6, 0.94, 0.99])


SPEC = load_spec()


def _one_feature_at_a_time(raw: np.ndarray, spec: FeatureSpec = SPEC) -> np.ndarray:
    """The model view as the spec defines it, column by column (the reference), with the
    C library's log1p and log2 (Python's ``math``) that the transform uses on every CPU."""
    log1p, log2 = (np.frompyfunc(fn, 1, 1) for fn in (math.log1p, math.log2))
    out = raw.copy()
    for j, f in enumerate(spec.features):
        col = raw[:, j]
        if f.transform == "log1p":
            col = log1p(np.clip(col, 0.0, None)).astype(float)
        elif f.transform == "log_gap":
            col = -log2(1.0 - np.clip(col, 0.0, 1.0) + GAP_FLOOR).astype(float)
        if f.scale != 1.0:
            col = col / f.scale
        out[:, j] = -col if f.direction == "low" else col
    return out


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        float,
        st.tuples(st.integers(0, 12), st.just(len(SPEC.names))),
        elements=st.sampled_from([0.0, -0.0, 0.5, 0.999, 1.0, 3.0, -2.0, np.inf, np.nan])
        | st.floats(-1e12, 1e12),
    )
)
def test_transform_is_the_spec_applied_one_feature_at_a_time(raw: np.ndarray) -> None:
    """Column groups and masks are a speed-up only: the same bits as the definition,
    signed zeros, infinities and NaN included (the forests learn these values)."""
    with np.errstate(all="ignore"):
        assert SPEC.transform(raw).tobytes() == _one_feature_at_a_time(raw).tobytes()


_SPECIAL = st.sampled_from([0.0, -0.0, 0.5, 0.999, 1.0, 3.0, -2.0, np.inf, -np.inf, np.nan])


@settings(max_examples=200, deadline=None)
@given(
    st.permutations(SPEC.features),
    st.lists(
        st.tuples(
            st.sampled_from(["log1p", "identity", "log_gap"]),
            st.sampled_from([1.0, 0.35, 0.5, 4.0]),
            st.sampled_from(["high", "low"]),
        ),
        min_size=len(SPEC.features),
        max_size=len(SPEC.features),
    ),
    st.integers(1, 12),
    st.data(),
)
def test_any_specs_transform_is_applied_one_feature_at_a_time(
    features: list, rules: list[tuple[str, float, str]], rows: int, data: st.DataObject
) -> None:
    """Groups that are not runs of adjacent columns (gathered, not sliced), with or without
    scales or low features: the same bits as the definition."""
    features = [
        msgspec.structs.replace(f, transform=t, scale=s, direction=d)
        for f, (t, s, d) in zip(features, rules, strict=True)
    ]
    spec = FeatureSpec(
        version="1",
        window_seconds=300.0,
        allowed_lateness_seconds=60.0,
        idle_expiry_seconds=3600.0,
        features=tuple(features),
    )
    raw = data.draw(
        hnp.arrays(float, (rows, len(features)), elements=_SPECIAL | st.floats(-1e12, 1e12))
    )
    with np.errstate(all="ignore"):
        assert spec.transform(raw).tobytes() == _one_feature_at_a_time(raw, spec).tobytes()


def test_a_misspelt_spec_stops_replay_and_serve_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from churnguard.cli import main
    from churnguard.profiling import spec as spec_module

    text = (ROOT / "features" / "v1.toml").read_text()
    (tmp_path / "v1.toml").write_text(text.replace('transform = "log1p"', 'transfrom = "log1p"', 1))
    monkeypatch.setattr(spec_module, "SPEC_DIR", tmp_path)  # as CHURNGUARD_SPEC_DIR would
    for argv in (["replay", "-", "--alerts", "-", "--no-model"], ["serve"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert "unknown key feature[0].transfrom; allowed keys: name, kind, transform" in err
