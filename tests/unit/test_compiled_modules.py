"""``compiled_modules`` names churnguard's modules loaded from extension modules: none in
this interpreted install, each compiled one in the Cython build
(tests/regression/test_compiled_build.py builds it and checks the hot ones are there)."""

from __future__ import annotations

import sys
import types
from importlib.machinery import EXTENSION_SUFFIXES

import churnguard.pipeline
from churnguard import compiled_modules


def test_the_pipeline_is_named_exactly_when_it_was_loaded_compiled() -> None:
    loaded_compiled = churnguard.pipeline.__file__.endswith(tuple(EXTENSION_SUFFIXES))
    assert ("churnguard.pipeline" in compiled_modules()) == loaded_compiled
    if not loaded_compiled:  # the editable install of `make venv`: nothing is compiled
        assert compiled_modules() == []


def test_a_module_loaded_from_an_extension_is_named(monkeypatch) -> None:
    fake = types.ModuleType("churnguard.fake_compiled")
    fake.__file__ = f"/site/churnguard/fake_compiled{EXTENSION_SUFFIXES[0]}"
    other = types.ModuleType("numpy_fake")
    other.__file__ = f"/site/numpy_fake{EXTENSION_SUFFIXES[0]}"
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(sys.modules, other.__name__, other)
    assert compiled_modules() == ["churnguard.fake_compiled"]
