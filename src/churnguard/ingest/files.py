"""Records from files (or stdin) with their coordinates, streamed with bounded memory.

A file may hold records one per line (JSON Lines), or be one JSON document of any size:
a top-level array of records (Stratus Red Team, export scripts), a CloudTrail
``{"Records": [...]}`` delivery file, an audit ``EventList``, ``aws cloudtrail
lookup-events`` output (``{"Events": [{"CloudTrailEvent": "<json string>"}]}``), or a single
pretty-printed record (Tetragon's documentation). Documents are streamed item by item
with ijson, so the record size cap (``max_record_bytes``) applies to one record, never to
the file. Gzip is detected by its magic bytes, not the file name.

Nothing is adapted here: records travel on as bytes, and a broken line or item becomes a
dead letter downstream with its coordinates (``file:line`` for a line, ``file#n`` for the
n-th item of a document). Input a person must fix (missing, unreadable, empty, not JSON at
all) raises :class:`~churnguard.ingest.exceptions.InputError` with one line naming the
file; this module never lets a traceback reach the user for bad input.
"""

from __future__ import annotations

import gzip
import io
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import ijson
import orjson

from churnguard.ingest.events import Origin
from churnguard.ingest.exceptions import InputError

STDIN = "-"
INPUTS_HELP = (
    "telemetry file(s): JSON Lines or JSON documents of any size, gzip or not; '-' = stdin"
)
_GZIP_MAGIC = b"\x1f\x8b"
_PEEK = 64 * 1024
# a document's top-level key whose array holds the records (``items`` only in an EventList)
_WRAPPERS = ("Records", "items", "Events")
# a document whose records sit in a wrapper array (possibly minified on one long line)
_WRAPPER_HEAD = re.compile(
    rb'^\s*(\[|\{.{0,512}?"(Records|Events)"\s*:\s*\[|\{.{0,512}?"EventList")', re.S
)


def read_records(paths: Iterable[str]) -> Iterator[tuple[bytes, Origin]]:
    """Yield ``(raw record, origin)`` for every record of every path, in file order.

    An empty file among others is fine (a source that had nothing to say); an input whose
    files are all empty is an error.
    """
    names, empty = [], []
    for path in paths:
        source = "<stdin>" if path == STDIN else path
        names.append(source)
        with _open(path) as stream:
            skipped = _skip_blank(stream)
            if skipped is None:
                empty.append(source)
                continue
            yield from _records(stream, source, first_line=skipped + 1)
    if names and len(empty) == len(names):
        raise InputError(f"{', '.join(empty)}: empty input (no records)")


@contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    try:
        raw: BinaryIO = sys.stdin.buffer if path == STDIN else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory (name the files in it)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        buffered = io.BufferedReader(raw, _PEEK)  # type: ignore[arg-type]
        try:
            if buffered.peek(2)[:2] == _GZIP_MAGIC:
                with gzip.open(buffered, "rb") as unzipped:
                    yield io.BufferedReader(unzipped, _PEEK)  # type: ignore[arg-type]
            else:
                yield buffered
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: cannot be read: {exc}") from None
    finally:
        if path != STDIN:
            raw.close()


def _records(
    stream: io.BufferedReader, source: str, first_line: int
) -> Iterator[tuple[bytes, Origin]]:
    head = stream.peek(16)
    if head[:1] not in (b"{", b"["):
        raise InputError(
            f"{source}: unknown format: not JSON or JSON Lines (starts with {head[:12]!r})"
        )
    if _WRAPPER_HEAD.match(head := stream.peek(_PEEK)) or not _looks_like_lines(head):
        yield from _document(stream, source)
    else:
        yield from _lines(stream, source, first_line)


def _skip_blank(stream: io.BufferedReader) -> int | None:
    """Skip leading whitespace (and a UTF-8 BOM): the line breaks skipped, None if all blank."""
    newlines = 0
    while True:
        chunk = stream.peek(_PEEK)
        if not chunk:
            return None
        stripped = chunk.lstrip(b" \t\r\n")
        skipped = stream.read(len(chunk) - len(stripped))
        newlines += skipped.count(b"\n")
        if stripped.startswith(b"\xef\xbb\xbf"):
            stream.read(3)
        elif stripped:
            return newlines


def _looks_like_lines(head: bytes) -> bool:
    """JSON Lines: the first line is a whole JSON value, or (a broken first line) the next is.

    A pretty-printed document's first lines are never whole values. A first line longer
    than the peek that is not a wrapper is one big record: JSON Lines.
    """
    if b"\n" not in head:
        return True
    lines = [line.strip() for line in head.split(b"\n")[:-1] if line.strip()]
    return any(_is_json(line) for line in lines[:2])


def _is_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _lines(stream: BinaryIO, source: str, first_line: int) -> Iterator[tuple[bytes, Origin]]:
    # physical line numbers: ``first_line`` is where the blank lines skipped before ended
    for number, line in enumerate(stream, start=first_line):
        record = line.strip()
        if len(record) > _PEEK and _WRAPPER_HEAD.match(record[:_PEEK]):
            # a delivered file per line (``cat *.json``): its records one by one
            try:
                for item in _items(ijson.parse(record, multiple_values=True, use_float=True)):
                    yield item, Origin(source=source, line=number)
                continue
            except ijson.JSONError:
                pass  # the decoder rejects the whole line with its reason
        if record:
            yield record, Origin(source=source, line=number)


def _document(stream: io.BufferedReader, source: str) -> Iterator[tuple[bytes, Origin]]:
    """Stream a JSON document (or several concatenated) item by item."""
    head = stream.peek(_PEEK)[:_PEEK]
    index = 0
    try:
        for item in _items(ijson.parse(stream, multiple_values=True, use_float=True)):
            yield item, Origin(source=source, offset=index)
            index += 1
    except ijson.JSONError:
        # the rest cannot be trusted: the document's start goes on to the decoder, which
        # dead-letters it as malformed JSON with the position where it broke
        yield head, Origin(source=source, offset=index)


def _items(events: Iterator[tuple[str, str, object]]) -> Iterator[bytes]:
    """Top-level arrays and wrapper arrays yield their elements; anything else is one item."""
    for prefix, event, value in events:
        if prefix != "":
            continue
        if event == "start_array":
            yield from _array_items(events, "item")
        elif event == "start_map":
            yield from _map_items(events)
        else:  # a bare scalar: let the decoder reject it with its reason
            yield orjson.dumps(value)


def _array_items(events: Iterator[tuple[str, str, object]], item_prefix: str) -> Iterator[bytes]:
    for prefix, event, value in events:
        if prefix != item_prefix:  # the array's own end
            return
        yield orjson.dumps(_build(events, event, value))


def _map_items(events: Iterator[tuple[str, str, object]]) -> Iterator[bytes]:
    """A top-level object: stream a wrapper's array, or build the object as one record."""
    rest: dict[str, object] = {}
    streamed = False
    for prefix, event, value in events:
        if event == "end_map" and prefix == "":
            break
        if event != "map_key":
            continue
        key = str(value)
        prefix, event, value = next(events)
        wrapper = key in _WRAPPERS and (key != "items" or rest.get("kind") == "EventList")
        if wrapper and event == "start_array":
            streamed = True
            for item in _array_items(events, f"{key}.item"):
                yield _unwrap(key, item, rest)
        else:
            rest[key] = _build(events, event, value)
    if not streamed:
        yield orjson.dumps(rest)


def _unwrap(key: str, item: bytes, envelope: dict[str, object]) -> bytes:
    """One element of a wrapper array as a record of its own format."""
    if key == "Events":  # lookup-events: the CloudTrail record is an embedded JSON string
        obj = orjson.loads(item)
        if isinstance(obj, dict) and isinstance(obj.get("CloudTrailEvent"), str):
            return obj["CloudTrailEvent"].encode()
        return item
    if key == "items" and envelope.get("kind") == "EventList":
        # an EventList's items are audit Events; exporters often omit their type fields
        obj = orjson.loads(item)
        if isinstance(obj, dict):
            obj.setdefault("apiVersion", envelope.get("apiVersion", "audit.k8s.io/v1"))
            obj.setdefault("kind", "Event")
            return orjson.dumps(obj)
    return item


def _build(events: Iterator[tuple[str, str, object]], event: str, value: object) -> object:
    """Build one JSON value from ijson's event stream, starting at its first event."""
    if event not in ("start_map", "start_array"):
        return value
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for _, ev, val in events:
        builder.event(ev, val)
        if ev in ("start_map", "start_array"):
            depth += 1
        elif ev in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return builder.value
    return builder.value
