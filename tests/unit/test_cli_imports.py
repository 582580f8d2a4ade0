"""``churnguard --help`` and a file command's start-up must not pay for Kafka or the ML stacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnguard.cli import COMMANDS, build_parser

HEAVY = ("kafka", "sklearn", "river", "scipy", "numba", "llvmlite")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    return {m.split(".")[0] for m in out}


def test_help_imports_no_command_module() -> None:
    code = (
        "import contextlib, io\nfrom churnguard.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])"
    )
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert "numpy" not in loaded


def test_replay_help_loads_no_kafka_or_ml_stack() -> None:
    code = (
        "import contextlib, io\nfrom churnguard.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['replay', '--help'])"
    )
    assert not _loaded_after(code) & set(HEAVY)


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_the_chosen_command_gets_its_arguments(name: str) -> None:
    (choices,) = [a.choices for a in build_parser(only=name)._actions if a.dest == "command"]
    assert callable(choices[name].get_default("_run"))
    assert all(choices[other].get_default("_run") is None for other in choices if other != name)
