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
