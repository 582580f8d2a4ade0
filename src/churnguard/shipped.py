"""Where the feature specs and the default model bundle that ship with churnguard are.

A wheel carries them inside the package (``churnguard/_shipped``, copied there by setup.py's
build step), so an installed service, the image's included, finds them with nothing to set.
A checkout (``make venv``'s editable install, the notebooks) has no ``_shipped`` and uses
the repository's own ``features/`` and ``models/``, where ``model build`` writes.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "_shipped"


def shipped(*parts: str) -> Path:
    """``parts`` under the shipped tree: the wheel's copy if installed from one, else the
    repository's."""
    root = PACKAGED if PACKAGED.is_dir() else Path(__file__).resolve().parents[2]
    return root.joinpath(*parts)
