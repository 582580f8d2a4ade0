"""The structs made per event and per row are untracked by the cyclic garbage collector
(``gc=False``). That is safe only while no instance can reach itself: every field must be
a leaf (string, number, enum, None), a tuple or string-keyed container of leaves, or
another such struct. A field that could hold a list of events, a state or any object
would make a leak possible: this test names it."""

from __future__ import annotations

import gc

import msgspec.inspect as mi
import pytest

from churnguard.ingest.events import EntityKey, EntityKind, Event, EventKind, Origin
from churnguard.profiling.profile import ArchiveShipped, EntityRef, Evidence, Profile

UNTRACKED = (Origin, Event, EntityKey, EntityRef, Evidence, ArchiveShipped, Profile)
_LEAVES = (
    mi.StrType,
    mi.FloatType,
    mi.IntType,
    mi.BoolType,
    mi.NoneType,
    mi.EnumType,
    mi.LiteralType,
)
_CONTAINERS = (mi.VarTupleType, mi.TupleType, mi.ListType, mi.SetType, mi.FrozenSetType)


def _acyclic(t: mi.Type, seen: tuple[type, ...]) -> bool:
    if isinstance(t, _LEAVES):
        return True
    if isinstance(t, mi.UnionType):
        return all(_acyclic(u, seen) for u in t.types)
    if isinstance(t, _CONTAINERS):
        items = t.item_types if isinstance(t, mi.TupleType) else (t.item_type,)
        return all(_acyclic(u, seen) for u in items)
    if isinstance(t, mi.DictType):
        return _acyclic(t.key_type, seen) and _acyclic(t.value_type, seen)
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return False  # a struct that can contain itself
        return all(_acyclic(f.type, (*seen, t.cls)) for f in t.fields)
    return False  # Any, object, a dataclass: could reach anything


@pytest.mark.parametrize("cls", UNTRACKED, ids=lambda c: c.__name__)
def test_untracked_structs_cannot_reach_themselves(cls: type) -> None:
    assert cls.__struct_config__.gc is False
    assert _acyclic(mi.type_info(cls), ())


def test_an_event_is_not_tracked() -> None:
    ev = Event(time=1.0, kind=EventKind.NET_FLOW, format="flow", labels={"app": "web"})
    assert not gc.is_tracked(ev)
    assert not gc.is_tracked(EntityKey(EntityKind.POD, "shop", "web-0"))


def test_the_check_refuses_a_field_that_could_hold_anything() -> None:
    import msgspec

    class Holder(msgspec.Struct):
        items: list[object]

    assert not _acyclic(mi.type_info(Holder), ())
