"""A few high-confidence guard rules beside the model. Tiny on purpose.

A guard never replaces the model: when the model alerts, each guard that also holds raises
the alert's severity one step and adds its technique. Outside learning mode a guard alone
stays silent: admins do exec into a pod and delete it, CI runners do write and upload
tarballs, and the learned baseline is what tells those apart. Two stories page by
themselves in any mode (``pages``): an instance run, used to read and terminated within
minutes by an identity never seen running instances, and credentials used out of place;
no benign identity of the account tells either. While a namespace is still in
learning mode (no baseline can judge yet) only the guards marked ``alone`` — patterns no
benign scenario we know of produces — raise an alert by themselves, so a brand-new
namespace is not a complete blind spot. A container outside the orchestrator is such a
pattern: no baseline has one to learn, so its guards alert by themselves.
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
    pages: bool = False  # alerts by itself in any mode: a story no benign identity tells


def _instance_run_terminate_by_one_human(p: Profile) -> bool:
    return _run_terminate_quickly_by_one_identity(p) and p.values.get("deleted_by_person", 0) > 0


def _instance_story_by_new_identity(p: Profile) -> bool:
    # Packer's CI role and developers' SSO sessions are known identities of the account;
    # autoscaling and spot are excluded by run_and_terminate_same_identity
    v = p.values
    return (
        _run_terminate_quickly_by_one_identity(p)
        and v.get("new_identity", 0) > 0
        and _read_something(v)
    )


def _run_terminate_quickly_by_one_identity(p: Profile) -> bool:
    v = p.values
    return (
        p.entity.kind == "instance"
        and p.final
        and v.get("run_and_terminate_same_identity", 0) > 0
        and v.get("lifetime_s", 1e9) <= RUN_TO_TERMINATE_S
    )


def _read_something(v: dict[str, float]) -> bool:
    return any(v.get(f, 0) > 0 for f in ("repo_reads", "secret_reads", "distinct_objects_read"))


def _credentials_out_of_place(p: Profile) -> bool:
    return p.values.get("credentials_out_of_place", 0) > 0


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


def _container_outside_orchestrator(p: Profile) -> bool:
    # the runtime sensors (Falco, Tetragon) run on the cluster's nodes: every container
    # entity is a container on a Kubernetes node that no pod accounts for
    return p.entity.kind == "container"


def _container_started_from_a_pod(p: Profile) -> bool:
    return p.entity.kind == "container" and p.created_by is not None


GUARDS: tuple[Guard, ...] = (
    Guard(
        "instance-run-terminate-by-one-human",
        "T1578.003",
        "An EC2 instance launched and terminated by the same human identity within 30 min.",
        _instance_run_terminate_by_one_human,
        alone=True,
    ),
    Guard(
        "instance-story-by-new-identity",
        "T1578.003",
        "An EC2 instance launched and terminated within 30 min by one identity never seen"
        " running instances in the account (``new_identity``), that read objects or secrets"
        " in between: stolen keys, not a developer's test box or a Packer build.",
        _instance_story_by_new_identity,
        alone=True,
        pages=True,
    ),
    Guard(
        "credentials-out-of-place",
        "T1078.004",
        "Cloud calls made with credentials that do not belong where they were used"
        " (``credentials_out_of_place``): a CI or workload role's keys used from an"
        " instance or pod, or an instance's role used from another address.",
        _credentials_out_of_place,
        alone=True,
        pages=True,
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
    Guard(
        "container-outside-orchestrator",
        "T1610",
        "A runtime container on a cluster node that no pod accounts for (``docker``/``ctr``/"
        "``nerdctl run`` on the node): the orchestrator, and every control built on it,"
        " never saw it.",
        _container_outside_orchestrator,
        alone=True,
    ),
    Guard(
        "container-started-from-a-pod",
        "T1611",
        "That container was started by a runtime client run from a pod's process (after"
        " ``nsenter`` or a host mount): an escape from the pod to its host.",
        _container_started_from_a_pod,
        alone=True,
    ),
)


def fired(profile: Profile) -> list[Guard]:
    """The guards that hold for a profile, in declaration order."""
    return [g for g in GUARDS if g.check(profile)]
