"""Progress bars for the long file commands: records/s and ETA on a terminal, silent otherwise.

A bar is drawn on stderr only when stderr is a terminal and ``--quiet`` was not given, so
piped runs, CI logs and the JSON on stdout stay clean. The total (for the ETA) is the line
count of the plain input files, one JSONL record a line; with stdin, gzip input or a
pretty-printed document the bar still shows the count and rate, without an ETA.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from churnguard.ingest.files import STDIN

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def shown(quiet: bool) -> bool:
    """Whether a bar is drawn: a terminal on stderr and no ``--quiet``."""
    return not quiet and sys.stderr.isatty()


def count_records(paths: Sequence[str]) -> int | None:
    """Lines in the input files, or None when one is stdin, gzip, or cannot be read."""
    total = 0
    for path in paths:
        if path == STDIN:
            return None
        try:
            with Path(path).open("rb") as fh:
                chunk = fh.read(_CHUNK)
                if chunk[:2] == _GZIP_MAGIC:
                    return None
                last = b"\n"
                while chunk:
                    total += chunk.count(b"\n")
                    last = chunk[-1:]
                    chunk = fh.read(_CHUNK)
                total += last != b"\n"  # a last line without a newline
        except OSError:
            return None  # the reader reports it properly
    return total


class Progress:
    """A bar that is moved *to* a count (callers report totals so far, not increments).

    Use it as ``with closing(Progress(...)) as bar:`` so the bar is cleared on any exit.
    """

    def __init__(
        self, desc: str, total: float | None, *, quiet: bool, unit: str = "records"
    ) -> None:
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not shown(quiet),
            leave=False,
        )

    @classmethod
    def for_files(cls, desc: str, paths: Sequence[str], *, quiet: bool) -> Progress:
        """A records bar over input files (counted only when the bar is drawn)."""
        return cls(desc, count_records(paths) if shown(quiet) else None, quiet=quiet)

    def to(self, done: float, total: float | None = None) -> None:
        """Move to ``done``; ``total`` sets the end when it is known only now."""
        if total is not None and self._bar.total != total:
            self._bar.total = total
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()
