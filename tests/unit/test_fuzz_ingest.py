"""Fuzzing every adapter and the decoder with hostile input (issue 15, item 1).

Each adapter is fed mutated valid records of its own format (real samples and the unit
fixtures), the other formats' valid records (a topic pinned to the wrong format), and
arbitrary JSON; the decoder is fed arbitrary bytes, duplicated keys, deep nesting and huge
numbers. The outcome must always be a clean parse (events that survive the checkpoint
codec, or an ``Ignored``) or an ``AdapterError`` that ``parse_record`` turns into a dead
letter with a reason; and a :class:`Pipeline` must count every one of them.

Volume: every example checks a batch of ``BATCH`` inputs, and the ``fuzz-ci`` hypothesis
profile (``FUZZ_EXAMPLES`` examples per test, default 1,000) makes that >= 10,000 generated
inputs per adapter. ``CHURNGUARD_FUZZ_EXAMPLES=100`` runs a quick pass locally.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.ingest import _ADAPTERS, FORMATS, AdapterContext, Parsed, parse_record
from churnguard.ingest.events import Event, Ignored, Origin
from churnguard.ingest.exceptions import AdapterError
from churnguard.pipeline import Pipeline
from shared_samples import REAL_DATA

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "sources"
REAL = REAL_DATA  # tests/shared_samples.py: ../shared beside the checkout
BATCH = 10
FUZZ_EXAMPLES = int(os.environ.get("CHURNGUARD_FUZZ_EXAMPLES", "1000"))
settings.register_profile(
    "fuzz-ci",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz-ci")
FIXTURE_FILES = {"flow": "flows"}  # the unit fixture file of a format, where not its name


def _real_samples() -> dict[str, list[dict]]:
    """Real exporter output per format, read in place from ../shared (absent: none)."""
    out: dict[str, list[dict]] = {fmt: [] for fmt in FORMATS}
    if not REAL.is_dir():
        return out
    for name, fmt in (
        ("k8s_audit_microk8s.jsonl", "k8s_audit"),
        ("falco_output.jsonl", "falco"),
        ("tetragon_events.jsonl", "tetragon"),
        ("hubble_flows.jsonl", "flow"),
    ):
        lines = (REAL / name).read_bytes().splitlines()
        out[fmt].extend(json.loads(line) for line in lines[:200] if line.strip())
    for path in sorted((REAL / "stratus_detonation").glob("*.json")):
        doc = json.loads(path.read_text())
        out["cloudtrail"].extend(doc if isinstance(doc, list) else doc.get("Records", []))
    for path in sorted((REAL / "tetragon_docs").glob("*.json*")):
        out["tetragon"].extend(_documents(path.read_text()))
    for path in sorted((REAL / "falco_k8s_audit_traces").glob("*.json")):
        out["k8s_audit"].extend(_documents(path.read_text()))
    return out


def _documents(text: str) -> list[dict]:
    """Every JSON object in a file (pretty-printed ones follow each other); stops at junk."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while (i := len(text) - len(text[i:].lstrip())) < len(text):
        try:
            doc, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            break  # fal_01_003.json is broken on purpose; the byte fuzzers cover that
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


REAL_SAMPLES = _real_samples()
VALID: dict[str, list[dict]] = {
    fmt: [
        *json.loads((FIXTURES / f"{FIXTURE_FILES.get(fmt, fmt)}.json").read_text()).values(),
        *REAL_SAMPLES[fmt],
    ]
    for fmt in FORMATS
}


def _nested(depth: int) -> object:
    node: object = {}
    for _ in range(depth):
        node = [node]
    return node


DEEP = _nested(900)  # deeper than any real record; JSON encoders stop at ~1,000
HOSTILE = [
    None,
    True,
    0,
    -1,
    2**63,
    10**400,  # a Python dict can carry what JSON cannot: adapters must still cope
    -(10**30),
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "\x00",
    "A" * 200_000,
    "../../../../etc/passwd",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "2026-13-45T99:99:99Z",
    "1970-01-01T00:00:00Z",
    1e20,
    -1e20,
    "10.0.0.1",
    "999.999.999.999",
    "::ffff:10.0.0.1",
    {"seconds": "x", "nanos": []},
    {"seconds": 1e300},
    [],
    {},
    [None, 1, "x", {}],
    DEEP,
    {"a": DEEP},
]


def hostile_value(rng: random.Random) -> object:
    """One replacement value: a hostile constant or a random scalar of any JSON type."""
    pick = rng.randrange(6)
    if pick == 0:
        return rng.randrange(-(2**70), 2**70)
    if pick == 1:
        return rng.uniform(-1e12, 1e12) * 10 ** rng.randrange(0, 300)
    if pick == 2:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 24)))
    return rng.choice(HOSTILE)


def random_json(rng: random.Random, depth: int = 0) -> object:
    """An arbitrary JSON-like value: nested dicts and lists of hostile scalars."""
    pick = rng.randrange(8 if depth < 4 else 6)
    if pick >= 6:
        items = [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
        if pick == 6:
            return items
        return {str(hostile_value(rng))[:24]: v for v in items}
    return hostile_value(rng)


def mutate(rng: random.Random, node: object, rate: float, depth: int = 0) -> object:
    """A copy of ``node`` where values are replaced, dropped, retyped or duplicated.

    ``rng`` is seeded by hypothesis, so a failure replays (without shrinking); drawing
    each choice through hypothesis was 50x slower on audit-sized records.
    """
    if depth and rng.random() < rate:
        return hostile_value(rng)
    if isinstance(node, dict):
        out = {k: mutate(rng, v, rate, depth + 1) for k, v in node.items() if rng.random() > rate}
        if rng.random() < rate:
            out[str(hostile_value(rng))[:40]] = hostile_value(rng)
        return out
    if isinstance(node, list):
        items = [mutate(rng, v, rate, depth + 1) for v in node]
        return items + items if rng.random() < rate else items  # duplicated entries
    return node


def mutants(data: st.DataObject, bases: list[dict]) -> list[object]:
    """``BATCH`` mutated copies of valid records (mutation rate 1-30% per node)."""
    rng = random.Random(data.draw(st.integers(0, 2**64), label="seed"))
    return [mutate(rng, rng.choice(bases), rng.uniform(0.01, 0.3)) for _ in range(BATCH)]


def check_adapter_result(fmt: str, record: dict, counts: Counter[str]) -> None:
    """The adapter contract: events that checkpoint cleanly, ``Ignored``, or ``AdapterError``."""
    try:
        result = _ADAPTERS[fmt](record, AdapterContext())
    except AdapterError as exc:
        assert exc.reason in ("missing_field", "bad_value"), exc
        counts["rejected"] += 1
        return
    if isinstance(result, Ignored):
        counts["ignored"] += 1
        return
    assert isinstance(result, list)
    for ev in result:
        assert isinstance(ev, Event)
        # what the pipeline snapshots must restore: wrong types would break a checkpoint
        decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(ev), type=Event)
        assert decoded == ev
        assert 946_684_800.0 <= ev.time < 4_102_444_800.0
    counts["events" if result else "no_events"] += 1


def accounted(parsed: Parsed) -> None:
    """``parse_record``'s contract: something came out, and every dead letter has a reason."""
    assert parsed.events or parsed.ignored or parsed.rejected
    for rej in parsed.rejected:
        assert rej.reason and "internal error" not in rej.detail, rej
        assert len(rej.record) <= 2049


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_adapter_never_escapes_on_mutated_records(fmt: str, data: st.DataObject) -> None:
    counts: Counter[str] = Counter()
    for record in mutants(data, VALID[fmt]):
        if isinstance(record, dict):
            check_adapter_result(fmt, record, counts)
            accounted(parse_record(_dumps(record), pinned=fmt))
    assert sum(counts.values()) == BATCH


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 4))
@given(data=st.data())
def test_adapter_never_escapes_on_other_formats_and_arbitrary_json(
    fmt: str, data: st.DataObject
) -> None:
    """A valid record of another format on a topic pinned to ``fmt``, or any JSON object."""
    counts: Counter[str] = Counter()
    others = [r for other in FORMATS if other != fmt for r in VALID[other]]
    rng = random.Random(data.draw(st.integers(0, 2**64), label="seed"))
    for _ in range(BATCH):
        if rng.random() < 0.5:
            record = rng.choice(others)
        else:
            record = {str(hostile_value(rng))[:24]: random_json(rng) for _ in range(6)}
        check_adapter_result(fmt, record, counts)
        accounted(parse_record(_dumps(record), pinned=fmt))


def _dumps(obj: object) -> bytes:
    """JSON bytes of a fuzzed record; what JSON cannot hold (NaN, 10**400) becomes a string."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(obj).encode("utf-8", "backslashreplace")


@FUZZ
@given(data=st.data())
def test_decoder_never_escapes_on_hostile_bytes(data: st.DataObject) -> None:
    """Arbitrary bytes, duplicated keys, truncation and deep nesting, pinned or detected."""
    rng = random.Random(data.draw(st.integers(0, 2**64), label="seed"))
    for _ in range(BATCH):
        fmt = rng.choice(FORMATS)
        raw: bytes | str = _dumps(rng.choice(VALID[fmt]))
        shape = rng.randrange(7)
        if shape == 0:
            raw = rng.randbytes(rng.randrange(200))
        elif shape == 1:  # duplicated keys: the last one wins in orjson, nothing breaks
            raw = raw[:-1] + b"," + raw[1:]
        elif shape == 2:  # truncated mid-record
            raw = raw[: rng.randrange(len(raw) + 1)]
        elif shape == 3:  # nesting deeper than the decoder's limit
            depth = rng.randrange(100, 3000)
            raw = b'{"Records":' + b"[" * depth + b"]" * depth + b"}"
        elif shape == 4:  # a random byte flipped
            i = rng.randrange(len(raw))
            raw = raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :]
        elif shape == 5:  # a text line with a lone surrogate (no JSON decoder yields one)
            raw = raw.decode("utf-8", "replace") + "\ud800"
        pinned = rng.choice([None, "auto", *FORMATS])
        accounted(parse_record(raw, pinned=pinned))


def test_huge_numbers_and_strings_are_dead_letters_or_clean() -> None:
    """The extremes JSON can carry, in every field of every valid record."""
    counts: Counter[str] = Counter()
    for fmt in FORMATS:
        for base in VALID[fmt][:20]:
            for key in list(base):
                for value in (10**19, -(2**63), 1.7e308, "x" * 100_000, DEEP):
                    raw = _dumps({**base, key: value})
                    parsed = parse_record(raw, pinned=fmt)
                    accounted(parsed)
                    counts["rejected" if parsed.rejected else "clean"] += 1
    assert counts["rejected"] and counts["clean"]


@settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 5))
@given(data=st.data())
def test_pipeline_counts_every_fuzzed_record(data: st.DataObject) -> None:
    """Valid, duplicated, mutated and garbage records in one stream: each one is counted."""
    pipe = Pipeline()
    fmt = data.draw(st.sampled_from(FORMATS))
    pinned = data.draw(st.sampled_from([None, fmt]))
    records = [(_dumps(r), pinned) for r in mutants(data, VALID[fmt])]
    records += records[: data.draw(st.integers(0, 3))]  # redelivered duplicates
    rejected = 0
    for i, (raw, pinned) in enumerate(records):
        out = pipe.process(raw, Origin(source="fuzz", line=i + 1), pinned)
        rejected += sum(1 for r in out.rejected if r.origin is not None)
    pipe.finish()
    assert pipe.stats["records"] == len(records)
    assert sum(v for k, v in pipe.stats.items() if k.startswith("rejected.")) == rejected


def test_digit_strings_int_refuses_are_dead_letters() -> None:
    """Strings that ``str.isdigit`` calls digits but ``int`` refuses (found by the fuzzer:
    '⒎' in a k8s audit field) reject the record with a reason, in every field of every
    format, instead of escaping as a bare ``ValueError``."""
    for fmt in FORMATS:
        for base in VALID[fmt][:5]:
            for key in list(base):
                for value in ("⒎", "²", "--5", "9" * 5_000):
                    accounted(parse_record(_dumps({**base, key: value}), pinned=fmt))
