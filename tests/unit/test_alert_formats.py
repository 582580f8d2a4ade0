"""Alert formats: OCSF findings validate against the OCSF schema, Falco's shape matches real
Falco output and survives a falcosidekick-style HTTP post, and the id survives every format."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from churnguard.alerts.alert import (
    SEVERITIES,
    TECHNIQUE_NAMES,
    Alert,
    AlertEvidence,
    BaselineRef,
    FeatureExplanation,
    Window,
)
from churnguard.alerts.formats import ALERT_FORMATS, ALERT_ID_FIELD, alert_id_of, encode_alert
from churnguard.cli import main
from churnguard.config import AlertSettings, load_settings
from churnguard.errors import ConfigError
from churnguard.profiling.profile import EntityRef
from shared_samples import REAL_DATA

REAL = REAL_DATA  # tests/shared_samples.py: ../shared beside the checkout
OCSF_VERSION = "1.5.0"  # py-ocsf-models' OCSF version (metadata.version)
FALCO_PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice",
                    "Informational", "Debug")  # fmt: skip
CLOUD = AlertSettings(cloud_provider="AWS", cloud_account="123456789012", cloud_region="eu-west-1")


@pytest.fixture(scope="module")
def ocsf_validators() -> dict[tuple[str, ...], jsonschema.Draft202012Validator]:
    """Detection Finding schemas from the OCSF export shipped in ocsf-json-schema (offline)."""
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    name = schema.lookup_class_name_from_uid(2004)
    return {
        tuple(p): jsonschema.Draft202012Validator(schema.get_class_schema(name, list(p)))
        for p in ((), ("cloud",))
    }


def validate_ocsf(document: dict[str, Any], validators: dict) -> None:
    """Raise on the first schema violation, against the profiles the finding declares."""
    profiles = tuple(document["metadata"].get("profiles", ()))
    errors = sorted(validators[profiles].iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [(list(e.absolute_path), e.message[:200]) for e in errors[:5]]


def make_alert(**changes: Any) -> Alert:
    base = Alert(
        alert_id="0123456789abcdef01234567",
        summary="pod shop/web-1: Modify Cloud Compute Infrastructure: Delete Cloud Instance",
        entity=EntityRef(
            kind="pod",
            namespace="shop",
            pod="web-1",
            container="web",
            uid="5f0c2b7e-1111-2222-3333-444455556666",
            container_ids=["3a2ee611e3cde18cf1a3df5a8b8027c5a3fee5d6ab4d7afca40e4235c6b059f7"],
            workload="Deployment/web",
            image="registry.local/web:1.0",
            node="ip-10-0-1-1.ec2.internal",
        ),
        score=0.9712,
        threshold=0.93,
        baseline=BaselineRef(level="workload", key="wl:shop/Deployment/web:pod"),
        severity="high",
        techniques=["T1578.003", "T1070"],
        explanation=[
            FeatureExplanation(
                feature="lifetime_s",
                observed=42.0,
                baseline_median=86400.0,
                baseline_percentile=1.0,
                contribution=3.2,
                doc="life",
            )
        ],
        evidence=[
            AlertEvidence(
                time="2026-03-02T00:01:00.000Z",
                kind="exec",
                summary="pods/exec by alice",
                source="k8s-audit[3]@1200",
            )
        ],
        first_seen="2026-03-02T00:00:00.000Z",
        last_seen="2026-03-02T00:04:30.250Z",
        emitted_at="2026-03-02T00:05:00.000Z",
        window=Window(start=1_772_409_600.0, end=1_772_409_900.0),
        response=["Pull the audit trail for the deleting identity."],
        rules=["exec-then-delete-by-person"],
        model_version="sha256-abc+online",
    )
    return msgspec.structs.replace(base, **changes)


# ---- OCSF ---------------------------------------------------------------------------------------
def test_ocsf_finding_carries_the_alert(ocsf_validators) -> None:
    alert = make_alert()
    doc = json.loads(encode_alert(alert, CLOUD, "ocsf"))
    validate_ocsf(doc, ocsf_validators)
    assert (doc["class_uid"], doc["category_uid"], doc["type_uid"]) == (2004, 2, 200401)
    info = doc["finding_info"]
    assert info["uid"] == alert.alert_id and info["title"] == alert.summary
    assert info["analytic"]["uid"] == "workload:wl:shop/Deployment/web:pod"
    assert "workload baseline" in info["analytic"]["name"]
    first = info["attacks"][0]
    assert first["technique"]["uid"] == "T1578" and first["sub_technique"]["uid"] == "T1578.003"
    assert first["tactic"] == {"uid": "TA0005", "name": "Defense Evasion"}
    pod, container = doc["resources"]
    assert (pod["type"], pod["namespace"], pod["uid"]) == (
        "Kubernetes Pod",
        "shop",
        alert.entity.uid,
    )
    assert container["uid"] == alert.entity.container_ids[0]
    assert doc["evidences"][0]["data"]["source"] == "k8s-audit[3]@1200"
    assert doc["cloud"]["account"]["uid"] == "123456789012"
    assert doc["severity_id"] == 4  # High
    # event time (the window end), never the moment of writing
    assert doc["time"] == 1_772_409_900_000 and doc["start_time"] == 1_772_409_600_000
    assert doc["metadata"]["product"]["name"] == "churnguard"
    assert doc["metadata"]["version"] == OCSF_VERSION


def test_ocsf_schema_check_is_strict(ocsf_validators) -> None:
    doc = json.loads(encode_alert(make_alert(), AlertSettings(), "ocsf"))
    validate_ocsf(doc, ocsf_validators)
    for broken in ({**doc, "severity_id": "high"}, {**doc, "not_an_ocsf_field": 1}):
        with pytest.raises(AssertionError):
            validate_ocsf(broken, ocsf_validators)


def test_instance_alert_names_the_instance(ocsf_validators) -> None:
    entity = EntityRef(kind="instance", instance_id="i-0abc")
    doc = json.loads(encode_alert(make_alert(entity=entity), CLOUD, "ocsf"))
    validate_ocsf(doc, ocsf_validators)
    assert doc["resources"] == [{"uid": "i-0abc", "name": "i-0abc", "type": "Cloud Instance"}]


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
alerts = st.builds(
    make_alert,
    alert_id=st.from_regex(r"[0-9a-f]{24}", fullmatch=True),
    summary=texts,
    entity=st.builds(
        EntityRef,
        kind=st.sampled_from(["pod", "instance"]),
        namespace=st.none() | texts,
        pod=st.none() | texts,
        container=st.none() | texts,
        container_ids=st.lists(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), max_size=3),
        instance_id=st.none() | texts,
        workload=st.none() | texts,
    ),
    severity=st.sampled_from(SEVERITIES),
    techniques=st.lists(st.sampled_from([*TECHNIQUE_NAMES, "T9999"]), max_size=4, unique=True),
    evidence=st.lists(st.builds(AlertEvidence, time=st.just("2026-03-02T00:00:00.000Z"),
                                kind=texts, summary=texts, source=texts), max_size=3),
    response=st.lists(texts, max_size=3),
    baseline=st.builds(BaselineRef, level=st.sampled_from(["workload", "rules"]), key=texts),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert=alerts, cloud=st.booleans())
def test_any_alert_validates_and_keeps_its_id_in_every_format(
    alert: Alert, cloud: bool, ocsf_validators
) -> None:
    context = CLOUD if cloud else AlertSettings()
    docs = {f: json.loads(encode_alert(alert, context, f)) for f in ALERT_FORMATS}
    validate_ocsf(docs["ocsf"], ocsf_validators)
    assert {f: alert_id_of(d) for f, d in docs.items()} == dict.fromkeys(
        ALERT_FORMATS, alert.alert_id
    )
    falco = FalcoPayload.parse(json.dumps(docs["falco"]).encode())
    assert falco.output_fields[ALERT_ID_FIELD] == alert.alert_id


def test_alert_id_of_ignores_documents_that_are_not_alerts() -> None:
    for doc in (None, [], "x", {}, {"finding_info": "x"}, {"output_fields": {ALERT_ID_FIELD: 3}}):
        assert alert_id_of(doc) is None


def test_alert_format_config_is_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[alerts]\nformat = "ocsf"\ncloud_provider = "AWS"\n')
    assert load_settings(cfg, env={}).alerts.format == "ocsf"
    cfg.write_text('[alerts]\nformat = "cef"\n')
    with pytest.raises(ConfigError, match=r"alerts\.format"):
        load_settings(cfg, env={})


# ---- Falco and falcosidekick -----------------------------------------------------------------
class FalcoPayload(msgspec.Struct, forbid_unknown_fields=True):
    """What falcosidekick's HTTP input decodes (types.FalcoPayload), and its checks."""

    output: str
    priority: str
    rule: str
    time: str
    output_fields: dict[str, Any]
    source: str = ""
    tags: list[str] = []
    hostname: str = ""
    uuid: str = ""

    @classmethod
    def parse(cls, body: bytes) -> FalcoPayload:
        payload = msgspec.json.decode(body, type=cls)
        assert payload.output, "falcosidekick rejects an empty output"
        assert payload.priority in FALCO_PRIORITIES
        # Go's time.Time takes RFC 3339 with up to nanoseconds; Python's parser up to micro
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", payload.time)
        datetime.fromisoformat(payload.time[:26] + "+00:00")
        payload.uuid = "replaced-by-falcosidekick"  # it assigns its own uuid to every event
        return payload


def test_falco_shape_matches_real_falco_output() -> None:
    """Same keys and value shapes as lines Falco printed on real clusters."""
    path = REAL / "falco_output.jsonl"
    if not path.exists():
        pytest.skip(f"real samples not found at {path} (shared/ is checked out beside the repo)")
    real = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ours = json.loads(encode_alert(make_alert(), AlertSettings(), "falco"))
    for line in real:
        assert set(line) <= set(ours)
        assert re.sub(r"\.\d+Z$", "", line["time"]).count(":") == ours["time"].count(":")
        assert len(line["time"]) == len(ours["time"])  # nanoseconds, as Falco writes them
        assert line["output"][:20].count(":") == ours["output"][:20].count(":")
        assert type(line["output_fields"]["evt.time"]) is type(ours["output_fields"]["evt.time"])
        assert len(line["output_fields"]["container.id"]) == len(
            ours["output_fields"]["container.id"]
        )
    assert ours["time"] == "2026-03-02T00:05:00.000000000Z"
    fields = ours["output_fields"]
    assert (fields["k8s.ns.name"], fields["k8s.pod.name"]) == ("shop", "web-1")
    assert fields["evt.time"] == 1_772_409_900_000_000_000
    assert ours["priority"] == "Error" and "T1578.003" in ours["tags"]
    assert "mitre_defense_evasion" in ours["tags"]


class Sidekick:
    """A local stand-in for falcosidekick's input: POST / with a Falco JSON payload."""

    def __init__(self) -> None:
        self.received: list[FalcoPayload] = []
        self.rejected = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    assert self.path == "/"
                    assert self.headers.get("Content-Type") == "application/json"
                    outer.received.append(FalcoPayload.parse(body))
                except (AssertionError, msgspec.DecodeError, ValueError):
                    outer.rejected += 1
                    self.send_response(400)
                else:
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def post(url: str, body: bytes) -> int:
    """As the documented bridge does: one alert per POST, JSON content type."""
    request = Request(url, data=body, headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=5) as response:  # 127.0.0.1 only
        return response.status


def test_falcosidekick_receives_and_parses_falco_shaped_alerts() -> None:
    sidekick = Sidekick()
    try:
        sent = [make_alert(alert_id=f"{i:024x}", severity=s) for i, s in enumerate(SEVERITIES)]
        for alert in sent:
            assert post(sidekick.url, encode_alert(alert, AlertSettings(), "falco")) == 200
        with pytest.raises(OSError):  # the stand-in rejects what falcosidekick would
            post(sidekick.url, b'{"output": "", "priority": "Warning"}')
    finally:
        sidekick.close()
    assert sidekick.rejected == 1
    got = sidekick.received
    assert [p.output_fields[ALERT_ID_FIELD] for p in got] == [a.alert_id for a in sent]
    assert [p.priority for p in got] == ["Notice", "Warning", "Error", "Critical"]
    assert {p.source for p in got} == {"churnguard"}


# ---- the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    """`churnguard replay` of a simulated demo morning with the shipped model, per format."""
    out = tmp_path_factory.mktemp("formats")
    assert main(["simulate", "--out", str(out), "--hours", "3", "--seed", "7"]) == 0
    inputs = [str(out / f"{k}.jsonl") for k in ("k8s_audit", "cloudtrail", "falco", "tetragon",
                                                "flows")]  # fmt: skip
    docs = {}
    for fmt in ALERT_FORMATS:
        path = out / f"alerts.{fmt}.jsonl"
        assert main(["replay", *inputs, "--alerts", str(path), "--alert-format", fmt]) == 0
        docs[fmt] = [json.loads(line) for line in path.read_text().splitlines()]
    return docs


def test_replay_writes_valid_ocsf_and_the_same_ids_in_every_format(
    replayed, ocsf_validators
) -> None:
    assert replayed["ocsf"], "the simulated morning should raise alerts"
    for doc in replayed["ocsf"]:
        validate_ocsf(doc, ocsf_validators)
    ids = {fmt: [alert_id_of(d) for d in docs] for fmt, docs in replayed.items()}
    assert ids["ocsf"] == ids["json"] == ids["falco"]
    assert all(ids["json"])
    for doc in replayed["falco"]:
        FalcoPayload.parse(json.dumps(doc).encode())
