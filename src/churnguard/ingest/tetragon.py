"""Cilium Tetragon JSON export -> process execs/exits, file writes and connections in pods.

Every Tetragon event carries the process with its Kubernetes pod (namespace, name,
container, image, labels, workload). A process with a container id (``process.docker``)
but no pod runs in a container the orchestrator never saw: its events are about that
container (node + container id). A host process whose parent is in a pod left its
container's namespaces and stays that pod's; other host processes are ignored.

kprobe events are only as meaningful as the tracing policy behind them: the file hooks
become FILE_WRITE (``security_file_permission`` only with the MAY_WRITE bit),
``tcp_connect``/``tcp_sendmsg`` become NET_FLOW, other hooks are ignored by name.

The socket events of Tetragon's network observability are flows of the process's
container: ``process_connect`` is a new connection to its destination,
``process_close`` reports the connection's byte totals (``stats``) without counting it
again, ``process_listen`` a listening socket. The other event types (throttling, rate
limit reports, USDT, tracepoints, ...) are recognised and counted by name.
"""

from __future__ import annotations

from typing import Any

from churnguard.ingest.common import (
    AdapterContext,
    byte_count,
    first_time,
    get,
    opt_dict,
    opt_int,
    opt_list,
    opt_str,
    port,
    str_map,
    strip_runtime_prefix,
    workload_ref,
)
from churnguard.ingest.events import (  # the members, read without the enum hook
    FILE_WRITE_EVENT,
    NET_FLOW_EVENT,
    PROCESS_EXEC_EVENT,
    PROCESS_EXIT_EVENT,
    Event,
    Ignored,
)
from churnguard.ingest.exceptions import missing

FORMAT = "tetragon"
SOCKET_KEYS = ("process_connect", "process_close", "process_listen")
EVENT_KEYS = ("process_exec", "process_exit", "process_kprobe", *SOCKET_KEYS)
# Other Tetragon event types: recognised (so they are counted, not dead-lettered) but unused.
OTHER_EVENT_KEYS = (
    "process_tracepoint",
    "process_uprobe",
    "process_usdt",
    "process_lsm",
    "process_loader",
    "process_throttle",
    "rate_limit_info",
    "process_accept",
    "process_sendmsg",
    "process_recvmsg",
)
_FILE_HOOKS = frozenset(
    {
        "security_file_permission",
        "fd_install",
        "security_file_open",
        "__x64_sys_write",
        "sys_write",
        "vfs_write",
    }
)
_NET_HOOKS = frozenset({"tcp_connect", "tcp_sendmsg"})
_MAY_WRITE = 2


# Whose a process is (see :func:`_subject`), in the order :func:`_stamp` sets the fields:
# namespace, pod, container id, container, image, labels, workload.
_Subject = tuple[str | None, str | None, str | None, str | None, str | None, Any, str | None]


def adapt(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    """One Tetragon export line -> at most one event about the pod the process runs in."""
    for key in EVENT_KEYS:  # a loop, not next() over a generator: this runs for every line
        if key in obj:
            break
    else:
        for other in OTHER_EVENT_KEYS:
            if other in obj:
                return Ignored(format=FORMAT, reason=f"event:{other}")
        raise missing("|".join(EVENT_KEYS))
    body = opt_dict(obj.get(key), key) or {}
    process = opt_dict(body.get("process"), f"{key}.process")
    if process is None:
        raise missing(f"{key}.process")
    time = first_time(
        [(obj.get("time"), "time"), (process.get("start_time"), "process.start_time")], "time"
    )
    subject = _subject(process, opt_dict(body.get("parent"), f"{key}.parent") or {})
    if subject is None:
        return Ignored(format=FORMAT, reason="host_process")
    node = opt_str(obj.get("node_name"), "node_name")
    binary = opt_str(process.get("binary"), "process.binary")
    if key == "process_exec":
        args = opt_str(process.get("arguments"), "process.arguments")
        events = [Event(time=time, kind=PROCESS_EXEC_EVENT, format=FORMAT, args=args)]
    elif key == "process_exit":
        events = [Event(time=time, kind=PROCESS_EXIT_EVENT, format=FORMAT)]
    elif key in SOCKET_KEYS:
        events = [_socket(key, body, time, ctx)]
    else:
        kprobe = _kprobe(body, time, ctx)
        if isinstance(kprobe, Ignored):
            return kprobe
        events = [kprobe]
    _stamp(events[0], subject, node, binary)
    return events


def _stamp(event: Event, subject: _Subject, node: str | None, binary: str | None) -> None:
    """The fields every event of a line shares: whose process, on which node, which binary.

    Set on the event built with its own fields: cheaper than a dict of them spread into
    ``Event(**...)``, which takes msgspec's slow keyword path."""
    (
        event.namespace,
        event.pod,
        event.container_id,
        event.container,
        event.image,
        event.labels,
        event.workload,
    ) = subject
    event.node = node
    event.binary = binary


def _socket(key: str, body: dict, time: float, ctx: AdapterContext) -> Event:
    """A socket event -> NET_FLOW of the process's container (see the module docstring)."""
    protocol = opt_str(body.get("protocol"), f"{key}.protocol")
    if key == "process_listen":
        ip = opt_str(body.get("ip"), f"{key}.ip")
        listen = port(body.get("port"), f"{key}.port")
        return Event(
            time=time,
            kind=NET_FLOW_EVENT,
            format=FORMAT,
            opens_connection=False,
            detail=f"listen {ip or '*'}:{listen} {protocol or ''}".strip(),
        )
    src_ip = opt_str(body.get("source_ip"), f"{key}.source_ip")
    dst_ip = opt_str(body.get("destination_ip"), f"{key}.destination_ip")
    if dst_ip is None:
        raise missing(f"{key}.destination_ip")
    stats = opt_dict(body.get("stats"), f"{key}.stats") or {}
    closing = key == "process_close"
    return Event(
        time=time,
        kind=NET_FLOW_EVENT,
        format=FORMAT,
        dst_ip=dst_ip,
        dst_port=port(body.get("destination_port"), f"{key}.destination_port"),
        dst_external=ctx.is_external(dst_ip),
        pod_ip=src_ip if ctx.is_internal_address(src_ip) else None,
        bytes_out=byte_count(stats.get("bytes_sent"), f"{key}.stats.bytes_sent"),
        bytes_in=byte_count(stats.get("bytes_received"), f"{key}.stats.bytes_received"),
        opens_connection=not closing,
        detail=f"{'close' if closing else 'connect'} {protocol or ''}".strip(),
    )


def _subject(process: dict, parent: dict) -> _Subject | None:
    """Whose the process is: its pod; else the container it runs in (no pod: a container the
    orchestrator never saw); else its parent's pod or container (a process that left its
    container's namespaces, e.g. after ``nsenter``, stays the container's); else None (the
    host)."""
    for obj, name in ((process, "process"), (parent, "parent")):
        pod = opt_dict(obj.get("pod"), f"{name}.pod")
        if pod:
            return _pod_fields(pod)
        container_id = opt_str(obj.get("docker"), f"{name}.docker")
        if container_id is not None:
            return (None, None, strip_runtime_prefix(container_id), None, None, None, None)
    return None


def _pod_fields(pod: dict) -> _Subject:
    container = opt_dict(pod.get("container"), "process.pod.container") or {}
    return (
        opt_str(pod.get("namespace"), "process.pod.namespace"),
        opt_str(pod.get("name"), "process.pod.name"),
        strip_runtime_prefix(opt_str(container.get("id"), "process.pod.container.id")),
        opt_str(container.get("name"), "process.pod.container.name"),
        opt_str(get(container, "image", "name"), "process.pod.container.image.name"),
        str_map(pod.get("pod_labels"), "process.pod.pod_labels"),
        _workload(pod),
    )


def _workload(pod: dict) -> str | None:
    name = opt_str(pod.get("workload"), "process.pod.workload")
    kind = opt_str(pod.get("workload_kind"), "process.pod.workload_kind")
    return workload_ref(kind, name) or name


def _kprobe(body: dict, time: float, ctx: AdapterContext) -> Event | Ignored:
    fn = opt_str(body.get("function_name"), "process_kprobe.function_name") or "unknown"
    args = _Args(opt_list(body.get("args"), "process_kprobe.args"))
    if fn in _FILE_HOOKS and args.path is not None:
        if fn == "security_file_permission" and not (args.int_value or 0) & _MAY_WRITE:
            return Ignored(format=FORMAT, reason=f"kprobe:{fn}:read")
        return Event(
            time=time,
            kind=FILE_WRITE_EVENT,
            format=FORMAT,
            file_path=args.path,
            bytes_written=byte_count(args.size, "size_arg"),
        )
    if fn in _NET_HOOKS and args.sock is not None:
        sock = args.sock
        dst_ip = opt_str(sock.get("daddr"), "sock_arg.daddr")
        src_ip = opt_str(sock.get("saddr"), "sock_arg.saddr")
        return Event(
            time=time,
            kind=NET_FLOW_EVENT,
            format=FORMAT,
            dst_ip=dst_ip,
            dst_port=port(sock.get("dport"), "sock_arg.dport"),
            dst_external=ctx.is_external(dst_ip),
            pod_ip=src_ip if ctx.is_internal_address(src_ip) else None,
            bytes_out=byte_count(args.size, "size_arg") if fn == "tcp_sendmsg" else 0,
            detail=fn,
        )
    return Ignored(format=FORMAT, reason=f"kprobe:{fn}")


class _Args:
    """The typed kprobe arguments we use: the first of each kind."""

    __slots__ = ("int_value", "path", "size", "sock")

    def __init__(self, args: list) -> None:
        self.path: str | None = None
        self.size: int | None = None
        self.int_value: int | None = None
        self.sock: dict | None = None
        for arg in args:
            if not isinstance(arg, dict):
                continue
            for key in ("file_arg", "path_arg"):
                if self.path is None and key in arg:
                    self.path = opt_str(get(arg, key, "path"), f"{key}.path")
            if self.size is None and "size_arg" in arg:
                self.size = opt_int(arg["size_arg"], "size_arg")
            if self.int_value is None and "int_arg" in arg:
                self.int_value = opt_int(arg["int_arg"], "int_arg")
            if self.sock is None and "sock_arg" in arg:
                self.sock = opt_dict(arg["sock_arg"], "sock_arg")
