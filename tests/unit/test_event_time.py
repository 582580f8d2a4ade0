"""Event time from text: RFC 3339 as exporters write it, parsed by msgspec (ingest.common)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from churnguard.ingest import common
from churnguard.ingest.common import parse_time
from churnguard.ingest.exceptions import AdapterError

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
)
_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))


def _rfc3339(moment: datetime, offset: timedelta, digits: int, sep: str, mark: str) -> str:
    local = moment.astimezone(timezone(offset))
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += mark + f"{local.microsecond:06d}"[:digits]
    if offset == timedelta(0):
        return text + "Z"
    sign, minutes = ("+" if offset > timedelta(0) else "-"), abs(offset) // timedelta(minutes=1)
    return text + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@given(
    moment=MOMENTS,
    offset=OFFSETS,
    digits=st.integers(0, 6),
    sep=st.sampled_from(["T", "t", " "]),
    mark=st.sampled_from([".", ","]),
)
def test_rfc3339_in_any_offset_and_precision_is_the_same_instant(
    moment: datetime, offset: timedelta, digits: int, sep: str, mark: str
) -> None:
    text = _rfc3339(moment, offset, digits, sep, mark)
    truncated = moment.replace(
        microsecond=int(f"{moment.microsecond:06d}"[:digits] or 0) * 10 ** (6 - digits)
    )
    assert parse_time(text, "t") == pytest.approx(truncated.timestamp(), abs=1e-6)


def test_what_exporters_write_besides_strict_rfc3339() -> None:
    assert parse_time("2024-06-30T23:59:60Z", "t") == parse_time("2024-06-30T23:59:59Z", "t")
    assert parse_time("2024-01-02T03:04:05", "t") == parse_time("2024-01-02T03:04:05Z", "t")
    assert parse_time(" 1717000000123 ", "t") == pytest.approx(1717000000.123)
    for bad in ("2024-13-01T00:00:00Z", "2024-01-02T03:04:61Z", "not a time", "2024-01-02"):
        with pytest.raises(AdapterError) as err:
            parse_time(bad, "t")
        assert err.value.reason == "bad_value"


def _time_strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [t for v in node.values() for t in _time_strings(v)]
    if isinstance(node, list):
        return [t for v in node for t in _time_strings(v)]
    if isinstance(node, str) and _UTC_TIME.fullmatch(node):
        return [node]
    return []


def test_every_time_in_the_real_samples_parses_to_the_instant_it_names(real_data: Path) -> None:
    texts = []
    for path in sorted(real_data.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            texts += _time_strings(json.loads(line))
    assert len(texts) > 1000
    for text in texts:
        # whole seconds by the standard library, the fraction (up to ns) added exactly
        head, _, fraction = text.rstrip("Zz").partition(".")
        expected = datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{fraction}0")
        assert parse_time(text, "t") == pytest.approx(expected, abs=1e-6), text


def _convert_or_error(text: str) -> object:
    """What ``msgspec.convert(text, datetime)`` gives: the datetime (with its tzinfo), or the
    type of what it raised."""
    try:
        moment = msgspec.convert(text, datetime)
    except (msgspec.ValidationError, UnicodeEncodeError) as exc:
        return type(exc)
    return (moment, moment.tzinfo)


def _fast_or_error(text: str) -> object:
    try:
        moment = common._rfc3339(text)
    except (msgspec.ValidationError, UnicodeEncodeError) as exc:
        return type(exc)
    return (moment, moment.tzinfo)


# texts near RFC 3339: its digits and marks, quotes, backslashes, escapes, controls, surrogates
_NEAR_TIME = st.text(alphabet='0123456789-:.,TtZz +"\\u/\x00\x1f\ud800é', max_size=40)


@given(
    moment=MOMENTS,
    offset=OFFSETS,
    digits=st.sampled_from([0, 1, 3, 6, 6, 6]),
    ns_digits=st.text(alphabet="0123456789", max_size=6),
    sep=st.sampled_from(["T", "t", " "]),
    tail=st.sampled_from(["", "5", "49", "Z", "\\", '"', "\x01", "\ud800"]),
    cut=st.integers(0, 40),
)
def test_the_quoted_decode_reads_a_time_as_convert_does(
    moment: datetime, offset: timedelta, digits: int, ns_digits: str, sep: str, tail: str, cut: int
) -> None:
    """``common._rfc3339`` (msgspec's JSON decoder on the quoted text) is ``msgspec.convert``
    bit for bit: the same instant, tzinfo and rounding of 7+ digits, or the same error."""
    text = _rfc3339(moment, offset, digits, sep, ".")
    if digits == 6:  # digits past the microsecond (up to ns and beyond): rounded on the 7th
        text = text[:26] + ns_digits + text[26:]
    for candidate in (text, text + tail, text[:cut] + tail + text[cut:]):
        assert _fast_or_error(candidate) == _convert_or_error(candidate), candidate


@given(text=_NEAR_TIME)
def test_the_quoted_decode_refuses_what_convert_refuses(text: str) -> None:
    assert _fast_or_error(text) == _convert_or_error(text)
