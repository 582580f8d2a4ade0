"""Alert output formats: churnguard JSON, an OCSF Detection Finding, or Falco's output shape.

Analysts read findings in a SIEM or data lake (OCSF) or through falcosidekick (Falco's JSON
output), so an :class:`~churnguard.alerts.alert.Alert` can be written in either instead of
churnguard's own JSON. The OCSF finding is built with py-ocsf-models (the typed models the
OCSF ecosystem maintains) rather than hand-written dicts. In every format the alert id
survives the trip (OCSF ``finding_info.uid``; in Falco's shape the ``churnguard.alert_id``
output field, since falcosidekick replaces ``uuid`` with its own) and every time is an
event time, never the moment of writing, so a replay writes byte-identical output.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from py_ocsf_models.events.findings.activity_id import ActivityID
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from py_ocsf_models.events.findings.detection_finding_type_id import DetectionFindingTypeID
from py_ocsf_models.events.findings.severity_id import SeverityID
from py_ocsf_models.events.findings.status_id import StatusID
from py_ocsf_models.objects.account import Account, TypeID
from py_ocsf_models.objects.analytic import Analytic
from py_ocsf_models.objects.cloud import Cloud
from py_ocsf_models.objects.evidence_artifacts import EvidenceArtifacts
from py_ocsf_models.objects.finding_info import FindingInformation
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.mitre_attack import MITREAttack, SubTechnique, Tactic, Technique
from py_ocsf_models.objects.product import Product
from py_ocsf_models.objects.remediation import Remediation
from py_ocsf_models.objects.resource_details import ResourceDetails

from churnguard import __version__
from churnguard.alerts.alert import TECHNIQUE_NAMES, TECHNIQUE_TACTICS, Alert
from churnguard.config import ALERT_FORMATS, AlertFormat, AlertSettings

ALERT_ID_FIELD = "churnguard.alert_id"  # the output_fields entry that carries the id (Falco)
PRODUCT = "churnguard"

OCSF_SEVERITY = {
    "low": SeverityID.Low,
    "medium": SeverityID.Medium,
    "high": SeverityID.High,
    "critical": SeverityID.Critical,
}
FALCO_PRIORITY = {"low": "Notice", "medium": "Warning", "high": "Error", "critical": "Critical"}
# OCSF analytic.type_id: 1 Rule (the static/guard rules), 4 Learning (ML/DL) (baselines)
ANALYTIC_RULE, ANALYTIC_LEARNING = 1, 4

_json = msgspec.json.Encoder()


def encode_alert(alert: Alert, settings: AlertSettings, fmt: AlertFormat | None = None) -> bytes:
    """One alert as one JSON document in ``fmt`` (default: the configured format)."""
    fmt = fmt or settings.format
    if fmt == "json":
        return _json.encode(alert)
    if fmt == "ocsf":
        return _json.encode(to_ocsf(alert, settings))
    if fmt == "falco":
        return _json.encode(to_falco(alert))
    raise ValueError(f"unknown alert format {fmt!r}; expected one of {', '.join(ALERT_FORMATS)}")


def alert_id_of(document: Any) -> str | None:
    """The alert id in a written alert of any format (None when it is not an alert)."""
    if not isinstance(document, dict):
        return None
    found: Any = document.get("alert_id")
    if found is None and isinstance(document.get("finding_info"), dict):
        found = document["finding_info"].get("uid")
    if found is None and isinstance(document.get("output_fields"), dict):
        found = document["output_fields"].get(ALERT_ID_FIELD)
    return found if isinstance(found, str) else None


# ---- OCSF -------------------------------------------------------------------------------------
def _epoch_ms(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _attack(technique: str) -> MITREAttack:
    parent, _, sub = technique.partition(".")
    name = TECHNIQUE_NAMES.get(technique, technique)
    parent_name, _, sub_name = name.partition(": ")
    tactic = TECHNIQUE_TACTICS.get(technique)
    return MITREAttack(
        technique=Technique(uid=parent, name=parent_name),
        sub_technique=SubTechnique(uid=technique, name=sub_name or name) if sub else None,
        tactic=Tactic(uid=tactic[0], name=tactic[1]) if tactic else None,
    )


def _resources(alert: Alert) -> list[ResourceDetails]:
    e = alert.entity
    details = {
        "workload": e.workload,
        "node": e.node,
        "image": e.image,
        "service_account": e.service_account,
    }
    data = {k: v for k, v in details.items() if v}
    if e.kind == "instance":
        return [
            ResourceDetails(
                uid=e.instance_id or e.key(),
                name=e.instance_id,
                type="Cloud Instance",
                data=data or None,
            )
        ]
    found = [
        ResourceDetails(
            uid=e.uid or e.key(),
            name=e.pod,
            namespace=e.namespace,
            type="Kubernetes Pod",
            data=data or None,
        )
    ]
    found.extend(
        ResourceDetails(uid=cid, name=e.container, namespace=e.namespace, type="Container")
        for cid in e.container_ids
    )
    return found


def _cloud(settings: AlertSettings) -> Cloud | None:
    if not settings.cloud_provider:
        return None
    account = None
    if settings.cloud_account:
        aws = settings.cloud_provider.upper() == "AWS"
        account = Account(
            name=settings.cloud_account,
            uid=settings.cloud_account,
            type_id=TypeID.AWS_Account if aws else TypeID.Other,
        )
    return Cloud(provider=settings.cloud_provider, account=account, region=settings.cloud_region)


def to_ocsf(alert: Alert, settings: AlertSettings | None = None) -> dict[str, Any]:
    """The alert as an OCSF Detection Finding (class_uid 2004), as a plain JSON-able dict."""
    settings = settings or AlertSettings()
    cloud = _cloud(settings)
    level = alert.baseline.level
    analytic = Analytic(
        uid=f"{level}:{alert.baseline.key}",
        name=f"churnguard {level} baseline {alert.baseline.key}",
        type_id=ANALYTIC_RULE if level == "rules" else ANALYTIC_LEARNING,
        type="Rule" if level == "rules" else "Learning (ML/DL)",
        version=alert.model_version or None,
    )
    finding = DetectionFinding(
        activity_id=ActivityID.Create,
        activity_name="Create",
        type_uid=DetectionFindingTypeID.Create,
        type_name="Detection Finding: Create",
        severity_id=OCSF_SEVERITY.get(alert.severity, SeverityID.Unknown),
        severity=alert.severity.capitalize(),
        status_id=StatusID.New,
        status="New",
        time=_epoch_ms(alert.emitted_at),
        start_time=_epoch_ms(alert.first_seen),
        end_time=_epoch_ms(alert.last_seen),
        message=alert.summary,
        metadata=Metadata(
            uid=alert.alert_id,
            product=Product(name=PRODUCT, vendor_name=PRODUCT, version=__version__),
            profiles=["cloud"] if cloud else None,
        ),
        finding_info=FindingInformation(
            uid=alert.alert_id,
            title=alert.summary,
            desc="; ".join(
                f"{x.feature} {x.observed:g} (baseline median {x.baseline_median:g},"
                f" p{x.baseline_percentile:.0f})"
                for x in alert.explanation
            )
            or None,
            analytic=analytic,
            attacks=[_attack(t) for t in alert.techniques] or None,
            first_seen_time=_epoch_ms(alert.first_seen),
            last_seen_time=_epoch_ms(alert.last_seen),
            created_time=_epoch_ms(alert.emitted_at),
        ),
        resources=_resources(alert),
        evidences=[
            EvidenceArtifacts(
                data={"time": ev.time, "kind": ev.kind, "summary": ev.summary, "source": ev.source}
            )
            for ev in alert.evidence
        ]
        or None,
        remediation=Remediation(desc=" ".join(alert.response)) if alert.response else None,
        cloud=cloud,
        unmapped={
            "score": alert.score,
            "threshold": alert.threshold,
            "guard_rules": alert.rules,
            "entity": alert.entity.key(),
        },
    )
    return finding.model_dump(mode="json", exclude_none=True)


# ---- Falco --------------------------------------------------------------------------------------
def _falco_fields(alert: Alert) -> dict[str, str | float | int]:
    """Falco field names where Falco has one (falcosidekick keys on k8s.*), else churnguard.*"""
    e = alert.entity
    fields: dict[str, str | float | int | None] = {
        ALERT_ID_FIELD: alert.alert_id,
        "k8s.ns.name": e.namespace,
        "k8s.pod.name": e.pod,
        "k8s.pod.uid": e.uid,
        "evt.time": _epoch_ms(alert.emitted_at) * 1_000_000,  # Falco's: event time in ns
        "container.id": e.container_ids[0][:12] if e.container_ids else None,  # Falco's short id
        "container.full_id": e.container_ids[0] if e.container_ids else None,
        "container.name": e.container,
        "container.image": e.image,
        "churnguard.instance_id": e.instance_id,
        "churnguard.workload": e.workload,
        "churnguard.score": alert.score,
        "churnguard.threshold": alert.threshold,
        "churnguard.baseline": f"{alert.baseline.level}:{alert.baseline.key}",
        "churnguard.severity": alert.severity,
        "churnguard.techniques": ",".join(alert.techniques),
        "churnguard.first_seen": alert.first_seen,
        "churnguard.last_seen": alert.last_seen,
        "churnguard.evidence": " | ".join(ev.source for ev in alert.evidence if ev.source),
        "churnguard.model_version": alert.model_version,
    }
    return {k: v for k, v in fields.items() if v not in (None, "")}


def to_falco(alert: Alert) -> dict[str, Any]:
    """The alert in Falco's JSON output shape, ready for falcosidekick's HTTP input."""
    priority = FALCO_PRIORITY.get(alert.severity, "Warning")
    first = alert.techniques[0] if alert.techniques else ""
    when = alert.emitted_at[:-1] + "000000Z"  # Falco writes nanoseconds: ms + six zeros
    clock = when[11:-1]  # Falco's output line starts with the event's HH:MM:SS.nnnnnnnnn
    tactics = {TECHNIQUE_TACTICS[t][1] for t in alert.techniques if t in TECHNIQUE_TACTICS}
    tags = [
        PRODUCT,
        *alert.techniques,
        *sorted("mitre_" + t.lower().replace(" ", "_") for t in tactics),
    ]
    document: dict[str, Any] = {
        "time": when,
        "rule": f"churnguard {TECHNIQUE_NAMES.get(first, first or 'anomaly')}",
        "priority": priority,
        "output": f"{clock}: {priority} {alert.summary} (alert_id={alert.alert_id}"
        f" score={alert.score:.3f} threshold={alert.threshold:.3f}"
        f" baseline={alert.baseline.level}:{alert.baseline.key})",
        "output_fields": _falco_fields(alert),
        "source": PRODUCT,
        "tags": tags,
    }
    if alert.entity.node:
        document["hostname"] = alert.entity.node
    return document
