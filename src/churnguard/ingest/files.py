"""Records from files (or stdin) with their file:line coordinates, for replay and tests.

JSONL is one record per line. A file that starts with a pretty-printed JSON document
(an audit ``EventList``, a CloudTrail ``{"Records": [...]}`` file) is yielded whole as one
record, which :func:`churnguard.ingest.parse_record` splits into items. Gzip is detected
by its magic bytes, not the file name. Nothing is decoded here beyond finding the records:
bad lines travel on as bytes and are dead-lettered by the decoder with their line number.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import orjson

from churnguard.ingest.events import Origin

STDIN = "-"
_GZIP_MAGIC = b"\x1f\x8b"


def read_records(paths: Iterable[str]) -> Iterator[tuple[bytes, Origin]]:
    """Yield ``(raw record, Origin(source=path, line=n))`` for every record of every path."""
    for path in paths:
        with _open(path) as stream:
            yield from _records(stream, "<stdin>" if path == STDIN else path)


@contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    raw: BinaryIO = sys.stdin.buffer if path == STDIN else open(path, "rb")  # noqa: SIM115
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
        if buffered.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.open(buffered, "rb") as unzipped:
                yield unzipped
        else:
            yield buffered
    finally:
        if path != STDIN:
            raw.close()


def _records(stream: BinaryIO, source: str) -> Iterator[tuple[bytes, Origin]]:
    lines = enumerate(stream, start=1)
    for number, line in lines:
        record = line.strip()
        if not record:
            continue
        if _starts_document(record):
            yield from _document(number, line, lines, source)
            return
        yield record, Origin(source=source, line=number)
        break
    for number, line in lines:
        record = line.strip()
        if record:
            yield record, Origin(source=source, line=number)


def _starts_document(first: bytes) -> bool:
    """A first line that opens JSON without closing it: a pretty-printed document."""
    if first[:1] not in (b"{", b"["):
        return False
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return True
    return False


def _document(
    first_number: int, first_line: bytes, rest: Iterator[tuple[int, bytes]], source: str
) -> Iterator[tuple[bytes, Origin]]:
    """The whole file as one record; if it is not one JSON value after all, line by line."""
    numbered = [(first_number, first_line), *rest]
    whole = b"".join(line for _, line in numbered).strip()
    try:
        orjson.loads(whole)
    except orjson.JSONDecodeError:
        # A JSONL file whose first line is broken: keep the good lines after it.
        for number, line in numbered:
            record = line.strip()
            if record:
                yield record, Origin(source=source, line=number)
        return
    yield whole, Origin(source=source, line=first_number)
