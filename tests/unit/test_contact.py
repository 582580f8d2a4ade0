"""service/contact: the broker's silence is one outage, logged and counted once each way."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from churnguard.service.contact import BrokerWatch, answered
from churnguard.service.metrics import ServiceMetrics


def _value(metric) -> float:
    return metric._value.get()


class Consumer:
    """What kafka-python's ``metrics()`` answers (only the group the watch reads)."""

    def __init__(self, rate: float | None, fail: bool = False) -> None:
        self.rate, self.fail = rate, fail

    def metrics(self):
        if self.fail:
            raise RuntimeError("unstable interface changed")
        return {} if self.rate is None else {"consumer-metrics": {"response-rate": self.rate}}


@pytest.mark.parametrize(
    ("consumer", "expected"),
    [(Consumer(2.5), True), (Consumer(0.0), False), (Consumer(None), None),
     (Consumer(1.0, fail=True), None)],
)  # fmt: skip
def test_answered_reads_the_response_rate_or_says_it_cannot_tell(consumer, expected):
    assert answered(consumer) is expected


def test_an_outage_is_logged_and_counted_once_when_it_starts_and_once_when_it_ends(caplog):
    metrics = ServiceMetrics()
    watch = BrokerWatch(metrics, grace_s=4.0, bootstrap="b:9092")
    caplog.set_level(logging.INFO, logger="churnguard.service.contact")
    watch.session_started(0.0)
    watch.observe(True, 1.0)
    assert watch.connected and _value(metrics.broker_connected) == 1
    for t in (5.0, 6.0, 7.0):  # silent: one loss, not three
        watch.observe(False, t)
    watch.session_started(8.0)  # the service rebuilt its session: still the same outage
    watch.observe(False, 9.0)
    assert watch.connected is False and _value(metrics.broker_connected) == 0
    watch.observe(True, 13.0)
    watch.observe(True, 14.0)
    messages = [(r.getMessage(), getattr(r, "down_s", None)) for r in caplog.records]
    # silent since the last answer heard (1.0), or the window's older half (5 - 0.75*4 = 2.0)
    # when it was heard more recently than that
    assert messages == [("kafka broker unreachable", None), ("kafka broker reachable again", 12.0)]
    assert _value(metrics.broker_outages) == 1
    assert _value(metrics.broker_down_seconds) == pytest.approx(12.0)
    assert _value(metrics.broker_connected) == 1


def test_a_new_session_is_not_an_outage_before_its_grace_and_unknown_changes_nothing(caplog):
    metrics = ServiceMetrics()
    watch = BrokerWatch(metrics, grace_s=4.0, bootstrap="b:9092")
    watch.observe(False, 0.0)  # never heard from yet: not "lost"
    assert watch.connected is None
    watch.observe(True, 1.0)
    watch.observe(True, 9.9)  # the old consumer was answered until its session ended
    watch.session_started(10.0)
    watch.observe(False, 11.0)  # the fresh consumer has not been answered yet
    watch.observe(None, 20.0)  # cannot tell: keep the state
    assert watch.connected is True
    watch.observe(False, 14.5)
    assert watch.connected is False
    assert not [r for r in caplog.records if r.getMessage() == "kafka broker reachable again"]


def test_sessions_rebuilt_faster_than_the_grace_do_not_hide_an_outage():
    metrics = ServiceMetrics()
    watch = BrokerWatch(metrics, grace_s=4.0, bootstrap="b:9092")
    watch.session_started(0.0)
    watch.observe(True, 1.0)  # the last answer
    for t in (2.0, 3.5, 5.0):  # each failed session's consumer is new and silent
        watch.session_started(t)
        watch.observe(False, t + 0.1)
    assert watch.connected is False  # 4 s after the last answer, at 5.1
    assert _value(metrics.broker_outages) == 1


def test_the_watch_thread_notices_a_silent_consumer_without_the_poll_loop():
    metrics = ServiceMetrics()
    watch = BrokerWatch(metrics, grace_s=0.3, bootstrap="b:9092")
    consumer, stop = Consumer(1.0), threading.Event()
    thread = watch.watch(lambda: consumer, stop)
    try:
        _until(lambda: watch.connected is True)
        consumer.rate = 0.0  # the broker stopped answering
        _until(lambda: watch.connected is False)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert _value(metrics.broker_outages) == 1


def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the watch did not see it"
        time.sleep(0.02)
