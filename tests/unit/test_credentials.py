"""Credentials out of place (issue 13, item 7): calls whose keys do not belong where they
were used join the entity's story, raise it and name their evidence."""

from __future__ import annotations

from scoring_fixtures import make_profile, quick_settings

from churnguard.alerts.alert import technique_evidence
from churnguard.config import Settings
from churnguard.ingest.events import ActorKind, ApiCategory, Event, EventKind
from churnguard.pipeline import Pipeline
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import load_spec
from churnguard.scoring.guards import fired
from churnguard.scoring.scorer import Scorer
from churnguard.wiring import make_pipeline

T0 = 1_772_409_600.0
CI_ROLE = "arn:aws:sts::1:assumed-role/ci-packer-builder/gitlab-123"
OWN_ROLE = "arn:aws:sts::1:assumed-role/packer-builder-role/i-0abc"


def _ev(t: float, kind: EventKind, **kw) -> Event:
    return Event(time=T0 + t, kind=kind, format="test", **kw)


def _instance_story(*calls: Event) -> dict[str, float]:
    """A CI role runs i-0abc at 10.0.5.5, the calls happen, the CI role terminates it."""
    return _final(*calls).values


def _final(*calls: Event) -> Profile:
    ci = {"actor": CI_ROLE, "actor_kind": ActorKind.SERVICE_ACCOUNT}
    events = [
        _ev(0, EventKind.INSTANCE_RUN, instance_id="i-0abc", pod_ip="10.0.5.5", **ci),
        *calls,
        _ev(600, EventKind.INSTANCE_TERMINATE, instance_id="i-0abc", **ci),
    ]
    pipe = Pipeline(Settings())
    out = pipe.ingest(events)
    out.extend(pipe.finish())
    (final,) = [p for p in out.profiles if p.final]
    return final


def _read(t: float, actor: str, kind: ActorKind, ip: str, **kw) -> Event:
    return _ev(
        t,
        EventKind.CLOUD_CALL,
        actor=actor,
        actor_kind=kind,
        pod_ip=ip,
        verb="GetSecretValue",
        api_category=ApiCategory.SECRET_READ,
        object_name=f"prod/{t:g}",
        **kw,
    )


def test_a_ci_roles_keys_used_from_the_instance_it_ran_are_out_of_place() -> None:
    v = _instance_story(
        *(_read(100 + i, CI_ROLE, ActorKind.SERVICE_ACCOUNT, "10.0.5.5") for i in range(3))
    )
    assert v["credentials_out_of_place"] == 3
    assert v["secret_reads"] == 3  # the calls reached the instance by its address


def test_the_instances_own_role_from_its_own_address_is_in_place() -> None:
    own = {"instance_id": "i-0abc"}
    v = _instance_story(_read(100, OWN_ROLE, ActorKind.INSTANCE, "10.0.5.5", **own))
    assert v["secret_reads"] == 1 and v["credentials_out_of_place"] == 0


def test_the_instances_own_role_from_another_internal_address_is_out_of_place() -> None:
    own = {"instance_id": "i-0abc"}
    v = _instance_story(_read(100, OWN_ROLE, ActorKind.INSTANCE, "10.9.9.9", **own))
    assert v["credentials_out_of_place"] == 1


def test_a_persons_own_session_on_their_instance_is_theirs() -> None:
    sso = "arn:aws:sts::1:assumed-role/AWSReservedSSO_Developer_1/frank@corp.example"
    v = _instance_story(_read(100, sso, ActorKind.PERSON, "10.0.5.5"))
    assert v["secret_reads"] == 1 and v["credentials_out_of_place"] == 0


def test_out_of_place_pages_in_any_mode_with_its_evidence() -> None:
    p = make_profile(
        kind="instance",
        instance_id="i-0abc",
        values={"credentials_out_of_place": 4, "secret_reads": 4},
    )
    assert [g.name for g in fired(p)] == ["credentials-out-of-place"]
    assert "4 cloud call(s) with credentials out of place" in technique_evidence(p)["T1078.004"][0]
    (scored,) = Scorer(quick_settings(learning_profiles=1000), load_spec()).score([p])
    assert scored.alert is not None and "T1078.004" in scored.alert.techniques
    in_place = make_profile(kind="instance", instance_id="i-1", values={"secret_reads": 4})
    assert fired(in_place) == []


def test_the_whole_story_is_in_the_evidence_who_ran_it_what_it_did_who_ended_it() -> None:
    calls = [_read(100 + i, CI_ROLE, ActorKind.SERVICE_ACCOUNT, "10.0.5.5") for i in range(3)]
    calls.append(_read(400, CI_ROLE, ActorKind.SERVICE_ACCOUNT, "10.0.5.5"))  # a later window
    summaries = [e.summary for e in _final(*calls).evidence]
    assert summaries[0].startswith("instance_run by " + CI_ROLE)
    assert any(s.endswith("from 10.0.5.5: credentials out of place") for s in summaries)
    assert any(s.startswith("instance_terminate by " + CI_ROLE) for s in summaries)


def _build(t: float, iid: str, ip: str, session: str, *calls: Event) -> list[Event]:
    """A Packer-like build: the CI role (one job's session) runs ``iid``, the instance's own
    role reads four artifacts from its address, the same session terminates it 15 min later."""
    ci = {"actor": CI_ROLE.replace("gitlab-123", session), "actor_kind": ActorKind.SERVICE_ACCOUNT}
    own = {"actor": f"arn:aws:sts::1:assumed-role/packer-builder-role/{iid}", "instance_id": iid}
    reads = [
        _ev(t + 100 + 10 * i, EventKind.CLOUD_CALL, actor_kind=ActorKind.INSTANCE, pod_ip=ip,
            verb="GetObject", resource="s3", api_category=ApiCategory.REPO_READ,
            object_name=f"corp-build-artifacts/pkgs/{iid}-{i}.deb", **own)
        for i in range(4)
    ]  # fmt: skip
    return [
        _ev(t, EventKind.INSTANCE_RUN, instance_id=iid, pod_ip=ip, **ci),
        *reads,
        *calls,
        _ev(t + 900, EventKind.INSTANCE_TERMINATE, instance_id=iid, **ci),
    ]


def test_a_ci_roles_first_build_pages_its_builds_once_known_do_not() -> None:
    """docs/scoring.md (det10): a role is known once a window of one of its instances scored
    quietly. Its first build in the telemetry is a never-seen identity's run-read-terminate
    story and pages (``instance-story-by-new-identity``), its next build does not, and the
    same role used from a build's own address still pages (``credentials-out-of-place``)."""
    stolen = _ev(7400, EventKind.CLOUD_CALL, actor=CI_ROLE, actor_kind=ActorKind.SERVICE_ACCOUNT,
                 pod_ip="10.0.5.7", verb="GetSecretValue", api_category=ApiCategory.SECRET_READ,
                 object_name="prod/db")  # fmt: skip
    events = [
        *_build(0, "i-0a", "10.0.5.5", "gitlab-1"),
        *_build(3600, "i-0b", "10.0.5.6", "gitlab-2"),
        *_build(7200, "i-0c", "10.0.5.7", "gitlab-3", stolen),
    ]
    pipe = make_pipeline(Settings(), use_bundle=False)  # scored from empty baselines
    out = pipe.ingest(sorted(events, key=lambda e: e.time))
    out.extend(pipe.finish())
    finals = {s.profile.entity.instance_id: s.profile for s in out.scored if s.profile.final}
    assert [finals[i].values["new_identity"] > 0 for i in ("i-0a", "i-0b")] == [True, False]
    paged = {a.entity.instance_id: a.rules for a in out.alerts}
    assert paged == {
        "i-0a": ["instance-story-by-new-identity"],
        "i-0c": ["credentials-out-of-place"],
    }
