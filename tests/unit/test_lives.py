"""Whole-life reads per workload (scoring/lives.py) and the guard that compares a pod's life
with its workload's other pods' (guards.reads-beyond-its-workload)."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from scoring_fixtures import make_profile, quick_settings

from churnguard.alerts.alert import Alert, build_alert, techniques_for
from churnguard.profiling.profile import Profile
from churnguard.profiling.spec import load_spec
from churnguard.scoring.guards import LIFE_READS_FACTOR, LIFE_READS_MIN, Context, fired
from churnguard.scoring.lives import PEERS_MIN, PODS_KEPT, LivesState, WorkloadLives
from churnguard.scoring.routine import replica_routine
from churnguard.scoring.scorer import Scorer

HOUR = 3600.0


def _pod(name: str, reads: float, lived_h: float, workload: str = "Deployment/web") -> Profile:
    p = make_profile(pod=name, workload=workload, t=0.0)
    return msgspec.structs.replace(
        p,
        first_seen=0.0,
        window_end=lived_h * HOUR,
        life_reads={"distinct_objects_read": reads} if reads else {},
    )


def _names(p: Profile, ctx: Context) -> list[str]:
    return [g.name for g in fired(p, ctx) if g.pages]


def test_a_pod_is_never_its_own_yardstick_and_needs_enough_peers() -> None:
    lives = WorkloadLives()
    me = _pod("web-x", 10, 1)
    lives.learn(me)  # its own quiet early windows
    assert lives.peers(me) is None
    for i in range(PEERS_MIN - 1):
        lives.learn(_pod(f"web-{i}", 2, 4))
    assert lives.peers(me) is None  # not enough other lives yet
    lives.learn(_pod("web-9", 3, 2))
    peers = lives.peers(me)
    assert peers is not None and peers.pods == PEERS_MIN
    assert peers.total == {"distinct_objects_read": 3}
    assert peers.rate == {"distinct_objects_read": 1.5}  # 3 over 2 h, not its own 10
    lives.learn(_pod("web-8", 2, 0.01))  # 2 in its first 36 s: 12 an hour, not 200
    assert lives.peers(me).rate == {"distinct_objects_read": 12.0}
    # another workload's lives are not this one's, and bare pods keep none
    assert lives.peers(_pod("api-1", 50, 2, workload="Deployment/api")) is None
    lives.learn(_pod("debug", 500, 2, workload=""))
    assert all("debug" not in k for pods in lives.workloads.values() for k in pods)


@given(st.lists(st.tuples(st.integers(0, 40), st.floats(0, 1e4), st.floats(0, 48)), max_size=60))
def test_memory_is_bounded_and_survives_a_snapshot(rows) -> None:
    lives = WorkloadLives()
    for i, (pod, reads, hours) in enumerate(rows):
        lives.learn(_pod(f"web-{pod}", reads, hours, workload=f"Deployment/w{i % 3}"))
    assert all(len(pods) <= PODS_KEPT for pods in lives.workloads.values())
    back = WorkloadLives()
    back.load(msgspec.msgpack.decode(msgspec.msgpack.encode(lives.export()), type=LivesState))
    probe = _pod("probe", 1, 1, workload="Deployment/w0")
    assert back.peers(probe) == lives.peers(probe)


def _judged_by(peers_reads: list[tuple[float, float]]) -> Context:
    lives = WorkloadLives()
    for i, (reads, hours) in enumerate(peers_reads):
        lives.learn(_pod(f"web-{i}", reads, hours))
    peers = lives.peers(_pod("web-x", 0, 1))
    return Context(peers_of=lambda: peers)


def test_collection_spread_thin_over_a_life_pages() -> None:
    """attack-low-and-slow (tuning seed 16, 10 namespaces 6+6 h): a worker pod read a few
    objects of a sensitive bucket every 20-40 min for hours; its best window scored 0.29
    against its workload's 0.999. Its workload's other pods never read objects."""
    ctx = _judged_by([(0, 6), (0, 5), (0, 3)])
    slow = _pod("web-x", LIFE_READS_MIN + 4, 2)
    assert _names(slow, ctx) == ["reads-beyond-its-workload"]
    (guard,) = [g for g in fired(slow, ctx) if g.pages]
    assert guard.technique == "T1213" and guard.facts is not None
    (line,) = guard.facts(slow, ctx)
    assert "44 distinct objects read over its 2.0 h life" in line
    assert "3 other pods of its workload read at most 0" in line
    assert not _names(_pod("web-x", LIFE_READS_MIN - 1, 2), ctx)  # a fetch, not a sweep


def test_a_workload_that_reads_sets_its_own_yardstick() -> None:
    # an ETL CronJob's runs each read thousands of objects; a run reading as many is normal
    etl = _judged_by([(2500, 0.5), (300, 0.3), (1200, 0.4)])
    assert not _names(_pod("web-x", 2400, 0.5), etl)
    assert _names(_pod("web-x", LIFE_READS_FACTOR * 2500 + 1, 0.5), etl)
    # a replica that simply lived longer than the others, reading at their pace
    steady = _judged_by([(20, 1), (20, 1), (15, 1)])
    assert not _names(_pod("web-x", 400, 20), steady)
    # default mix seed 7: a JupyterHub hub pod read a repository object or two every few
    # windows for 7 h; its workload's other pods lived minutes and read 3 at most
    hub = _judged_by([(3, 1 / 3), (2, 0.25), (1, 0.1)])
    assert not _names(_pod("web-x", 130, 7.4), hub)


def test_only_a_mature_workload_judges_a_life() -> None:
    ctx = _judged_by([(0, 6), (0, 5), (0, 3)])
    slow = _pod("web-x", 100, 2)
    for other in (
        Context(peers_of=ctx.peers_of, workload_learning=True),
        Context(peers_of=ctx.peers_of, namespace_learning=True),
        Context(),
    ):
        assert not _names(slow, other)


def test_a_guards_facts_back_its_technique_when_the_window_read_nothing() -> None:
    """The collector's alert may come in a window with no reads of its own: the life line is
    what backs T1213 then, and no technique is named without a line behind it."""
    quiet = _pod("web-x", 0, 2)
    spec = load_spec()
    assert "T1213" not in techniques_for(quiet, [], spec, ["T1213"])
    life = ["44 distinct objects read over its 2.0 h life"]
    backed = techniques_for(quiet, [], spec, ["T1213"], {"T1213": life})
    assert backed["T1213"] == life


HUB = "system:serviceaccount:shop:jupyterhub"


def _server(name: str, t: float = 0.0, **values: float) -> Profile:
    """A window of a server the namespace's hub spawned (a bare pod: no controller)."""
    p = make_profile(pod=name, workload=None, t=t, values=values)
    return msgspec.structs.replace(p, created_by=HUB, creator_kind="service_account")


def test_a_spawned_servers_yardstick_is_the_other_servers_largest_window() -> None:
    lives = WorkloadLives()
    for i, reads in enumerate((12.0, 38.0, 20.0)):
        lives.learn(_server(f"jupyter-{i}", repo_reads=reads, distinct_objects_read=reads))
        lives.learn(_server(f"jupyter-{i}", t=300.0, archive_writes=1.0, archive_bytes=2e7))
    me = _server("jupyter-me", repo_reads=90.0)
    lives.learn(me)  # its own quiet windows never vouch for its later ones
    peers = lives.peers(me)
    assert peers is not None and peers.pods == 3
    assert peers.peak == {
        "archive_bytes": 2e7,
        "archive_writes": 1.0,
        "distinct_objects_read": 38.0,
        "repo_reads": 38.0,
    }
    assert lives.peers(_server("jupyter-0")).peak["repo_reads"] == 90.0  # the others' peak
    # a short life's last row is its whole story, not one window: not a peak
    whole = msgspec.structs.replace(
        _server("jupyter-9", repo_reads=500.0, lifetime_s=900.0), final=True
    )
    lives.learn(whole)
    assert lives.peers(me).peak["repo_reads"] == 38.0
    # a person's own bare pod has no spawner whose other pods could vouch for it
    person = msgspec.structs.replace(me, created_by="frank@corp.example", creator_kind="person")
    lives.learn(person)
    assert lives.peers(person) is None


def test_a_live_window_of_a_spawned_server_is_measured_against_its_peers() -> None:
    """Tuning seed 19: JupyterHub servers paged at the workload level for a window of 33-46
    parquet reads; the hub's other servers read up to 38 in one window."""
    scorer = Scorer(quick_settings(), load_spec())
    for i in range(PEERS_MIN):
        scorer.lives.learn(_server(f"jupyter-{i}", repo_reads=38.0, distinct_objects_read=38.0))
    reads = _server("jupyter-me", repo_reads=33.0, distinct_objects_read=33.0)
    yardstick = scorer._yardstick(reads, None)
    assert yardstick is not None and yardstick["repo_reads"] == 38.0
    alert = build_alert(reads, score=0.95, threshold=0.93, level="workload", baseline_key="k",
                        top=[], spec=load_spec(), model_version="t", rules=[],
                        rule_techniques=[])  # fmt: skip
    assert alert.techniques == ["T1213"]
    assert replica_routine(reads, alert, yardstick)
    more = _server("jupyter-me", repo_reads=60.0, distinct_objects_read=60.0)
    assert not replica_routine(more, alert, scorer._yardstick(more, None))
    # a controller's live replica has no such yardstick: its own baseline judges its last row
    assert scorer._yardstick(make_profile(values={"repo_reads": 1.0}), None) is None


def _lived(p: Profile, reads: float) -> Profile:
    """``p`` with ``reads`` objects read over a life begun 10 min before its window."""
    life = {"distinct_objects_read": reads}
    return msgspec.structs.replace(p, life_reads=life, first_seen=p.window_start - 600.0)


def test_only_a_controllers_replicas_are_judged_over_their_lives() -> None:
    """People's servers read as their people do: a server reading far more over its life
    than the hub's other servers did is judged window by window, not by the life guard
    (tuning seed 14: a server 49 reads into its first 10 min paged once kept)."""
    replica = lambda name, t: make_profile(pod=name, t=t, values={"distinct_objects_read": 2.0})  # noqa: E731
    server = lambda name, t: _server(name, t, distinct_objects_read=2.0)  # noqa: E731
    fired_for = {}
    for kind, make in (("replica", replica), ("server", server)):
        scorer = Scorer(quick_settings(), load_spec())
        for k in range(5):  # quiet lives of a few reads: a mature workload baseline
            scorer.score([_lived(make(f"p-{k}", 300.0 * j), 2.0 * (j + 1)) for j in range(8)])
        (scored,) = scorer.score([_lived(make("p-x", 3000.0), 400.0)])
        fired_for[kind] = scored.alert is not None and (
            "reads-beyond-its-workload" in scored.alert.rules
        )
    assert fired_for == {"replica": True, "server": False}


RS = "system:serviceaccount:kube-system:replicaset-controller"


def _replica(name: str, t: float = 0.0, first: float | None = None, **values: float) -> Profile:
    """A window of a Deployment's replica its ReplicaSet created at ``first`` (default: ``t``,
    so the window is its start-up window)."""
    p = make_profile(pod=name, workload="Deployment/config-reloader", t=t, values=values)
    return msgspec.structs.replace(
        p, created_by=RS, creator_kind="controller", first_seen=t if first is None else first
    )


def _t1213(p: Profile) -> Alert:
    return build_alert(p, score=0.95, threshold=0.93, level="workload", baseline_key="k",
                       top=[], spec=load_spec(), model_version="t", rules=[],
                       rule_techniques=[])  # fmt: skip


START_UP = {"secret_reads": 1.0, "distinct_objects_read": 2.0, "api_read": 1.0}


def test_a_replicas_start_up_is_measured_against_its_workloads_earlier_start_ups() -> None:
    """Tuning seed 35: config-reloader's third pod read at start the 1 secret and 2 objects
    its second pod had read at its start (a one-replica Deployment: one start-up window
    among hundreds of quiet ones) and paged at the workload level, 0.948 over 0.933."""
    scorer = Scorer(quick_settings(), load_spec())
    me = _replica("cr-3", t=9000.0, **START_UP)
    assert scorer._yardstick(me, None) is None  # no earlier start-up seen: it pages
    scorer.lives.learn(me)  # its own start-up never vouches for itself
    assert scorer._yardstick(me, None) is None
    scorer.lives.learn(_replica("cr-2", **START_UP))
    scorer.lives.learn(_replica("cr-2", t=300.0, first=0.0, api_read=4.0))  # later: not start-up
    yardstick = scorer._yardstick(me, None)
    assert yardstick == {"secret_reads": 1.0, "distinct_objects_read": 2.0}  # T1213's facts
    alert = _t1213(me)
    assert alert.techniques == ["T1213"]
    assert replica_routine(me, alert, yardstick)
    # more secrets than any earlier pod read as it started: a collecting rollout still pages
    sweep = _replica("cr-4", t=9000.0, **{**START_UP, "secret_reads": 15.0})
    assert not replica_routine(sweep, _t1213(sweep), scorer._yardstick(sweep, None))
    # a new destination, or a stranger acting on it, still pages
    called = _replica("cr-4", t=9000.0, new_destinations=1.0, **START_UP)
    assert not replica_routine(called, _t1213(called), scorer._yardstick(called, None))
    odd = msgspec.structs.replace(me, strangers=["mallory@evil.example"])
    assert not replica_routine(odd, alert, scorer._yardstick(odd, None))
    # an archive at start pages, though the earlier pod archived at its start too: a start-up
    # vouches only for reads (a learning period may have taught the workload to ship)
    scorer.lives.learn(_replica("cr-5", archive_writes=1.0, archive_bytes=2e7, **START_UP))
    assert scorer._yardstick(me, None) == {"secret_reads": 1.0, "distinct_objects_read": 2.0}
    ships = _replica("cr-6", t=9000.0, archive_writes=1.0, archive_bytes=2e7)
    assert "T1560.002" in _t1213(ships).techniques
    assert not replica_routine(ships, _t1213(ships), scorer._yardstick(ships, None))
    # a later window of its life is not a start-up: the earlier start-ups do not vouch
    later = _replica("cr-3", t=9300.0, first=9000.0, **START_UP)
    assert scorer._yardstick(later, None) is None


def test_only_a_seen_quiet_start_up_is_remembered() -> None:
    lives = WorkloadLives()
    # a pod running before the telemetry began: its first window is not its start
    unseen = msgspec.structs.replace(_replica("cr-0", **START_UP), created_by=None)
    lives.learn(unseen)
    me = _replica("cr-9", t=9000.0, **START_UP)
    assert lives.start_up(me) is None
    # a short life's whole story is not a window
    whole = msgspec.structs.replace(
        _replica("cr-1", lifetime_s=60.0, **START_UP), final=True, end_reason="deleted"
    )
    lives.learn(whole)
    assert lives.start_up(me) is None
    lives.learn(_replica("cr-2"))  # a start-up that read nothing is a yardstick of nothing
    assert lives.start_up(me) == {}


READS = ("secret_reads", "distinct_objects_read", "repo_reads")  # the facts behind T1213


@given(
    before=st.fixed_dictionaries({f: st.integers(0, 20) for f in READS}),
    now=st.fixed_dictionaries({f: st.integers(0, 20) for f in READS}),
)
def test_a_start_up_passes_only_within_the_earlier_start_ups(
    before: dict[str, int], now: dict[str, int]
) -> None:
    scorer = Scorer(quick_settings(), load_spec())
    scorer.lives.learn(_replica("cr-1", **{k: float(v) for k, v in before.items()}))
    me = _replica("cr-2", t=9000.0, **{k: float(v) for k, v in now.items()})
    alert = _t1213(me)
    within = all(now[f] <= before[f] for f in READS)
    if "T1213" in alert.techniques and set(alert.techniques) == {"T1213"}:
        assert replica_routine(me, alert, scorer._yardstick(me, None)) == within
