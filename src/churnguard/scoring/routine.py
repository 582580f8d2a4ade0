"""An operator's routine is not an incident: what a model alert must show to page.

SREs run debug pods in whichever namespace is on fire, admins exec into a stuck replica and
delete it, a person drains a node: each is rare *in that namespace*, so the model finds it
unusual, but what it did is only a person's lifecycle action. A model alert on a pod that
no guard rule backs, whose evidence backs no technique beyond the deletion itself
(T1578.003 / T1070: no reads, archive, egress, beacon, foreign credentials), made or
deleted only by identities the cluster already knows quietly (``new_identity_in_cluster``
is 0) and not by another workload's identity, does not page. A never-seen person or a
stolen service-account token deleting a pod still does, and so does any alert with
evidence of what was done inside.
"""

from __future__ import annotations

from churnguard.alerts.alert import Alert
from churnguard.profiling.profile import Profile

LIFECYCLE_TECHNIQUES = frozenset({"T1578.003", "T1070"})


def routine(profile: Profile, alert: Alert) -> bool:
    """True when a model alert is only a known person's lifecycle action on a pod."""
    v = profile.values
    return (
        profile.entity.kind == "pod"
        and not alert.rules
        and set(alert.techniques) <= LIFECYCLE_TECHNIQUES
        and v.get("new_identity_in_cluster", 0.0) == 0
        and v.get("deleted_by_other_identity", 0.0) == 0
    )
