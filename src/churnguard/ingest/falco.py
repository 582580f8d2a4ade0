"""Falco JSON output -> process execs, file writes and other runtime alerts in containers.

Falco fires rules, not raw syscalls, so the mapping reads both the rule and the fields it
printed: a spawned process (``execve`` or a shell/process rule with ``proc.*`` fields)
becomes PROCESS_EXEC, a file opened for writing becomes FILE_WRITE, anything else stays a
RUNTIME_ALERT carrying the rule name. Falco prints ``<NA>`` or null for fields it could
not resolve (no Kubernetes metadata, unknown parent); those are simply absent here. A
container with no pod name (Falco reads it from the kubelet's container labels) is one
the orchestrator never started: the entity table keeps it as a container of its node
(``hostname``) unless another record ties that container id to a pod.
"""

from __future__ import annotations

from typing import Any

from churnguard.ingest.common import (
    AdapterContext,
    byte_count,
    first_time,
    opt_dict,
    opt_str,
    req_str,
)
from churnguard.ingest.events import (  # the members, read without the enum hook
    FILE_WRITE_EVENT,
    PROCESS_EXEC_EVENT,
    RUNTIME_ALERT_EVENT,
    Event,
    Ignored,
)

FORMAT = "falco"
_EXEC_TYPES = frozenset({"execve", "execveat"})
_OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat"})
_WRITE_TYPES = frozenset({"write", "pwrite", "pwrite64", "writev", "pwritev"})
_EXEC_RULE_WORDS = ("shell", "spawn", "process", "exec", "launch", "run ", "binary", "netcat")
_WRITE_RULE_WORDS = ("write", "creat", "modif", "archive")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def adapt(obj: dict, ctx: AdapterContext) -> list[Event] | Ignored:
    """One Falco alert -> one event about the container it fired in."""
    rule = req_str(obj.get("rule"), "rule")
    fields = opt_dict(obj.get("output_fields"), "output_fields") or {}
    time = first_time(
        [(obj.get("time"), "time"), (fields.get("evt.time"), "output_fields.evt.time")], "time"
    )
    container_id = _field(fields, "container.id")
    if container_id is None:
        return Ignored(format=FORMAT, reason="no_container")
    if container_id == "host":
        return Ignored(format=FORMAT, reason="host_event")

    base: dict[str, Any] = {
        "time": time,
        "format": FORMAT,
        "container_id": container_id,
        "node": opt_str(obj.get("hostname"), "hostname"),
        "namespace": _field(fields, "k8s.ns.name"),
        "pod": _field(fields, "k8s.pod.name"),
        "pod_ip": _field(fields, "k8s.pod.ip"),
        "container": _field(fields, "container.name"),
        "image": _field(fields, "container.image.repository"),
        "detail": rule,
    }
    evt_type = _field(fields, "evt.type")
    rule_l = rule.lower()
    proc_name = _field(fields, "proc.name")
    cmdline = _field(fields, "proc.cmdline")
    if (proc_name or cmdline) and (
        evt_type in _EXEC_TYPES or any(w in rule_l for w in _EXEC_RULE_WORDS)
    ):
        return [
            Event(
                kind=PROCESS_EXEC_EVENT,
                binary=_field(fields, "proc.exepath") or proc_name,
                args=cmdline,
                **base,
            )
        ]
    fd_name = _field(fields, "fd.name")
    if fd_name is not None and _is_write(fields, evt_type, rule_l):
        return [
            Event(
                kind=FILE_WRITE_EVENT,
                file_path=fd_name,
                binary=_field(fields, "proc.exepath") or proc_name,
                bytes_written=_written(fields, evt_type),
                **base,
            )
        ]
    return [Event(kind=RUNTIME_ALERT_EVENT, binary=proc_name, **base)]


def _field(fields: dict, name: str) -> str | None:
    """A printed field as a string; ``<NA>`` and null are absent, numbers are stringified."""
    value = fields.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    s = opt_str(value, f"output_fields.{name}")
    return None if s == "<NA>" else s


def _is_write(fields: dict, evt_type: str | None, rule_l: str) -> bool:
    """A write syscall, an open with write flags, or a rule that is about writing."""
    if evt_type in _WRITE_TYPES:
        return True
    flags = _field(fields, "evt.arg.flags") or ""
    if evt_type in _OPEN_TYPES and any(f in flags for f in _WRITE_FLAGS):
        return True
    return any(w in rule_l for w in _WRITE_RULE_WORDS)


def _written(fields: dict, evt_type: str | None) -> int:
    """Bytes written by a write syscall (its positive result, else its size argument)."""
    if evt_type not in _WRITE_TYPES:
        return 0
    for name in ("evt.rawres", "evt.arg.size"):
        value = fields.get(name)
        if isinstance(value, int | str) and not isinstance(value, bool):
            try:
                n = int(value)
            except ValueError:
                continue
            if n > 0:
                return byte_count(n, f"output_fields.{name}")
    return 0
