"""The route stage's scope rule and bindings table, without a broker."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import msgspec
import orjson
from hypothesis import given
from hypothesis import strategies as st

from churnguard.ingest import parse_record
from churnguard.ingest.events import Event, EventKind
from churnguard.profiling.features import NetworkClassifier
from churnguard.service.bindings import (
    INSTANCES,
    UNATTRIBUTED,
    Binding,
    BindingTable,
    Scope,
    bindings_of,
    contacts_of,
    other_shards,
    scope_of,
    shard_of,
)
from churnguard.service.route import CONTACT_HEADER, ORIGIN_HEADER, SOURCE_HEADER, read_routed

T = 1_700_000_000.0


def _call_from(ip: str, t: float = T) -> Event:
    return Event(
        time=t, kind=EventKind.CLOUD_CALL, format="cloudtrail", pod_ip=ip, verb="GetObject"
    )


def test_a_call_known_only_by_its_pod_ip_waits_for_the_binding_then_goes_to_the_namespace():
    table = BindingTable()
    assert scope_of([_call_from("10.1.0.7")], table).key is None
    status = Event(time=T - 5, kind=EventKind.POD_IP, format="k8s_audit", namespace="shop",
                   pod="web-1", pod_ip="10.1.0.7")  # fmt: skip
    for b in bindings_of([status]):
        assert table.add(b)
    scope = scope_of([_call_from("10.1.0.7")], table)
    # routed once every input has passed the call by the binding lag: a later owner of a
    # reused address could still be read
    assert (scope.key, scope.final) == ("shop", False)


def test_an_address_reused_later_routes_by_its_owner_at_event_time():
    table = BindingTable()
    table.add(Binding("ip", "10.1.0.7", T, "shop"))
    table.add(Binding("ip", "10.1.0.7", T + 600, "ci"))
    assert scope_of([_call_from("10.1.0.7", T + 10)], table).key == "shop"
    assert scope_of([_call_from("10.1.0.7", T + 700)], table).key == "ci"
    assert not table.add(Binding("ip", "10.1.0.7", T + 800, "ci"))  # a restatement


def test_instances_have_their_own_scope_and_their_addresses_bind_to_it():
    run = Event(time=T, kind=EventKind.INSTANCE_RUN, format="cloudtrail", instance_id="i-1",
                pod_ip="10.9.0.4")  # fmt: skip
    table = BindingTable()
    for b in bindings_of([run]):
        table.add(b)
    assert scope_of([run], table).key == INSTANCES
    assert scope_of([_call_from("10.9.0.4", T + 60)], table).key == INSTANCES


def test_a_container_outside_the_orchestrator_goes_with_the_pod_that_launched_it():
    launch = Event(time=T, kind=EventKind.PROCESS_EXEC, format="tetragon", namespace="dev",
                   pod="debug", node="n1", binary="/usr/bin/docker", args="run -d x")  # fmt: skip
    child = Event(time=T + 30, kind=EventKind.PROCESS_EXEC, format="falco", node="n1",
                  container_id="abcdef123456")  # fmt: skip
    table = BindingTable()
    tentative = scope_of([child], table)
    assert (tentative.key, tentative.final) == ("~node/n1", False)
    for b in bindings_of([launch]):
        table.add(b)
    assert scope_of([child], table).key == "dev"
    assert scope_of([], table).key == UNATTRIBUTED


def test_every_real_sample_gets_a_scope_or_waits_and_never_raises(real_data: Path):
    table, records = BindingTable(), 0
    for path in sorted(real_data.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            events = parse_record(line).events
            for b in bindings_of(events):
                table.add(b)
            scope = scope_of(events, table)
            assert scope.key is not None or not scope.final
            for ev in events:
                if ev.namespace and ev.pod and ev.kind is not EventKind.CLOUD_CALL:
                    assert scope_of([ev], table).key == ev.namespace
            records += 1
    assert records > 100


def _record(headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    """What read_routed reads of a kafka-python ConsumerRecord."""
    return SimpleNamespace(topic="rp", partition=3, offset=42, value=b"{}", headers=headers)


@given(st.dictionaries(st.sampled_from([SOURCE_HEADER, ORIGIN_HEADER, "churnguard-progress",
                                        "churnguard-idle", CONTACT_HEADER, "x"]),
                       st.binary(max_size=24)), st.binary(max_size=40))  # fmt: skip
def test_read_routed_takes_any_headers_without_raising(headers: dict[str, bytes], value: bytes):
    rec = _record(list(headers.items()))
    rec.value = value
    routed = read_routed(rec, {"audit": "k8s_audit"})
    assert routed.origin.source
    assert routed.progress is None or routed.progress == routed.progress  # never NaN


def test_read_routed_gives_original_coordinates_and_markers():
    rec = _record([(SOURCE_HEADER, b"audit"), (ORIGIN_HEADER, b"2:17")])
    routed = read_routed(rec, {"audit": "k8s_audit"})
    assert (routed.origin.source, routed.origin.partition, routed.origin.offset) == ("audit", 2, 17)
    assert routed.pinned == "k8s_audit" and not routed.marker
    marker = read_routed(_record([(SOURCE_HEADER, b"audit"), (ORIGIN_HEADER, b"2:"),
                                  ("churnguard-progress", repr(T).encode()),
                                  ("churnguard-idle", b"1")]), {})  # fmt: skip
    assert marker.marker and marker.idle and marker.progress == T and marker.input == "audit[2]"
    foreign = read_routed(_record([]), {})
    assert (foreign.origin.source, foreign.origin.offset) == ("rp", 42)
    assert orjson.loads(rec.value) == {}
    fact = _record([(SOURCE_HEADER, b"flows"), (ORIGIN_HEADER, b"1:"), (CONTACT_HEADER, b"1")])
    fact.value = msgspec.msgpack.encode(("ghcr.io", "ci-data", T))
    got = read_routed(fact, {})
    assert got.fact and got.contact == ("ghcr.io", "ci-data", T)
    fact.value = b"not msgpack"
    assert read_routed(fact, {}).fact and read_routed(fact, {}).contact is None


def test_a_namespaces_external_contacts_go_to_every_other_shard():
    """Campaign memory's shared hosts span shards: a record's external destinations, by
    their earliest time, told to the shards that do not own its namespace."""

    def flow(t: float, dst_ip: str, fqdn: str | None = None) -> Event:
        return Event(time=t, kind=EventKind.NET_FLOW, format="flow", pod_ip="10.0.0.5",
                     dst_ip=dst_ip, dst_fqdn=fqdn, bytes_out=10)  # fmt: skip

    events = [flow(T + 5, "140.82.112.3", "ghcr.io"), flow(T, "140.82.112.3", "ghcr.io"),
              flow(T, "10.0.3.4"), flow(T, "52.1.2.3")]  # fmt: skip
    network = NetworkClassifier(["10.0.0.0/8"])
    assert contacts_of(events, "ci-data", network) == {"ghcr.io": T, "52.1.2.3": T}
    assert contacts_of(events, INSTANCES, network) == {}  # campaigns are per namespace
    assert other_shards("ci-data", 1) == []  # one shard: nothing to tell
    others = other_shards("ci-data", 4)
    assert sorted([*others, shard_of("ci-data", 4)]) == [0, 1, 2, 3]


def test_a_record_waits_for_every_input_whichever_router_reads_it():
    """The frontier spans the inputs of every router (shared as progress entries), so how
    the inputs are spread over routers does not change when a waiting record goes."""
    table, inputs = BindingTable(), ["audit[0]", "audit[1]", "flows[0]"]
    assert table.frontier(inputs) == float("-inf")  # an input nobody has reported yet
    table.note_progress("audit[0]", T + 100, False)  # this router's own input
    shared = Binding("progress", "audit[1]", T + 40, "")  # another router's, from the topic
    assert table.add(shared) and not table.add(shared)
    assert table.frontier(inputs) == float("-inf")
    table.add(Binding("progress", "flows[0]", T + 10, "idle"))  # read to its end: no hold
    assert table.frontier(inputs) == T + 40
    assert shared.key() == b"progress/audit[1]"  # compacted to the latest per input
    assert table.frontier([]) == float("inf")


def test_a_record_with_one_unknown_address_goes_with_the_event_that_has_an_owner():
    """A flow between a pod and an address nobody owns (the internet) is routed by the pod
    once the router has waited, not sent to the fallback scope for its other end."""
    table = BindingTable()
    table.add(Binding("ip", "10.1.0.7", T - 5, "shop"))
    scope = scope_of([_call_from("203.0.113.9"), _call_from("10.1.0.7")], table)
    assert (scope.key, scope.final) == ("shop", False)
    assert scope_of([_call_from("203.0.113.9")], table) == Scope(None, False)
