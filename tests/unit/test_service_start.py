"""The service readies its detector before it joins the consumer group."""

from __future__ import annotations

import threading

import pytest

from churnguard.config import Settings
from churnguard.scoring.detectors import DETECTORS
from churnguard.service.kafka import Service


class _Joined(Exception):
    """Raised by the fake clients where a session would start talking to Kafka."""


class _Clients:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def producer(self):  # type: ignore[no-untyped-def]
        self.calls.append("session")
        raise _Joined

    def consumer(self):  # type: ignore[no-untyped-def]
        raise AssertionError("a session starts with its producer")

    def reader_config(self) -> dict:
        return {}


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_prepared_before_the_first_session(name, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(DETECTORS[name], "prepare", classmethod(lambda cls: calls.append(cls.name)))
    settings = Settings()
    settings.scoring.detector = name
    service = Service(settings, stop_event=threading.Event(), clients=_Clients(calls))
    with pytest.raises(_Joined):
        service.run()
    assert calls == [name, "session"]


def test_start_up_objects_frozen_while_serving_and_unfrozen_after(monkeypatch):
    """The collector skips the start-up heap (imports, bundle, kernels) while the service
    runs, and gets it back when run() returns, however it ends."""
    import gc

    frozen: list[int] = []

    class _Frozen(_Clients):
        def producer(self):  # type: ignore[no-untyped-def]
            frozen.append(gc.get_freeze_count())
            raise _Joined

    service = Service(Settings(), stop_event=threading.Event(), clients=_Frozen([]))
    with pytest.raises(_Joined):
        service.run()
    assert frozen and frozen[0] > 0
    assert gc.get_freeze_count() == 0
