"""Network flows -> NET_FLOW about the sending pod: Cilium Hubble and the generic flow record.

Hubble knows endpoints (namespace, pod, labels) but no byte counts, so it feeds connection
counts, destinations and beacon timing; the generic record (``../shared/DESIGN.md``) adds bytes
for the egress-volume features. Only the initiating direction counts: Hubble replies are ignored,
as are flows whose source is not a pod (host, world, the API server).
A generic record whose source is only a private address is attributed later by that
address to the pod or instance the records bound it to.
"""

from __future__ import annotations

from churnguard.ingest.common import (
    AdapterContext,
    byte_count,
    first_time,
    get,
    opt_dict,
    opt_list,
    opt_str,
    parse_time,
    port,
    strip_runtime_prefix,
    workload_ref,
)
from churnguard.ingest.events import (  # the members, read without the enum hook
    NET_FLOW_EVENT,
    Event,
    Ignored,
)
from churnguard.ingest.exceptions import missing

FORMAT = "flow"
_L4_PROTOCOLS = ("TCP", "UDP", "SCTP")
_IN_CLUSTER_SUFFIXES = (".cluster.local", ".svc", ".local", ".internal")


def adapt(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    """One flow record (Hubble or generic) -> one NET_FLOW, or why it is not counted."""
    if "src" in obj or "dst" in obj:
        return _generic(obj, ctx)
    return _hubble(obj, ctx)


def _hubble(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    flow = opt_dict(obj.get("flow"), "flow") or obj
    time = first_time([(flow.get("time"), "flow.time"), (obj.get("time"), "time")], "time")
    src = opt_dict(flow.get("source"), "flow.source") or {}
    namespace = opt_str(src.get("namespace"), "flow.source.namespace")
    pod = opt_str(src.get("pod_name"), "flow.source.pod_name")
    if namespace is None or pod is None:
        return Ignored(format=FORMAT, reason="no_pod_on_source")
    if flow.get("is_reply") is True or flow.get("reply") is True:
        return Ignored(format=FORMAT, reason="reply")
    dst = opt_dict(flow.get("destination"), "flow.destination") or {}
    dst_ip = opt_str(get(flow, "IP", "destination"), "flow.IP.destination")
    names = opt_list(flow.get("destination_names"), "flow.destination_names")
    workloads = opt_list(src.get("workloads"), "flow.source.workloads")
    first_wl = workloads[0] if workloads and isinstance(workloads[0], dict) else {}
    return [
        Event(
            time=time,
            kind=NET_FLOW_EVENT,
            format=FORMAT,
            namespace=namespace,
            pod=pod,
            pod_ip=opt_str(get(flow, "IP", "source"), "flow.IP.source"),
            workload=workload_ref(first_wl.get("kind"), first_wl.get("name")),
            node=opt_str(flow.get("node_name") or obj.get("node_name"), "node_name"),
            dst_ip=dst_ip,
            dst_port=_l4_port(flow),
            dst_fqdn=opt_str(names[0], "flow.destination_names[0]") if names else None,
            dst_external=_hubble_external(dst, dst_ip, ctx),
            detail=opt_str(flow.get("verdict"), "flow.verdict"),
        )
    ]


def _l4_port(flow: dict) -> int | None:
    l4 = opt_dict(flow.get("l4"), "flow.l4") or {}
    for proto in _L4_PROTOCOLS:
        if isinstance(l4.get(proto), dict):
            return port(l4[proto].get("destination_port"), f"flow.l4.{proto}.destination_port")
    return None


def _hubble_external(dst: dict, dst_ip: str | None, ctx: AdapterContext) -> bool | None:
    if dst.get("namespace"):
        return False
    labels = dst.get("labels")
    if isinstance(labels, list) and "reserved:world" in labels:
        return True
    return ctx.is_external(dst_ip)


def _generic(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    """``{"time", "src": {...}, "dst": {...}, "protocol", "bytes_out", "bytes_in"}``."""
    time = parse_time(obj.get("time"), "time")  # absent: missing_field "time", as first_time says
    src = opt_dict(obj.get("src"), "src")
    dst = opt_dict(obj.get("dst"), "dst")
    if src is None:
        raise missing("src")
    if dst is None:
        raise missing("dst")
    namespace = opt_str(src.get("namespace"), "src.namespace")
    pod = opt_str(src.get("pod"), "src.pod")
    container_id = strip_runtime_prefix(opt_str(src.get("container_id"), "src.container_id"))
    src_ip = opt_str(src.get("ip"), "src.ip")
    # with only an address, the entity table attributes it to whichever pod or instance the
    # records bound that address to (an instance's private IP from RunInstances)
    if (
        (namespace is None or pod is None)
        and container_id is None
        and not ctx.is_internal_address(src_ip)
    ):
        return Ignored(format=FORMAT, reason="no_pod_on_source")
    dst_ip = opt_str(dst.get("ip"), "dst.ip")
    fqdn = opt_str(dst.get("fqdn"), "dst.fqdn")
    dst_ns = opt_str(dst.get("namespace"), "dst.namespace")
    if dst_ip is None and fqdn is None:
        raise missing("dst.ip|dst.fqdn")
    return [
        Event(
            time=time,
            kind=NET_FLOW_EVENT,
            format=FORMAT,
            namespace=namespace,
            pod=pod,
            container_id=container_id,
            pod_ip=src_ip,
            node=opt_str(src.get("node"), "src.node"),
            dst_ip=dst_ip,
            dst_port=port(dst.get("port"), "dst.port"),
            dst_fqdn=fqdn,
            dst_external=_generic_external(dst_ns, dst_ip, fqdn, ctx),
            bytes_out=byte_count(obj.get("bytes_out"), "bytes_out"),
            bytes_in=byte_count(obj.get("bytes_in"), "bytes_in"),
            detail=opt_str(obj.get("protocol"), "protocol"),
        )
    ]


def _generic_external(
    dst_ns: str | None, dst_ip: str | None, fqdn: str | None, ctx: AdapterContext
) -> bool | None:
    """In-cluster when the destination is a pod; else by address, else by name."""
    if dst_ns is not None:
        return False
    by_ip = ctx.is_external(dst_ip)
    if by_ip is not None:
        return by_ip
    if fqdn is not None:
        return not fqdn.rstrip(".").endswith(_IN_CLUSTER_SUFFIXES)
    return None
