"""The learning gate: one rule for what is learned (withheld, released, quarantined rows)."""

from __future__ import annotations

import msgspec
from scoring_fixtures import make_profile

from churnguard.config import ScoringSettings
from churnguard.scoring.learning import GateState, LearningGate


def _decide(gate: LearningGate, p, **kw):
    args = {"score": 0.3, "judged": True, "learning": False, "alerted": False,
            "entity_alerted": False, "guarded": False}  # fmt: skip
    args.update(kw)
    return gate.decide(p, **args)


def test_quiet_rows_are_learned_now_and_suspect_ones_are_withheld() -> None:
    gate = LearningGate(ScoringSettings())
    quiet = _decide(gate, make_profile(t=0.0))
    assert quiet.learn_now and not quiet.withheld
    for kw in ({"alerted": True}, {"entity_alerted": True}, {"guarded": True}):
        v = _decide(gate, make_profile(t=1.0), **kw)
        assert not v.learn_now and v.withheld, kw


def test_in_learning_mode_guard_hits_and_far_out_rows_are_withheld() -> None:
    """Nothing pages through the model in learning mode; it must not learn the attack."""
    gate = LearningGate(ScoringSettings(learning_withhold_score=0.99))
    high = _decide(gate, make_profile(), learning=True, score=0.995)
    assert not high.learn_now and high.withheld
    assert _decide(gate, make_profile(), learning=True, score=0.5).learn_now
    # no mature baseline judged it: nothing to compare with, learned as before...
    assert _decide(gate, make_profile(), learning=True, judged=False, score=0.0).learn_now
    # ... unless a guard holds: then never, whatever the score bars say
    default = LearningGate(ScoringSettings())
    guarded = _decide(default, make_profile(), learning=True, judged=False, guarded=True)
    assert not guarded.learn_now and guarded.withheld
    assert _decide(default, make_profile(), learning=True, score=0.999).learn_now  # bar off


def test_a_persons_bare_pod_is_learned_only_when_it_ends_quietly() -> None:
    gate = LearningGate(ScoringSettings())

    def row(pod: str, t: float, final: bool = False):
        p = make_profile(pod=pod, workload=None, t=t, final=final)
        p.creator_kind = "person"
        return p

    assert not _decide(gate, row("debug-1", 0.0)).learn_now
    assert gate.quarantine["shop/debug-1"]
    ended = _decide(gate, row("debug-1", 300.0, final=True))
    assert not ended.learn_now and [p.window_start for p in ended.released] == [0.0, 300.0]
    assert "shop/debug-1" not in gate.quarantine
    # one suspect window spoils the whole life: nothing of it is learned
    _decide(gate, row("debug-2", 0.0))
    _decide(gate, row("debug-2", 300.0), alerted=True)
    assert _decide(gate, row("debug-2", 600.0, final=True)).released == []
    # a controller's pod, or a bare pod a service account made, is not quarantined
    assert _decide(gate, make_profile(pod="web-1")).learn_now
    ci = make_profile(pod="runner-1", workload=None)
    ci.creator_kind = "service_account"
    assert _decide(gate, ci).learn_now


def test_instances_people_run_are_quarantined_too_and_state_round_trips() -> None:
    gate = LearningGate(ScoringSettings())
    inst = make_profile(kind="instance", instance_id="i-1")
    inst.creator_kind = "person"
    _decide(gate, inst)
    again = LearningGate(ScoringSettings())
    again.load(msgspec.msgpack.decode(msgspec.msgpack.encode(gate.export()), type=GateState))
    assert list(again.quarantine) == ["instance/i-1"]


def test_a_quarantined_window_teaches_the_first_seen_memory_only_through_its_release() -> None:
    """A person's instance must not make its identity known while its story is open: a
    second run of the same stolen keys would otherwise look familiar."""
    inst = make_profile(kind="instance", instance_id="i-1")
    inst.creator_kind = "person"
    assert not LearningGate.teaches_memory(inst, paged=False)
    assert LearningGate.teaches_memory(make_profile(), paged=False)
    assert not LearningGate.teaches_memory(make_profile(), paged=True)


def test_a_hubs_pods_release_like_a_controllers_and_a_foreign_accounts_do_not() -> None:
    """JupyterHub's single-user servers: what recurs across them is the hub's workload."""
    gate = LearningGate(ScoringSettings(release_after_entities=3))

    def spawned(pod: str, by: str):
        p = make_profile(ns="data", pod=pod, workload=None, t=0.0)
        p.creator_kind, p.created_by = "service_account", by
        return p

    hub = "system:serviceaccount:data:jupyterhub"
    got = [_decide(gate, spawned(f"jupyter-{i}", hub), alerted=True) for i in range(3)]
    assert [len(v.released) for v in got] == [0, 0, 3]
    runner = "system:serviceaccount:ci:gitlab-runner"  # another namespace's account
    got = [_decide(gate, spawned(f"netshoot-{i}", runner), alerted=True) for i in range(4)]
    assert all(v.released == [] for v in got)
