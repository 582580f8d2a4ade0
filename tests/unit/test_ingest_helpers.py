"""Shortcuts in the adapters' shared helpers decide as the plain rule they stand for."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from churnguard.ingest import cloudtrail, common
from churnguard.ingest.common import classify_k8s_user, strip_runtime_prefix

_PREFIX = re.compile(r"^[a-z0-9-]+://")


def _stripped_by_the_pattern(container_id: str | None) -> str | None:
    """The rule: a ``runtime://`` prefix off by its pattern, an empty id absent."""
    if container_id is None:
        return None
    return _PREFIX.sub("", container_id, count=1) or None


_RUNTIME = st.sampled_from(["containerd", "docker", "cri-o", "cri", "Docker", "a:b", "", "x y"])
_REST = st.text(alphabet="0123456789abcdef:/-", max_size=20)


@given(runtime=_RUNTIME, sep=st.sampled_from(["://", ":/", "", ":///"]), rest=_REST)
def test_a_known_runtime_prefix_comes_off_as_the_pattern_takes_it(
    runtime: str, sep: str, rest: str
) -> None:
    container_id = runtime + sep + rest
    assert strip_runtime_prefix(container_id) == _stripped_by_the_pattern(container_id)


@given(container_id=st.none() | st.text(max_size=30))
def test_any_id_comes_out_as_the_pattern_has_it(container_id: str | None) -> None:
    assert strip_runtime_prefix(container_id) == _stripped_by_the_pattern(container_id)


_USERS = st.sampled_from(
    [
        "system:node:ip-10-0-1-2",
        "system:kube-scheduler",
        "system:serviceaccount:kube-system:replicaset-controller",
        "system:serviceaccount:kube-system:coredns",
        "system:serviceaccount:karpenter:karpenter",
        "system:serviceaccount:shop:api",
        "system:serviceaccount::",
        "system:admin",
        "kubernetes-admin",
        "system:anonymous",
        "alice@example.com",
    ]
) | st.text(alphabet="system:ervicacount-kbe", max_size=40)
_GROUPS = st.lists(
    st.sampled_from(["system:masters", "system:authenticated", "dev", "system:nodes"]), max_size=4
)


@given(username=_USERS, groups=_GROUPS, as_set=st.booleans())
def test_a_users_kind_is_the_rule_applied_whatever_else_the_groups_hold(
    username: str, groups: list[str], as_set: bool
) -> None:
    """Remembered by (user, system:masters member): the rule itself (the uncached function
    with the groups as given) answers the same."""
    given_groups = set(groups) if as_set else groups
    masters = ("system:masters",) if "system:masters" in groups else ()
    # the premise: the groups decide only through system:masters membership
    assert common.is_cluster_admin(username, given_groups) is common.is_cluster_admin(
        username, masters
    )
    expected = common._classify_k8s_user.__wrapped__(username, "system:masters" in groups)
    assert classify_k8s_user(username, given_groups) is expected
    assert classify_k8s_user(username, given_groups) is expected  # from the cache


_ARNS = st.none() | st.sampled_from(
    [
        "arn:aws:sts::1:assumed-role/node-role/i-0123456789abcdef0",
        "arn:aws:sts::1:assumed-role/AWSReservedSSO_Admin_1/alice",
        "arn:aws:sts::1:assumed-role/app/bob@example.com",
        "arn:aws:sts::1:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling",
        "arn:aws:iam::1:role/path/app",
        "arn:aws:iam::1:user/carol",
    ]
)
_TYPES = st.none() | st.sampled_from(
    ["AssumedRole", "IAMUser", "Root", "AWSService", "Role", "WebIdentityUser", "Unknown"]
)


@given(typ=_TYPES, invoked_by=st.none() | st.sampled_from(["ec2.amazonaws.com", "x"]), arn=_ARNS)
def test_a_cloudtrail_identity_is_the_same_remembered_or_worked_out(
    typ: str | None, invoked_by: str | None, arn: str | None
) -> None:
    worked_out = cloudtrail._identity.__wrapped__(typ, invoked_by, arn)
    assert cloudtrail._identity(typ, invoked_by, arn) == worked_out
    assert cloudtrail._identity(typ, invoked_by, arn) == worked_out
