"""Typed loading of TOML documents (the config, the feature spec) refused in one line.

msgspec checks types, ``Literal`` values and ``Meta`` ranges; its message names the path in
its own notation and neither the value nor what would have been accepted. :func:`convert`
turns that into ``<source>: <key.path> = <value> is not allowed; allowed: <values>``, with
the allowed values read from the type itself, so the rule is written once, in the type.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from churnguard.errors import ConfigError

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[(\.\.\.)\]")
_UNKNOWN = re.compile(r"unknown field `(?P<key>[^`]*)`")
_MISSING = re.compile(r"missing required field `(?P<key>[^`]*)`")
_MISSING_VALUE = object()

T = TypeVar("T")


def convert(data: Any, type_: type[T], source: str) -> T:
    """``msgspec.convert`` that raises :class:`ConfigError` with one readable line."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {refusal(exc, data, type_)}") from None


def refusal(exc: msgspec.ValidationError, data: Any, type_: Any) -> str:
    """The key path, the bad value and the allowed values of a validation error."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches every string
    keys = _name_tables(_steps(match["path"] or ""), data, type_)
    reason = match["reason"]
    unknown = _UNKNOWN.search(reason)
    missing = _MISSING.search(reason)
    if unknown or missing:
        key = (unknown or missing)["key"]  # type: ignore[index]
        if missing:
            return f"required key {_dotted([*keys, key])} is missing"
        known = ", ".join(_field_names(_type_at(mi.type_info(type_), keys))) or "none"
        return f"unknown key {_dotted([*keys, key])}; allowed keys: {known}"
    value = _value_at(data, keys)
    allowed = describe(_type_at(mi.type_info(type_), keys))
    shown = "(missing)" if value is _MISSING_VALUE else _show(value)
    return f"{_dotted(keys) or '(top level)'} = {shown} is not allowed; allowed: {allowed}"


def describe(t: mi.Type) -> str:
    """What a value of type ``t`` may be, in words an operator editing TOML understands."""
    if isinstance(t, mi.LiteralType):
        return ", ".join(_show(v) for v in t.values)
    if isinstance(t, mi.UnionType):
        parts = [describe(m) for m in t.types if not isinstance(m, mi.NoneType)]
        return " or ".join(parts) + (" (or left out)" if t.includes_none else "")
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.IntType | mi.FloatType):
        noun = "an integer" if isinstance(t, mi.IntType) else "a number"
        bounds = [
            f"{op} {v:g}"
            for op, v in ((">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le))
            if v is not None
        ]
        return noun + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(t, mi.StrType):
        return "a string" + (f" matching {t.pattern}" if t.pattern else "")
    if isinstance(t, mi.ListType):
        return f"a list of ({describe(t.item_type)})"
    if isinstance(t, mi.DictType):
        return f"a table of ({describe(t.value_type)})"
    if isinstance(t, mi.StructType | mi.DataclassType):
        return f"a table with keys {', '.join(_field_names(t))}"
    return type(t).__name__.removesuffix("Type").lower()


def _steps(path: str) -> list[str | int | None]:
    """``$.a[0][...].b`` -> ``["a", 0, None, "b"]``; None stands for a table key msgspec
    does not name."""
    keys: list[str | int | None] = []
    for name, index, _ in _STEP.findall(path):
        keys.append(name if name else int(index) if index else None)
    return keys


def _name_tables(keys: list[str | int | None], data: Any, type_: Any) -> list[str | int]:
    """Fill in the table keys msgspec leaves out, by finding the entry that is refused."""
    named: list[str | int] = []
    for k in keys:
        if k is None:
            table = _value_at(data, named)
            entries = list(table) if isinstance(table, dict) else []
            k = next((e for e in entries if _refused(data, named, e, table, type_)), "…")
        named.append(k)
    return named


def _refused(data: Any, at: list[str | int], entry: str, table: dict, type_: Any) -> bool:
    """Whether ``data`` with the table at ``at`` cut down to ``entry`` is still refused."""

    def cut(node: Any, rest: list[str | int]) -> Any:
        if not rest:
            return {entry: table[entry]}
        copy = list(node) if isinstance(node, list) else dict(node)
        copy[rest[0]] = cut(node[rest[0]], rest[1:])  # type: ignore[index]
        return copy

    try:
        msgspec.convert(cut(data, at), type_)
    except msgspec.ValidationError:
        return True
    return False


def _dotted(keys: list[str | int]) -> str:
    out = ""
    for k in keys:
        if isinstance(k, int):
            out += f"[{k}]"
        elif re.fullmatch(r"[A-Za-z0-9_\-]+", k):
            out += f".{k}" if out else k
        else:
            out += f'."{k}"' if out else f'"{k}"'
    return out


def _value_at(data: Any, keys: list[str | int]) -> Any:
    for k in keys:
        try:
            data = data[k]
        except (KeyError, IndexError, TypeError):
            return _MISSING_VALUE
    return data


def _type_at(t: mi.Type, keys: list[str | int]) -> mi.Type:
    for k in keys:
        t = _step_type(t, k)
    return t


def _step_type(t: mi.Type, key: str | int) -> mi.Type:
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if not isinstance(member, mi.NoneType | mi.LiteralType):
                return _step_type(member, key)
        return t
    if isinstance(t, mi.StructType | mi.DataclassType):
        for f in t.fields:
            if f.encode_name == key:
                return f.type
        return mi.AnyType()
    if isinstance(t, mi.DictType):
        return t.value_type
    if isinstance(t, mi.ListType | mi.TupleType | mi.VarTupleType):
        return getattr(t, "item_type", mi.AnyType())
    return mi.AnyType()


def _field_names(t: mi.Type) -> list[str]:
    if isinstance(t, mi.UnionType):
        return next((_field_names(m) for m in t.types if _field_names(m)), [])
    if isinstance(t, mi.StructType | mi.DataclassType):
        return [f.encode_name for f in t.fields]
    return []


def _show(value: Any) -> str:
    """A value as TOML would spell it, bounded (a hostile config may hold a huge string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:80] + "…"
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"
