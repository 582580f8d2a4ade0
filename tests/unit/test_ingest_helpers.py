"""Shortcuts in the adapters' shared helpers decide as the plain rule they stand for."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from churnguard.ingest.common import strip_runtime_prefix

_PREFIX = re.compile(r"^[a-z0-9-]+://")


def _stripped_by_the_pattern(container_id: str | None) -> str | None:
    """The rule: a ``runtime://`` prefix off by its pattern, an empty id absent."""
    if container_id is None:
        return None
    return _PREFIX.sub("", container_id, count=1) or None


_RUNTIME = st.sampled_from(["containerd", "docker", "cri-o", "cri", "Docker", "a:b", "", "x y"])
_REST = st.text(alphabet="0123456789abcdef:/-", max_size=20)


@given(runtime=_RUNTIME, sep=st.sampled_from(["://", ":/", "", ":///"]), rest=_REST)
def test_a_known_runtime_prefix_comes_off_as_the_pattern_takes_it(
    runtime: str, sep: str, rest: str
) -> None:
    container_id = runtime + sep + rest
    assert strip_runtime_prefix(container_id) == _stripped_by_the_pattern(container_id)


@given(container_id=st.none() | st.text(max_size=30))
def test_any_id_comes_out_as_the_pattern_has_it(container_id: str | None) -> None:
    assert strip_runtime_prefix(container_id) == _stripped_by_the_pattern(container_id)
