"""The alert: a typed record an analyst can act on, not a formatted string.

Schema per "Output" in the design doc (``../shared/DESIGN.md``). ``alert_id`` is a hash of
the entity, the window and the feature-spec version, so a redelivered record reproduces the
same id and never pages twice. Times come from event time (``emitted_at`` is the end of the
scored window), so replaying the same input gives byte-identical alerts. The table in
:func:`render_table` is a view.


Over 400 lines on purpose: the schema and every rule that fills one of its fields
(techniques with the evidence that backs each, severity, explanation, summary, response
steps, campaigns) stay together, so each field has one rule in one place; the terminal
table, a view, is last.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
import numpy as np

from churnguard.profiling.floods import CLUSTER, Flood
from churnguard.profiling.profile import EntityRef, Evidence, Profile
from churnguard.profiling.spec import FeatureSpec

SEVERITIES = ("low", "medium", "high", "critical")

# ATT&CK technique per feature-spec strategy (the dominant features decide)
STRATEGY_TECHNIQUES: dict[str, tuple[str, ...]] = {
    "deletion": ("T1578.003",),
    "collection": ("T1213",),
    "archive_exfil": ("T1560.002",),
    "c2": ("T1071",),
    "credentials": ("T1078.004",),
    "escape": ("T1611",),
}

TECHNIQUE_NAMES = {
    "T1578.003": "Modify Cloud Compute Infrastructure: Delete Cloud Instance",
    "T1070": "Indicator Removal",
    "T1213": "Data from Information Repositories",
    "T1560.002": "Archive Collected Data: Archive via Library",
    "T1041": "Exfiltration Over C2 Channel",
    "T1071": "Application Layer Protocol (C2)",
    "T1610": "Deploy Container",
    "T1611": "Escape to Host",
    "T1562": "Impair Defenses",
    "T1078.004": "Valid Accounts: Cloud Accounts",
}

# ATT&CK tactic (id, name) each technique serves here; OCSF `attacks` and Falco tags need it
TECHNIQUE_TACTICS: dict[str, tuple[str, str]] = {
    "T1578.003": ("TA0005", "Defense Evasion"),
    "T1070": ("TA0005", "Defense Evasion"),
    "T1213": ("TA0009", "Collection"),
    "T1560.002": ("TA0009", "Collection"),
    "T1041": ("TA0010", "Exfiltration"),
    "T1071": ("TA0011", "Command and Control"),
    "T1610": ("TA0002", "Execution"),
    "T1611": ("TA0004", "Privilege Escalation"),
    "T1562": ("TA0005", "Defense Evasion"),
    "T1078.004": ("TA0005", "Defense Evasion"),
}

# What an analyst does first, per technique. Data, so a deployment can extend it.
RESPONSE_STEPS: dict[str, tuple[str, ...]] = {
    "T1578.003": (
        "Pull the audit trail for the deleting identity (kubectl/CloudTrail) for the last 24 h:"
        " what else did it create, exec into or delete?",
        "Recover what ran: runtime events (Tetragon/Falco) for the container ids in the alert,"
        " the node's container logs, and the image digest.",
        "If the identity is a person, confirm with them out of band; if it is a service account"
        " or instance role, rotate its credentials and review its RBAC/IAM bindings.",
    ),
    "T1070": (
        "Check whether logs, events or volumes of the deleted entity were removed with it;"
        " preserve the node's copies before garbage collection.",
    ),
    "T1213": (
        "List the objects read (CloudTrail data events / audit log) and classify their"
        " sensitivity; compare with what the workload is meant to read.",
        "Check who changed the workload's identity bindings (IRSA role, service account,"
        " RBAC) and whether the pod's image or command differs from its deployment.",
    ),
    "T1560.002": (
        "Find the archive: path and size from the runtime events, and the process that wrote"
        " it (python gzip/zipfile/tarfile, tar).",
        "Follow the egress: destinations, bytes and time of the upload; block the destination"
        " at the egress gateway if it is not a known endpoint.",
    ),
    "T1041": (
        "Treat the destination as attacker-controlled until proven otherwise: block it and"
        " search every namespace's flows for it.",
    ),
    "T1610": (
        "On the node, list the runtime's containers (``crictl ps -a``, ``ctr -n k8s.io c ls``,"
        " ``docker ps -a``) and find the one in the alert: its image, command and mounts.",
        "Stop it and preserve its filesystem and logs; block its destinations at egress.",
    ),
    "T1611": (
        "The pod in the evidence reached its host: review its security context (privileged,"
        " hostPID, host mounts), who created and exec'd into it, and cordon the node.",
    ),
    "T1071": (
        "Inspect the periodic connections: destination, port, interval and payload sizes;"
        " look the address up in threat intel and in other pods' flows.",
        "Capture the process behind it (Tetragon process tree for the container) before"
        " the pod is rescheduled.",
    ),
    "T1078.004": (
        "Revoke the role's active sessions (an IAM deny on tokens issued before now) and"
        " rotate its keys; list every call made with them from addresses that are not the"
        " role's (CloudTrail by access key id and sourceIPAddress).",
        "Find how the keys left: the instance metadata service (IMDSv1, SSRF), a CI"
        " variable, a pod's mounted token.",
    ),
    "T1562": (
        "Find the writer of the flood: the top sources and namespaces in the alert's evidence;"
        " a pod or node that emits telemetry for entities that do not exist is compromised"
        " or broken. Cut its write access to the telemetry topics.",
        "Check what the detector may have missed while flooded: entities evicted early are"
        " in churnguard_pipeline_capped_total; replay the window's real telemetry offline.",
    ),
}
FLOOD_RULE = "telemetry_flood"


class FeatureExplanation(msgspec.Struct, kw_only=True):
    """One top feature: what was observed versus the baseline that scored it."""

    feature: str
    observed: float
    baseline_median: float
    baseline_percentile: float  # where `observed` falls in the baseline's recent values, 0-100
    contribution: float  # how far above the baseline, in its spreads (model view)
    doc: str


EXPLAIN_TOP = 3
OUTLYING_PCT = 97.5  # a feature this far out on its suspicious side explains first


def raw_percentiles(observed: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """Per feature, the percentile (0-100, ties count half) of ``observed`` in ``recent``."""
    below = (recent < observed).sum(axis=0)
    equal = (recent == observed).sum(axis=0)
    return 100.0 * (below + 0.5 * equal) / len(recent)


def column_stats(a: np.ndarray, quartiles: bool = True) -> list[np.ndarray]:
    """Per column of ``a`` (at least one row), ``np.median`` and, with ``quartiles``,
    ``np.percentile(a, [25, 75])``: the same bits, without their Python layers (four
    calls an alert). Each is numpy's own partition, with numpy's own ``kth`` (which of
    two equal zeros, +0.0 or -0.0, lands on a position depends on them), then numpy's
    own arithmetic: the median is the mean of the middle one or two (a sum that starts
    from +0.0), a quartile the 'linear' method's ``_lerp`` (counted down from the upper
    neighbour once the weight is 0.5 or more); a column holding a NaN gives its NaN."""
    n = len(a)
    half = n // 2
    middle = [half - 1, half] if n % 2 == 0 else [half]
    columns = _Columns(a)
    part = columns.partitioned([*middle, n - 1])
    median = 0.0 + part[middle[0]]
    if len(middle) == 2:
        median = (median + part[middle[1]]) / 2.0
    out, last = [median], [part[n - 1]]
    if quartiles:
        spots = []  # numpy's lower and upper index and weight of each quartile
        for q in (0.25, 0.75):
            at = (n - 1) * q
            lower = math.floor(at)
            upper = lower + 1
            if at >= n - 1:
                lower = upper = -1
            spots.append((lower % n, upper % n, at - lower))
        part = columns.partitioned(sorted({0, n - 1, *(i for s in spots for i in s[:2])}))
        for lower, upper, t in spots:
            below, above = part[lower], part[upper]
            diff = above - below
            out.append(above - diff * (1 - t) if t >= 0.5 else below + diff * t)
        last += [part[n - 1]] * 2
    for stat, top in zip(out, last, strict=True):
        nan = np.isnan(top)
        if nan.any():
            stat[nan] = top[nan]
    return out


class _Columns:
    """A matrix's columns, each laid out contiguously, for partitions along them.

    numpy partitions each column of an ``axis=0`` partition apart (copied to a buffer), so
    a column's order statistics are the same whichever columns are partitioned with it;
    a column of one value throughout (of one bit pattern: a feature its baseline never
    saw, most of them) is that value at every position and is not partitioned."""

    def __init__(self, a: np.ndarray) -> None:
        self.first = a[0]
        self.t = np.ascontiguousarray(a.T)
        bits = self.t.view(np.int64)
        self.varying = (bits != bits[:, :1]).any(axis=1)

    def partitioned(self, kth: list[int]) -> dict[int, np.ndarray]:
        """Rows ``kth`` of ``np.partition(a, kth, axis=0)``, by position."""
        rows = np.repeat(self.first[None, :], len(kth), axis=0)
        if self.varying.any():
            moved = self.t[self.varying]
            moved.partition(kth, axis=1)
            rows[:, self.varying] = moved[:, kth].T
        return dict(zip(kth, rows, strict=True))


def explain(
    spec: FeatureSpec,
    values: dict[str, float],
    recent: np.ndarray,
    top: int = EXPLAIN_TOP,
    recent_view: np.ndarray | None = None,
) -> list[FeatureExplanation]:
    """The features that put a row outside its baseline, most outlying first.

    ``recent`` is the scoring baseline's window of raw rows (empty: compare with the
    features' benign ``missing`` values). Contribution is measured in the model view, where
    larger is always more suspicious, as the distance above the baseline median in units of
    its spread; medians and percentiles are reported in raw units, as an analyst reads them.
    ``recent_view`` is ``spec.transform(recent)`` when the caller keeps it.
    """
    x = spec.vector(values)
    if len(recent) == 0:
        recent, recent_view = spec.vector({})[None, :], None
    if recent_view is None:
        view = spec.transform(np.vstack([x, recent]))  # elementwise: as one by one
        xm, rm = view[0], view[1:]
    else:
        xm, rm = spec.transform(x)[0], recent_view
    med, q1, q3 = column_stats(rm)
    contribution = (xm - med) / ((q3 - q1) + 0.1 * np.abs(med) + 0.25)
    pct = raw_percentiles(x, recent)
    suspicious_pct = np.array(
        [p if f.direction == "high" else 100.0 - p for p, f in zip(pct, spec.features, strict=True)]
    )
    names, negated = spec.names, (-contribution).tolist()
    order = sorted(range(len(x)), key=lambda j: (negated[j], names[j]))
    chosen = [j for j in order if contribution[j] > 0 and suspicious_pct[j] >= OUTLYING_PCT]
    chosen = (chosen or [j for j in order if contribution[j] > 0] or order)[:top]
    medians = column_stats(recent[:, chosen], quartiles=False)[0].tolist()
    return [
        FeatureExplanation(
            feature=names[j],
            observed=round(float(x[j]), 3),
            baseline_median=round(medians[k], 3),
            baseline_percentile=round(float(pct[j]), 1),
            contribution=round(float(contribution[j]), 2),
            doc=spec.features[j].doc.split(". ")[0].rstrip("."),
        )
        for k, j in enumerate(chosen)
    ]


class BaselineRef(msgspec.Struct, kw_only=True):
    level: str  # workload | namespace | cluster | learning | rules
    key: str


class AlertEvidence(msgspec.Struct, kw_only=True, omit_defaults=True):
    time: str
    kind: str
    summary: str
    source: str = ""  # file:line or topic[partition]@offset


class Window(msgspec.Struct, kw_only=True):
    start: float
    end: float


class Alert(msgspec.Struct, kw_only=True, omit_defaults=True):
    alert_id: str
    summary: str
    entity: EntityRef
    score: float
    threshold: float
    baseline: BaselineRef
    severity: str
    techniques: list[str]
    explanation: list[FeatureExplanation]
    evidence: list[AlertEvidence]
    first_seen: str
    last_seen: str
    emitted_at: str
    window: Window
    response: list[str]
    rules: list[str] = msgspec.field(default_factory=list)  # guard rules that fired
    model_version: str = ""
    # each id in ``techniques`` -> the facts of the profile that back it
    technique_evidence: dict[str, list[str]] = msgspec.field(default_factory=dict)
    campaign: str = ""  # "<namespace>|<destination>" of a campaign alert
    members: list[EntityRef] = msgspec.field(default_factory=list)  # every entity in it

    def entity_keys(self) -> list[str]:
        """The entities this alert names: its own, and a campaign's members."""
        return list(dict.fromkeys([self.entity.key(), *(m.key() for m in self.members)]))


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_id(profile: Profile) -> str:
    """Deterministic: same entity, window and spec version → same id."""
    basis = f"{profile.entity.key()}|{profile.window_start:.3f}|{profile.window_end:.3f}|"
    basis += profile.spec_version
    return hashlib.sha256(basis.encode()).hexdigest()[:24]


def techniques_for(
    profile: Profile,
    top: list[FeatureExplanation],
    spec: FeatureSpec,
    extra: list[str],
    facts: Mapping[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """ATT&CK ids the row's evidence backs, each with that evidence, in a stable order.

    Candidates come from the strategies of the dominant features and the guard rules that
    fired; a candidate stays only when :func:`technique_evidence` finds what justifies it
    in the profile (an archive written for T1560.002, egress after an archive for T1041,
    repository or object reads for T1213, a deletion or termination for T1578.003, a
    container with no pod for T1610, its launch from a pod for T1611). When
    the model was moved by context features alone, every technique the evidence backs is
    named instead, so an alert never carries an id without its reason. ``facts`` are a
    guard's findings beyond the profile's values (a whole life against its workload's
    pods); they back their technique too.
    """
    backed = technique_evidence(profile)
    for technique, lines in (facts or {}).items():
        if lines:
            backed[technique] = [*backed.get(technique, []), *lines]
    candidates: list[str] = []
    for item in top:
        candidates.extend(STRATEGY_TECHNIQUES.get(spec.by_name(item.feature).strategy, ()))
    candidates.extend(extra)
    if "T1578.003" in candidates:
        candidates.append("T1070")
    if "T1560.002" in candidates:
        candidates.append("T1041")
    chosen = [t for t in dict.fromkeys(candidates) if t in backed]
    if not chosen:
        chosen = list(backed)
    return {t: backed[t] for t in chosen}


# the profile's features whose values back each technique in :func:`technique_evidence`
# (lifecycle techniques are backed by who deleted the entity, not by a magnitude)
TECHNIQUE_FEATURES: dict[str, tuple[str, ...]] = {
    "T1560.002": ("archive_writes", "archive_bytes"),
    "T1041": ("archive_writes", "egress_external_bytes", "new_destinations"),
    "T1213": ("repo_reads", "distinct_objects_read", "secret_reads"),
    "T1078.004": ("credentials_out_of_place",),
    "T1071": ("beacon_regularity", "new_destinations"),
    "T1611": ("container_starts",),
}
ARCHIVE_EGRESS_BYTES = 1e6  # egress after an archive counts as its exfiltration from here
# deleters whose removal of an entity is churn, not evasion: a controller replacing or scaling
# down its pods, the node evicting them, an autoscaler or spot reclaiming instances
CHURN_DELETERS = frozenset({"controller", "node", "autoscaler"})
NO_EXEC_S = 86400.0  # exec_to_delete_s at its spec `missing` value: no exec before deletion


def technique_evidence(profile: Profile) -> dict[str, list[str]]:
    """What in the profile backs each technique it could carry (one line per fact)."""
    v = profile.values
    out: dict[str, list[str]] = {}
    archives, archive_bytes = v.get("archive_writes", 0.0), v.get("archive_bytes", 0.0)
    egress, new_dest = v.get("egress_external_bytes", 0.0), v.get("new_destinations", 0.0)
    if archives > 0:
        out["T1560.002"] = [f"{archives:g} archive(s) written, {_fmt(archive_bytes)}B"]
    if archives > 0 and egress >= ARCHIVE_EGRESS_BYTES:
        line = f"{_fmt(egress)}B sent outside the cluster in the archive's window"
        if new_dest > 0:
            line += f", to {new_dest:g} destination(s) new to the namespace"
        out["T1041"] = [line]
    for a in profile.archive_shipped:  # across its windows (features._archive_shipped)
        out.setdefault("T1560.002", []).append(f"archive {a.archive} written, {_fmt(a.size)}B")
        out.setdefault("T1041", []).append(
            f"{_fmt(a.sent)}B sent to {a.dest}, a host new to the namespace (or called"
            f" only by an implant that paged), after writing"
            f" {a.archive} ({_fmt(a.size)}B)"
        )
    reads = [
        f"{v[name]:g} {what}"
        for name, what in (
            ("repo_reads", "repository reads"),
            ("distinct_objects_read", "distinct objects read"),
            ("secret_reads", "secret reads"),
        )
        if v.get(name, 0.0) > 0
    ]
    if reads:
        out["T1213"] = reads
    removed = profile.deleted_by or profile.end_reason in ("deleted", "terminated")
    if profile.final and removed and profile.deleter_kind not in CHURN_DELETERS:
        life = v.get("lifetime_s")
        ended = "terminated" if profile.entity.kind == "instance" else "deleted"
        line = f"{ended} by {profile.deleted_by or '?'} ({profile.deleter_kind or '?'})"
        if profile.created_by is None and not life:
            line += ", its creation not in the telemetry held"  # run before it, or forgotten
        elif life is not None:
            line += f" {life / 60:.1f} min after creation"
        gap = v.get("exec_to_delete_s")
        if gap is not None and gap < NO_EXEC_S:
            line += f", {gap:.0f} s after the last exec"
        out["T1578.003"] = [line]
        if v.get("deleted_by_person") or v.get("deleted_by_other_identity"):
            out["T1070"] = [f"removed by a {profile.deleter_kind} identity, not its controller"]
    out_of_place = v.get("credentials_out_of_place", 0.0)
    if out_of_place > 0:
        out["T1078.004"] = [
            f"{out_of_place:g} cloud call(s) with credentials out of place (a role's keys used"
            f" from an address that is not where that role runs; evidence lines say who)"
        ]
    regularity = v.get("beacon_regularity", 0.0)
    c2 = []
    if regularity > 0:
        c2.append(f"connections to a rare destination at regularity {regularity:.2f}")
    if new_dest > 0:
        c2.append(f"{new_dest:g} external destination(s) new to the namespace")
    c2.extend(
        f"calls {dest} on a schedule (regularity {r:.2f}), a host its namespace first used"
        f" 90 min or more after this {profile.entity.kind} (or its workload) started"
        for dest, r in profile.late_beacons.items()
    )
    c2.extend(
        f"calls {dest} on a schedule (regularity {r:.2f}), a host none of the other pods of"
        f" its workload called meanwhile"
        for dest, r in profile.lone_beacons.items()
    )
    c2.extend(
        f"calls {dest}, a host its workload never called, after starting {binary}, a program"
        f" its workload's pods never ran"
        for dest, binary in profile.unfamiliar_callers.items()
    )
    if c2:
        out["T1071"] = c2
    if v.get("container_starts", 0.0) > 0:
        out["T1611"] = [
            f"{v['container_starts']:g} container(s) started on its node with a runtime client"
        ]
    if profile.entity.kind == "container":  # a runtime container no pod accounts for
        cid = "".join(profile.entity.container_ids[:1]) or "?"
        out["T1610"] = [f"container {cid} runs on node {profile.entity.node or '?'} with no pod"]
        if profile.created_by:
            out["T1611"] = [f"started from pod {profile.created_by} through the node's runtime"]
    return out


def severity_for(score: float, threshold: float, rules: list[str]) -> str:
    """By margin over the threshold; each guard rule raises it one step."""
    margin = score - threshold
    level = 0 if margin < 0.05 else 1 if margin < 0.12 else 2
    level = min(level + len(rules), len(SEVERITIES) - 1)
    return SEVERITIES[level]


def response_for(techniques: list[str]) -> list[str]:
    steps: list[str] = []
    for t in techniques:
        steps.extend(RESPONSE_STEPS.get(t, ()))
    return steps


def _evidence(items: list[Evidence]) -> list[AlertEvidence]:
    return [
        AlertEvidence(
            time=iso(e.time),
            kind=e.kind,
            summary=e.summary,
            source=e.origin.pointer() if e.origin else "",
        )
        for e in items
    ]


def who_line(profile: Profile) -> str:
    """Who made, acted on and removed the entity, and how many of them are new: the first
    thing an analyst asks, on every alert (a hijacked pod's window has no creation in it)."""
    v, e = profile.values, profile.entity
    made = "run" if e.kind == "instance" else "created"
    parts = [
        f"{made} by {profile.created_by} ({profile.creator_kind or '?'})"
        if profile.created_by
        else f"{made} by ? (not in the telemetry held)"
    ]
    if e.kind == "container":  # its "creator" is the pod whose runtime client started it
        parts = [
            f"started from pod {profile.created_by} through the node's runtime"
            if profile.created_by
            else f"started on node {e.node or '?'} by no pod the telemetry shows"
        ]
    if e.service_account:
        parts.append(f"runs as service account {e.namespace}/{e.service_account}")
    if profile.identities:
        acting = f"acting on it in this window: {', '.join(profile.identities)}"
        new = int(v.get("new_identity", 0.0))
        if new:
            # a whole life's row sums its windows: the count may exceed the names listed
            scope = "the cloud account" if e.kind == "instance" else "the namespace"
            count = f"{new} of them" if new <= len(profile.identities) else f"{new} over its life"
            acting += f" (never seen acting in {scope} before: {count}"
            if "new_identity_in_cluster" in v:
                acting += f"; new to the cluster: {int(v['new_identity_in_cluster'])}"
            acting += ")"
        if profile.strangers:
            strangers = ", ".join(profile.strangers)
            acting += f"; strangers over its life (no team the cluster knows): {strangers}"
        parts.append(acting)
    if profile.final and profile.deleted_by:
        ended = "terminated" if e.kind == "instance" else "deleted"
        parts.append(f"{ended} by {profile.deleted_by} ({profile.deleter_kind or '?'})")
    return "; ".join(parts)


def summary_line(profile: Profile, techniques: list[str]) -> str:
    e = profile.entity
    if e.kind == "instance":
        what = f"instance {e.instance_id}"
    elif e.kind == "container":
        what = f"container {''.join(e.container_ids[:1])} on node {e.node} (no pod)"
    else:
        what = f"pod {e.namespace}/{e.pod}"
    how = ", ".join(TECHNIQUE_NAMES.get(t, t) for t in techniques[:2]) or "unusual behaviour"
    ended = ""
    if profile.final and profile.deleted_by:
        ended = f"; deleted by {profile.deleted_by} ({profile.deleter_kind})"
    return f"{what}: {how}{ended}"


def build_alert(
    profile: Profile,
    *,
    score: float,
    threshold: float,
    level: str,
    baseline_key: str,
    top: list[FeatureExplanation],
    spec: FeatureSpec,
    rules: list[str],
    rule_techniques: list[str],
    model_version: str,
    rule_facts: Mapping[str, list[str]] | None = None,
) -> Alert:
    backed = techniques_for(profile, top, spec, rule_techniques, rule_facts)
    techniques = list(backed)
    return Alert(
        alert_id=alert_id(profile),
        summary=summary_line(profile, techniques),
        entity=profile.entity,
        score=round(score, 4),
        threshold=round(threshold, 4),
        baseline=BaselineRef(level=level, key=baseline_key),
        severity=severity_for(score, threshold, rules),
        techniques=techniques,
        explanation=top,
        evidence=[
            AlertEvidence(time=iso(profile.first_seen), kind="who", summary=who_line(profile)),
            *_evidence(profile.evidence),
        ],
        first_seen=iso(profile.first_seen),
        last_seen=iso(profile.last_seen),
        emitted_at=iso(profile.window_end),
        window=Window(start=profile.window_start, end=profile.window_end),
        response=response_for(techniques),
        rules=rules,
        model_version=model_version,
        technique_evidence=backed,
    )


IDENTITY = "identity:"  # a campaign of one identity (scoring/campaigns.py): "*|identity:<who>"


def campaign_alert(alert: Alert, key: str, members: list[EntityRef]) -> Alert:
    """The alert of the profile that completed (or joined) a campaign, as a campaign alert:
    its own id (the member count is in it, so each update is a distinct record), every
    member in ``members`` and the destination in the summary."""
    ns, _, dest = key.partition("|")
    basis = f"campaign|{key}|{len(members)}|{alert.alert_id}"
    more = f" and {len(members) - 6} more" if len(members) > 6 else ""
    facts = dict(alert.technique_evidence)
    if dest.startswith(IDENTITY):  # one identity new to the cluster, across namespaces
        who = dest.removeprefix(IDENTITY)
        names = ", ".join(m.key() for m in members[:6])
        facts.setdefault("T1078", []).append(
            f"{len(members)} short-lived pods created, exec'd into or deleted by {who},"
            " an identity new to the cluster"
        )
        summary = f"campaign: {len(members)} short-lived pods by {who} ({names}{more})"
    else:
        names = ", ".join(m.pod or m.key() for m in members[:6])
        facts.setdefault("T1041", []).append(
            f"{len(members)} short-lived pods of {ns} sent to {dest}, new to the namespace"
        )
        summary = (
            f"campaign: {len(members)} short-lived pods in {ns} sent to {dest} ({names}{more})"
        )
    return msgspec.structs.replace(
        alert,
        alert_id=hashlib.sha256(basis.encode()).hexdigest()[:24],
        summary=summary,
        techniques=list(facts),
        technique_evidence=facts,
        response=response_for(list(facts)),
        severity="high",  # several pods uploading to one host new to the namespace
        campaign=key,
        members=members,
    )


def flood_alert(flood: Flood, *, threshold: int, spec_version: str) -> Alert:
    """A "telemetry flood" alert naming the namespace (or the cluster) and the sources.

    Its id is a hash of the namespace and the event-time window, so each flood pages once
    per window however often the shard is restored and the window re-processed.
    """
    basis = f"flood|{flood.namespace}|{flood.window_start:.3f}|{spec_version}"
    where = "the cluster" if flood.namespace == CLUSTER else f"namespace {flood.namespace}"
    sources = ", ".join(f"{name} ({n})" for name, n in flood.top_sources)
    namespaces = ", ".join(f"{name} ({n})" for name, n in flood.top_namespaces)
    what = f"{flood.new_entities} new entities"
    if flood.evicted:
        what += f", {flood.evicted} entities profiled early to stay under max_entities"
    evidence = [
        AlertEvidence(time=iso(flood.window_start), kind="flood", summary=what),
        AlertEvidence(time=iso(flood.window_start), kind="flood_sources", summary=sources),
        AlertEvidence(time=iso(flood.window_start), kind="flood_namespaces", summary=namespaces),
    ]
    return Alert(
        alert_id=hashlib.sha256(basis.encode()).hexdigest()[:24],
        summary=f"telemetry flood in {where}: {what} in one window (from {sources})",
        entity=EntityRef(kind="namespace", namespace=flood.namespace),
        score=1.0,
        threshold=float(threshold),
        baseline=BaselineRef(level="rules", key=FLOOD_RULE),
        severity="high",
        techniques=["T1562"],
        explanation=[],
        evidence=evidence,
        first_seen=iso(flood.window_start),
        last_seen=iso(flood.window_end),
        emitted_at=iso(flood.window_end),
        window=Window(start=flood.window_start, end=flood.window_end),
        response=response_for(["T1562"]),
        rules=[FLOOD_RULE],
    )


def _fmt(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def _raised_by(a: Alert) -> str:
    """What raised the alert: a campaign, the score over its threshold, or the guard rules."""
    if a.campaign:  # the row itself may be below its bar: the campaign is the signal
        return f"campaign of {len(a.members)}, row score {a.score:.3f} vs {a.threshold:.3f}"
    if a.score > a.threshold:
        return f"score {a.score:.3f} > threshold {a.threshold:.3f}"
    return f"raised by guard rule {', '.join(a.rules) or '?'} (score {a.score:.3f})"


def render_table(alerts: list[Alert], *, width: int = 110) -> str:
    """A readable view for terminals: one block per alert, most severe first."""
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    lines: list[str] = []
    for a in sorted(alerts, key=lambda a: (order.get(a.severity, 9), a.emitted_at, a.alert_id)):
        lines.append("─" * width)
        lines.append(f"{a.severity.upper():<8} {a.emitted_at}  {a.summary}"[:width])
        lines.append(
            f"         id {a.alert_id}  {_raised_by(a)}"
            f"  baseline {a.baseline.level}:{a.baseline.key}  {' '.join(a.techniques)}"[:width]
        )
        if a.rules and a.score > a.threshold:
            lines.append(f"         guard rules also fired: {', '.join(a.rules)}"[:width])
        for technique, facts in a.technique_evidence.items():
            lines.append(f"         {technique}: {'; '.join(facts)}"[:width])
        for x in a.explanation[:4]:
            lines.append(
                f"         · {x.feature:<24} {_fmt(x.observed):>8}   baseline median"
                f" {_fmt(x.baseline_median):>7}, p{x.baseline_percentile:.0f}"[:width]
            )
        for ev in a.evidence[:4]:  # who, then the first key records
            lines.append(f"         ↳ {ev.time} {ev.summary}  {ev.source}"[:width])
    if lines:
        lines.append("─" * width)
    return "\n".join(lines)
