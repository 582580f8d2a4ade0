"""read_records: JSONL, whole JSON documents, gzip, stdin, and lines the decoder must reject."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.ingest import AdapterContext, parse_record
from churnguard.ingest.events import EventKind, Origin
from churnguard.ingest.files import read_records

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AUDIT = json.loads((FIXTURES / "sources" / "k8s_audit.json").read_text())
TRAIL = json.loads((FIXTURES / "sources" / "cloudtrail.json").read_text())


def line(record: dict) -> bytes:
    return orjson.dumps(record)


def test_jsonl_skips_blank_lines_and_keeps_physical_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rows = [
        b"  ",
        line(AUDIT["pod_delete_by_person"]),
        b"",
        b"   ",
        line(AUDIT["pods_exec_by_person"]),
        b"",
    ]
    path.write_bytes(b"\n".join(rows) + b"\n")
    out = list(read_records([str(path)]))
    assert [o for _, o in out] == [
        Origin(source=str(path), line=2),
        Origin(source=str(path), line=5),
    ]
    assert [parse_record(raw).events[0].kind for raw, _ in out] == [
        EventKind.POD_DELETE,
        EventKind.POD_EXEC,
    ]


def test_pretty_printed_event_list_is_streamed_item_by_item(tmp_path: Path) -> None:
    items = [dict(AUDIT["pod_create_request_response"]), dict(AUDIT["pod_delete_by_person"])]
    for item in items:  # exporters often leave the items' type fields out
        item.pop("kind", None), item.pop("apiVersion", None)
    path = tmp_path / "audit.json"
    path.write_text(
        json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}, indent=2)
    )
    out = list(read_records([str(path)]))
    assert [o.pointer() for _, o in out] == [f"{path}#0", f"{path}#1"]
    kinds = [e.kind for raw, _ in out for e in parse_record(raw).events]
    assert kinds == [EventKind.POD_CREATE, EventKind.POD_DELETE]


def test_cloudtrail_records_file_gzipped_is_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "111122223333_CloudTrail_eu-west-1_20240514T1005Z_abc.json.gz"
    doc = {"Records": [TRAIL["run_by_person"], TRAIL["terminate_by_person"]]}
    path.write_bytes(gzip.compress(json.dumps(doc, indent=1).encode()))
    out = list(read_records([str(path)]))
    assert len(out) == 2
    assert sum(len(parse_record(raw).events) for raw, _ in out) == 3


def test_gzip_is_detected_by_content_and_jsonl_inside_works(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"  # no .gz suffix
    path.write_bytes(
        gzip.compress(line(TRAIL["run_by_person"]) + b"\n\n" + line(TRAIL["access_denied"]))
    )
    assert [o.line for _, o in read_records([str(path)])] == [1, 3]


def test_huge_and_invalid_utf8_lines_become_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    huge = b'{"pad": "' + b"x" * 3_000_000 + b'"}'
    path.write_bytes(
        huge + b"\n" + b'{"k": "\xff\xfe bad utf8"}\n' + line(AUDIT["pod_delete_by_person"]) + b"\n"
    )
    ctx = AdapterContext()
    results = [parse_record(raw, origin, ctx=ctx) for raw, origin in read_records([str(path)])]
    assert [r.rejected[0].reason for r in results[:2]] == ["record_too_large", "malformed_json"]
    assert results[1].rejected[0].origin == Origin(source=str(path), line=2)
    assert results[2].events


def test_jsonl_whose_first_line_is_broken_is_still_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "broken-first.jsonl"
    path.write_bytes(b'{"truncated": \n' + line(AUDIT["pod_delete_by_person"]) + b"\n")
    out = list(read_records([str(path)]))
    assert [o.line for _, o in out] == [1, 2]
    assert parse_record(out[0][0]).rejected and parse_record(out[1][0]).events


def test_stdin_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    data = line(AUDIT["pod_delete_by_person"]) + b"\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    ((raw, origin),) = list(read_records(["-"]))
    assert origin == Origin(source="<stdin>", line=1) and parse_record(raw).events


def _events_of(path: Path) -> list:
    return [e for raw, o in read_records([str(path)]) for e in parse_record(raw, o).events]


def test_a_records_file_over_the_record_cap_is_streamed_pretty_or_minified(
    tmp_path: Path,
) -> None:
    records = [dict(TRAIL["run_by_person"], pad="x" * 2000) for _ in range(700)]  # ~1.5 MB
    for name, text in (
        ("pretty.json", json.dumps({"Records": records}, indent=2)),
        ("minified.json", json.dumps({"Records": records})),
        (
            "two-delivered-files.json",
            "\n".join([json.dumps({"Records": records})] * 2),
        ),
    ):
        path = tmp_path / name
        path.write_text(text)
        assert len(text) > AdapterContext().max_record_bytes
        copies = 2 if name.startswith("two") else 1
        assert len(_events_of(path)) == len(parse_record(line(TRAIL["run_by_person"])).events) * (
            700 * copies
        ), name


def test_top_level_array_and_lookup_events_output(tmp_path: Path) -> None:
    array = tmp_path / "stratus.json"
    array.write_text(json.dumps([TRAIL["run_by_person"], TRAIL["terminate_by_person"]], indent=3))
    assert len(_events_of(array)) == 3
    lookup = tmp_path / "lookup-events.json"
    lookup.write_text(
        json.dumps(
            {
                "Events": [
                    {"EventId": "1", "EventName": "RunInstances",
                     "CloudTrailEvent": json.dumps(TRAIL["run_by_person"])},
                    {"EventId": "2", "EventName": "TerminateInstances",
                     "CloudTrailEvent": json.dumps(TRAIL["terminate_by_person"])},
                ],
                "NextToken": "abc",
            },
            indent=4,
        )
    )  # fmt: skip
    assert [e.kind for e in _events_of(lookup)] == [e.kind for e in _events_of(array)]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"", "empty input"),
        (b"\n  \n", "empty input"),
        (b"PAR1\x00\x01binary", "unknown format"),
        (b"time,src,dst\n1,2,3\n", "unknown format"),
        (gzip.compress(b""), "empty input"),
        (b"\x1f\x8b\x08\x00broken gzip", "cannot be read"),
    ],
)
def test_input_a_person_must_fix_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    from churnguard.ingest.exceptions import InputError

    path = tmp_path / "input.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        list(read_records([str(path)]))
    message = str(info.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_a_document_broken_part_way_keeps_the_records_before_the_break(tmp_path: Path) -> None:
    path = tmp_path / "truncated.json"
    text = json.dumps([TRAIL["run_by_person"], TRAIL["terminate_by_person"]], indent=2)
    path.write_text(text[: len(text) - 40])  # cut inside the second record
    out = [parse_record(raw, origin) for raw, origin in read_records([str(path)])]
    assert len(out) == 2 and out[0].events
    (dead,) = out[1].rejected
    assert dead.reason == "malformed_json" and dead.origin.pointer() == f"{path}#1"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_records = st.lists(
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("Records", "Events", "items")),
        _json,
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=_records, shape=st.sampled_from(["lines", "array", "pretty", "Records", "each"]),
       gz=st.booleans())  # fmt: skip
def test_every_shape_yields_the_same_records(
    tmp_path: Path, records: list[dict], shape: str, gz: bool
) -> None:
    if shape == "lines":
        body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    elif shape == "array":
        body = orjson.dumps(records)
    elif shape == "pretty":
        body = orjson.dumps(records, option=orjson.OPT_INDENT_2)
    elif shape == "Records":
        body = orjson.dumps({"Records": records}, option=orjson.OPT_INDENT_2)
    else:  # several pretty-printed documents, one after the other
        body = b"\n".join(orjson.dumps(r, option=orjson.OPT_INDENT_2) for r in records)
    path = tmp_path / "input"
    path.write_bytes(gzip.compress(body) if gz else body)
    assert [orjson.loads(raw) for raw, _ in read_records([str(path)])] == records


def test_an_empty_file_among_others_is_fine_all_empty_is_an_error(tmp_path: Path) -> None:
    from churnguard.ingest.exceptions import InputError

    empty, other = tmp_path / "falco.jsonl", tmp_path / "audit.jsonl"
    empty.write_bytes(b"")
    other.write_bytes(line(AUDIT["pod_delete_by_person"]) + b"\n")
    assert len(list(read_records([str(empty), str(other)]))) == 1
    with pytest.raises(InputError, match="empty input"):
        list(read_records([str(empty), str(empty)]))
