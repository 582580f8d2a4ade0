"""parse_record's contract: never raises, accounts for every input, rejects with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.errors import ConfigError
from churnguard.ingest import FORMATS, AdapterContext, Parsed, detect_format, parse_record
from churnguard.ingest.common import parse_time
from churnguard.ingest.events import Origin
from churnguard.ingest.exceptions import AdapterError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VALID: list[dict] = [
    record
    for fmt in ("k8s_audit", "cloudtrail", "tetragon", "flows", "falco")
    for record in json.loads((FIXTURES / "sources" / f"{fmt}.json").read_text()).values()
]  # the real samples are mutated the same way (test_real_samples_survive_mutation)


def accounted(parsed: Parsed) -> None:
    assert parsed.events or parsed.ignored or parsed.rejected
    for r in parsed.rejected:
        assert "internal error" not in r.detail, r
        assert len(r.record) <= 2049


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b'{"a": "\xff\xfe"}', "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b'{"hello": "world"}', "unknown_format"),
        (b'{"eventVersion": "1.09", "eventSource": "s3.amazonaws.com"}', "missing_field"),
    ],
)
def test_bad_records_are_rejected_with_origin(raw: bytes, reason: str) -> None:
    origin = Origin(source="in.jsonl", line=3)
    parsed = parse_record(raw, origin=origin)
    assert [r.reason for r in parsed.rejected] == [reason]
    assert parsed.rejected[0].origin == origin and not parsed.events


def test_record_too_large_keeps_a_bounded_copy() -> None:
    raw = b'{"x": "' + b"a" * 5000 + b'"}'
    parsed = parse_record(raw, ctx=AdapterContext(max_record_bytes=1000))
    (rej,) = parsed.rejected
    assert rej.reason == "record_too_large" and len(rej.record) <= 2049


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-06-13T19:35:58.532086161Z", 1623612958.532086161),
        ("2021-06-13T21:35:58.5+02:00", 1623612958.5),
        ("2021-06-13T19:35:58Z", 1623612958.0),
        (1623612958532086161, 1623612958.532086161),  # Falco evt.time, ns
        (1623612958532, 1623612958.532),
        (1623612958.5, 1623612958.5),
    ],
)
def test_parse_time_reads_rfc3339_and_epoch_units(value: object, expected: float) -> None:
    assert parse_time(value, "t") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value", ["1999-12-31T23:59:59Z", "2100-01-02T00:00:00Z", "yesterday", True, 0]
)
def test_parse_time_rejects_absurd_times(value: object) -> None:
    with pytest.raises(AdapterError) as exc:
        parse_time(value, "t")
    assert exc.value.reason == "bad_value"


def test_absurd_event_time_is_a_bad_value_dead_letter() -> None:
    rec = {
        "time": "1970-01-01T00:00:00Z",
        "src": {"namespace": "a", "pod": "b"},
        "dst": {"ip": "1.1.1.1"},
    }
    assert [r.reason for r in parse_record(orjson.dumps(rec)).rejected] == ["bad_value"]


def test_pinned_format_skips_detection_and_unknown_pins_are_rejected() -> None:
    flow = {
        "time": "2024-05-14T10:31:00Z",
        "src": {"namespace": "a", "pod": "b"},
        "dst": {"ip": "10.0.0.1"},
    }
    assert parse_record(orjson.dumps(flow), pinned="flow").events
    assert parse_record(orjson.dumps(flow), pinned="auto").events
    assert [r.reason for r in parse_record(orjson.dumps(flow), pinned="falco").rejected] == [
        "missing_field"
    ]
    assert [r.reason for r in parse_record(orjson.dumps(flow), pinned="syslog").rejected] == [
        "unknown_format"
    ]


def test_detect_format_recognises_every_fixture() -> None:
    for fmt, file in zip(
        FORMATS, ("k8s_audit", "cloudtrail", "falco", "tetragon", "flows"), strict=True
    ):
        for record in json.loads((FIXTURES / "sources" / f"{file}.json").read_text()).values():
            assert detect_format(record) == fmt
    assert detect_format({"Records": []}) == "cloudtrail"
    assert detect_format({"message": "hi"}) is None


def test_empty_containers_are_ignored() -> None:
    assert [i.reason for i in parse_record(b'{"Records": []}').ignored] == ["empty_list"]


def test_events_carry_origin_and_format(real_data: Path) -> None:
    origin = Origin(source="runtime", partition=2, offset=99)
    line = (real_data / "tetragon_events.jsonl").read_bytes().splitlines()[-1]
    parsed = parse_record(line, origin=origin)  # a real Tetragon exec
    assert parsed.events and all(
        e.origin == origin and e.format == "tetragon" for e in parsed.events
    )


def test_bad_cluster_cidr_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        AdapterContext(cluster_cidrs=["10.0.0.0/33"])


# -- never raises ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    accounted(parse_record(raw))


@FAST
@given(json_values, st.sampled_from([None, *FORMATS]))
def test_never_raises_on_arbitrary_json(value: object, pinned: str | None) -> None:
    accounted(parse_record(orjson.dumps(value), pinned=pinned))


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a nested record, to pick one to delete or overwrite."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_paths(v, (*prefix, i)))
    return out


def mutated(data: st.DataObject, valid: dict) -> dict:
    """A copy of ``valid`` with one to three fields deleted or overwritten by any JSON."""
    record = json.loads(json.dumps(valid))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(record)
        if not paths:
            break
        *parent_path, key = data.draw(st.sampled_from(paths))
        parent = record
        for step in parent_path:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = data.draw(json_values)
    return record


@FAST
@given(st.data())
def test_never_raises_on_mutated_valid_records(data: st.DataObject) -> None:
    accounted(parse_record(orjson.dumps(mutated(data, data.draw(st.sampled_from(VALID))))))


@FAST
@given(st.data())
def test_real_samples_survive_mutation(real_data: Path, data: st.DataObject) -> None:
    real = [
        json.loads(line)
        for name in ("falco_output.jsonl", "tetragon_events.jsonl", "hubble_flows.jsonl")
        for line in (real_data / name).read_bytes().splitlines()
    ]
    accounted(parse_record(orjson.dumps(mutated(data, data.draw(st.sampled_from(real))))))
