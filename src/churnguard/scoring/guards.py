"""A few high-confidence guard rules beside the model. Tiny on purpose.

A guard never replaces the model: when the model alerts, each guard that also holds raises
the alert's severity one step and adds its technique. Outside learning mode a guard alone
stays silent: admins do exec into a pod and delete it, CI runners do write and upload
tarballs, and the learned baseline is what tells those apart. While a namespace is still in
learning mode (no baseline can judge yet) only the guards marked ``alone`` — patterns no
benign scenario we know of produces — raise an alert by themselves, so a brand-new
namespace is not a complete blind spot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from churnguard.profiling.profile import Profile

RUN_TO_TERMINATE_S = 1800.0
EXEC_TO_DELETE_S = 120.0
EGRESS_BYTES = 50e6


@dataclass(frozen=True)
class Guard:
    """One rule: ``check(profile)`` holds on its pattern; ``technique`` joins the alert."""

    name: str
    technique: str
    doc: str
    check: Callable[[Profile], bool]
    alone: bool = False  # may alert by itself during learning mode


def _instance_run_terminate_by_one_human(p: Profile) -> bool:
    v = p.values
    return (
        p.entity.kind == "instance"
        and p.final
        and v.get("run_and_terminate_same_identity", 0) > 0
        and v.get("deleted_by_person", 0) > 0
        and v.get("lifetime_s", 1e9) <= RUN_TO_TERMINATE_S
    )


def _exec_then_delete_by_person(p: Profile) -> bool:
    v = p.values
    return (
        p.entity.kind == "pod"
        and p.final
        and v.get("deleted_by_person", 0) > 0
        and v.get("exec_to_delete_s", 1e9) <= EXEC_TO_DELETE_S
    )


def _archive_then_egress_to_new_destination(p: Profile) -> bool:
    v = p.values
    return (
        v.get("archive_writes", 0) > 0
        and v.get("new_destinations", 0) > 0
        and v.get("egress_external_bytes", 0) > EGRESS_BYTES
    )


GUARDS: tuple[Guard, ...] = (
    Guard(
        "instance-run-terminate-by-one-human",
        "T1578.003",
        "An EC2 instance launched and terminated by the same human identity within 30 min.",
        _instance_run_terminate_by_one_human,
        alone=True,
    ),
    Guard(
        "exec-then-delete-by-person",
        "T1578.003",
        "A pod deleted by a person within 2 min of an exec/attach/port-forward into it.",
        _exec_then_delete_by_person,
    ),
    Guard(
        "archive-then-egress-to-new-destination",
        "T1560.002",
        "An archive written and over 50 MB sent outside the cluster, to a destination never"
        " seen before (``new_destinations``: first-seen per namespace, see the spec), in"
        " one window.",
        _archive_then_egress_to_new_destination,
    ),
)


def fired(profile: Profile) -> list[Guard]:
    """The guards that hold for a profile, in declaration order."""
    return [g for g in GUARDS if g.check(profile)]
