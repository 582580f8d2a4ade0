"""Shipper envelopes: real exporter records wrapped as each shipper writes them adapt exactly
as the bare records do, and the shipper's pod metadata attributes only its own container.

The envelope shapes are those of churnguard.simulate.shippers, which cites each shipper's
documentation (Fluent Bit manual: tail, kubernetes filter, kafka output; Vector reference:
kubernetes_logs; logstash-codec-cloudtrail's codec source; Kubernetes "Auditing").
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.ingest import parse_record
from churnguard.ingest.envelopes import Hint, unwrap
from churnguard.ingest.events import Event
from churnguard.simulate import shippers

T = 1_700_000_000.0
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _lines(root: Path, name: str) -> list[dict]:
    lines = (root / name).read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def _files(root: Path, folder: str) -> list[Path]:
    return sorted((root / folder).glob("*.json"))


def _events(doc: dict, pinned: str | None = None) -> list[Event]:
    parsed = parse_record(orjson.dumps(doc), None, pinned)
    assert not parsed.rejected, parsed.rejected
    return parsed.events


def _outcome(doc: dict, pinned: str | None = None) -> tuple:
    """Everything a record turned into (dead letters by reason and detail)."""
    parsed = parse_record(orjson.dumps(doc), None, pinned)
    return parsed.events, parsed.ignored, [(r.reason, r.detail) for r in parsed.rejected]


def _stratus_records(root: Path) -> list[dict]:
    records = []
    for path in _files(root, "stratus_detonation"):
        data = orjson.loads(path.read_bytes())
        records += data if isinstance(data, list) else data.get("Records", [data])
    return records


def _parsed(raw: bytes, pinned: str | None = None) -> tuple:
    parsed = parse_record(raw, None, pinned)
    return parsed.events, parsed.ignored, [(r.reason, r.detail) for r in parsed.rejected]


def _runtime_records(root: Path) -> list[dict]:
    docs = [*_lines(root, "falco_output.jsonl"), *_lines(root, "tetragon_events.jsonl")]
    docs += [
        orjson.loads(p.read_bytes())
        for p in _files(root, "tetragon_docs")
        if p.name.startswith("00_")
    ]  # pretty-printed, one event per file (testdata is JSONL)
    return docs + _lines(root, "hubble_flows.jsonl")


@pytest.mark.parametrize("wrap", ["fluent_bit", "fluent_bit_merged", "vector"])
def test_real_runtime_records_adapt_the_same_inside_each_shipper_envelope(
    wrap: str, real_data: Path
) -> None:
    checked = 0
    for doc in _runtime_records(real_data):
        if wrap == "fluent_bit_merged" and "time" not in doc:
            continue  # merged, it takes the line's `time` (test below)
        plain = _outcome(doc)
        if wrap == "vector":
            shipped = shippers.vector(doc, T)
        else:
            shipped = shippers.fluent_bit(doc, T, pod="agent-abc12", namespace="security",
                                          merge=wrap == "fluent_bit_merged")  # fmt: skip
        assert _outcome(shipped) == plain
        checked += len(plain[0])
    assert checked >= 10


def test_a_merged_record_without_its_own_time_takes_the_lines_time(real_data: Path) -> None:
    timeless = [d for d in _lines(real_data, "tetragon_events.jsonl") if "time" not in d]
    assert timeless, "the real sample's first Tetragon event has no top-level time"
    merged = shippers.fluent_bit(timeless[0], T, merge=True)
    assert [ev.time for ev in _events(merged)] == [pytest.approx(T)]


def test_logstash_cloudtrail_records_get_their_event_time_back(real_data: Path) -> None:
    records = _stratus_records(real_data)
    named = orjson.loads((FIXTURES / "sources" / "cloudtrail.json").read_bytes())
    records += list(named.values())  # instances run and terminated by people: real events
    events = 0
    for record in records:
        plain = _outcome(record, "cloudtrail")
        assert _outcome(shippers.logstash_cloudtrail(record), "cloudtrail") == plain
        events += len(plain[0])
    assert len(records) > 300 and events > 0


def test_the_codecs_disable_api_termination_wrapping_is_undone() -> None:
    record = {"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com",
              "eventTime": "2024-05-14T10:00:00Z",
              "requestParameters": {"disableApiTermination": False}}  # fmt: skip
    shipped = shippers.logstash_cloudtrail(record)
    assert shipped["requestParameters"]["disableApiTermination"] == {"value": False}
    assert "eventTime" not in shipped and shipped["@version"] == "1"
    assert unwrap(shipped).record == {**record, "eventTime": "2024-05-14T10:00:00.000Z"}


@pytest.mark.parametrize("lambda_event", [False, True])
def test_cloudwatch_logs_subscriptions_adapt_like_the_records_they_carry(
    real_data: Path, lambda_event: bool
) -> None:
    trail = _stratus_records(real_data)
    audit = _lines(real_data, "k8s_audit_microk8s.jsonl")[:200]
    for records, log_group, pinned in [
        (trail, "aws-cloudtrail-logs", "cloudtrail"),
        (audit, "/aws/eks/prod/cluster", "k8s_audit"),  # EKS control-plane audit logs
    ]:
        plain = [_outcome(record, pinned) for record in records]
        for batch in range(0, len(records), 50):  # a delivery holds a batch of log events
            raw = shippers.cloudwatch_logs(records[batch : batch + 50], log_group,
                                           lambda_event=lambda_event)  # fmt: skip
            events, ignored, rejected = _parsed(raw, pinned)
            want = plain[batch : batch + 50]
            assert events == [ev for e, _, _ in want for ev in e]
            assert ignored == [i for _, ig, _ in want for i in ig]
            assert rejected == [r for _, _, rj in want for r in rj]
            assert _parsed(raw)[0] == events  # detected without a pinned format too
    assert len(trail) > 300


def test_cloudwatch_logs_health_checks_bad_messages_and_bombs_are_counted_not_raised() -> None:
    control = {"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
               "logStream": "", "subscriptionFilters": [],
               "logEvents": [{"id": "", "timestamp": 1,
                              "message": "CWL CONTROL MESSAGE: Checking health"}]}  # fmt: skip
    parsed = parse_record(gzip.compress(orjson.dumps(control)))
    assert [(i.format, i.reason) for i in parsed.ignored] == [
        ("cloudwatch_logs", "control_message")
    ]
    assert not parsed.events and not parsed.rejected
    good = {"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com",
            "eventTime": "2024-05-14T10:00:00Z", "eventName": "DescribeInstances",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/a"}}  # fmt: skip
    raw = shippers.cloudwatch_logs([good])
    message = orjson.loads(gzip.decompress(raw))
    message["logEvents"].append({"id": "2", "timestamp": 2, "message": "START RequestId: x"})
    message["logEvents"].append({"id": "3", "timestamp": 3})
    parsed = parse_record(gzip.compress(orjson.dumps(message)))
    # the good record is adapted as it would be bare; the bad neighbours cost it nothing
    assert (parsed.events, parsed.ignored) == _outcome(good)[:2]
    assert [(r.reason, r.record) for r in parsed.rejected] == [
        ("malformed_json", "START RequestId: x"),
        ("malformed_json", '{"id":"3","timestamp":3}'),
    ]
    # a payload that inflates past the record cap is refused without inflating it all
    bomb = gzip.compress(b'{"a":"' + b"x" * (8 << 20) + b'"}')
    assert len(bomb) < 20_000
    for raw in (bomb, orjson.dumps({"awslogs": {"data": base64.b64encode(bomb).decode()}})):
        assert [r.reason for r in parse_record(raw).rejected] == ["record_too_large"]
    for broken in (b"\x1f\x8b not gzip", gzip.compress(b"{}")[:-12],
                   orjson.dumps({"awslogs": {"data": "not base64!"}})):  # fmt: skip
        assert [r.reason for r in parse_record(broken).rejected] == ["malformed_json"]


def test_audit_webhook_batches_and_audit_lines_inside_envelopes(real_data: Path) -> None:
    events = _lines(real_data, "k8s_audit_microk8s.jsonl")[:50]
    plain = [ev for doc in events for ev in _events(doc, "k8s_audit")]
    batch = shippers.audit_webhook_batch(events)
    assert _events(batch, "k8s_audit") == plain
    # Vector's http_server source with the bytes codec: the POST body under `message`
    posted = {"message": orjson.dumps(batch).decode(), "source_type": "http_server",
              "path": "/audit", "timestamp": "2024-05-14T10:00:00Z"}  # fmt: skip
    assert _events(posted, "k8s_audit") == plain
    # audit log files tailed by Fluent Bit from the API server's static pod
    tailed = [shippers.fluent_bit(doc, T, pod="kube-apiserver-node-1", namespace="kube-system")
              for doc in events]  # fmt: skip
    assert [ev for doc in tailed for ev in _events(doc, "k8s_audit")] == plain


def test_the_shipper_names_the_pod_only_of_its_own_container(real_data: Path) -> None:
    shell_in_falco, = [d for d in _lines(real_data, "falco_output.jsonl")
                       if "k8s.ns.name" not in d["output_fields"]]  # fmt: skip
    assert _events(shell_in_falco)[0].namespace is None
    # Falco's stdout tailed from its own pod: this event is about that very container
    own = shippers.fluent_bit(shell_in_falco, T, pod="falco-74htl", namespace="falco",
                              container_id="a98c2aa8e670" + "f" * 52)  # fmt: skip
    ev = _events(own)[0]
    assert (ev.namespace, ev.pod, ev.node) == ("falco", "falco-74htl", "node-1")
    # the same line shipped from another pod says nothing about where the shell ran
    other = shippers.fluent_bit(shell_in_falco, T, pod="falco-zz9qq", namespace="falco")
    assert _events(other)[0].namespace is None
    # what the record says is never overridden
    (with_ns,) = [
        d for d in _lines(real_data, "falco_output.jsonl") if "k8s.ns.name" in d["output_fields"]
    ]
    cid = with_ns["output_fields"]["container.id"] + "0" * 52
    shipped = shippers.fluent_bit(with_ns, T, pod="x", namespace="elsewhere", container_id=cid)
    assert _events(shipped)[0].namespace == "default"


def test_plain_text_inside_an_envelope_is_a_dead_letter_with_the_reason() -> None:
    line = {"log": "Falco initialized with configuration file /etc/falco/falco.yaml\n",
            "stream": "stderr", "time": "2024-05-14T10:00:00Z", "kubernetes": {}}  # fmt: skip
    parsed = parse_record(orjson.dumps(line))
    assert [r.reason for r in parsed.rejected] == ["malformed_json"]
    assert "fluent_bit envelope: `log` is not JSON" in parsed.rejected[0].detail
    assert not parsed.events


def test_records_no_shipper_wrapped_come_back_as_they_are(real_data: Path) -> None:
    for doc in _runtime_records(real_data) + _lines(real_data, "k8s_audit_microk8s.jsonl")[:20]:
        out = unwrap(doc)
        assert out.record is doc and out.shipper is None and out.hint is None


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


_ENVELOPE_KEYS = ["stream", "time", "_p", "kubernetes", "message", "source_type", "@version"]


@settings(max_examples=200, deadline=None)
@given(
    log=st.one_of(st.text(), _json.map(lambda v: orjson.dumps(v).decode())),
    extra=st.dictionaries(st.sampled_from([*_ENVELOPE_KEYS, "eventSource"]), _json, max_size=4),
)
def test_hostile_envelopes_never_raise(log: str, extra: dict) -> None:
    for field in ("log", "message"):
        parsed = parse_record(orjson.dumps({field: log, **extra}))
        assert parsed.events or parsed.ignored or parsed.rejected
        assert all(r.reason and r.detail for r in parsed.rejected)


def test_hint_needs_a_pod_or_container() -> None:
    assert unwrap({"log": "{}", "kubernetes": {"labels": {}}}).hint is None
    assert unwrap({"log": "{}", "kubernetes": {"pod_name": "p"}}).hint == Hint(pod="p")


def test_the_other_shapes_the_documented_configurations_produce(real_data: Path) -> None:
    """docs/operations.md, "Connecting your telemetry": the configurations not above."""
    flows = _lines(real_data, "hubble_flows.jsonl")
    audit = _lines(real_data, "k8s_audit_microk8s.jsonl")[:5]
    trail = [{"eventVersion": "1.08", "eventSource": "ec2.amazonaws.com",
              "eventTime": "2024-05-14T10:00:00Z", "eventName": "DescribeInstances",
              "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/a"}}]  # fmt: skip

    def text(doc: object) -> str:
        return orjson.dumps(doc).decode()

    hubble_file = "/var/run/cilium/hubble/events.log"
    s3_object = {"bucket": "trail", "object": "AWSLogs/1/CloudTrail/x.json.gz"}
    cases = [
        # Vector `file` source on Hubble's export file
        ([{"file": hubble_file, "host": "node-1", "message": text(f), "source_type": "file",
           "timestamp": "2026-02-24T08:47:58Z"} for f in flows], flows, None),
        # Fluent Bit `tail` of the API server's audit log file, no parser, no kubernetes filter
        ([{"@timestamp": T, "log": text(a)} for a in audit], audit, "k8s_audit"),
        # Vector `aws_s3` source (SQS notifications) on CloudTrail's delivered files
        ([{**s3_object, "region": "eu-west-1", "source_type": "aws_s3",
           "timestamp": "2024-05-14T10:05:00Z", "message": text({"Records": trail})}],
         [{"Records": trail}], "cloudtrail"),
    ]  # fmt: skip
    for shipped, plain, pinned in cases:
        got = [_outcome(doc, pinned) for doc in shipped]
        assert got == [_outcome(doc, pinned) for doc in plain]
        assert all(not rejected for _, _, rejected in got)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=256),
    events=st.lists(st.one_of(_json, st.fixed_dictionaries({"message": st.text()})), max_size=5),
)
def test_hostile_cloudwatch_logs_deliveries_never_raise(body: bytes, events: list) -> None:
    message = {"messageType": "DATA_MESSAGE", "logEvents": events}
    for raw in (gzip.compress(body), gzip.compress(orjson.dumps(message)),
                orjson.dumps({"awslogs": {"data": base64.b64encode(body).decode()}})):  # fmt: skip
        parsed = parse_record(raw)
        assert parsed.events or parsed.ignored or parsed.rejected
        assert all(r.reason and r.detail for r in parsed.rejected)
