"""Whether the broker is answering: one log line when it goes, one when it is back.

kafka-python reconnects on its own and hides a short outage from the poll loop: ``poll()``
returns nothing whether the broker is gone or simply has nothing new. What does tell them
apart is whether any response arrived: a caught-up consumer still gets a (long-polled,
empty) fetch answer every ``fetch_max_wait_ms`` and a heartbeat answer every heartbeat
interval. The consumer's own ``response-rate`` metric counts those over its sample window,
which :class:`churnguard.service.clients.KafkaClients` sets to the heartbeat interval (two
samples), so "no response in the window" means the broker has not answered for one to two
heartbeat intervals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from churnguard.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

RESPONSES = ("consumer-metrics", "response-rate")  # kafka-python's metric group and name
CHECK_EVERY_S = 0.25


def answered(consumer: Any) -> bool | None:
    """Did the broker answer this consumer within its metrics window? None: cannot tell.

    ``KafkaConsumer.metrics()`` is marked unstable upstream; a client that does not report
    the metric (or a stand-in) gives None, and the watch then keeps its last state.
    """
    try:
        groups = consumer.metrics() or {}
    except Exception:  # an unstable third-party interface must never stop the loop
        return None
    group, name = RESPONSES
    rate = groups.get(group, {}).get(name)
    return None if rate is None else rate > 0


class BrokerWatch:
    """Connected or not, from observations of :func:`answered`; logs and exports changes.

    ``grace_s`` is the client's metrics window (two samples of ``grace_s / 2``): a response
    stays in it for between one and two samples, so when the rate drops to zero the last
    answer came between ``grace_s`` and ``grace_s / 2`` ago; the outage is timed from the
    middle of that span to the first observation that hears the broker again (about
    ``grace_s / 4`` either way). A fresh consumer has answered nothing yet, so its silence
    counts only once it is ``grace_s`` old, or once nothing at all was heard for
    ``grace_s`` (sessions rebuilt faster than that during an outage must not hide it). The
    state outlives sessions: an outage that makes the service rebuild its session is one
    outage, reported once when it starts and once when it ends.
    """

    def __init__(self, metrics: ServiceMetrics, grace_s: float, bootstrap: str) -> None:
        self.metrics = metrics
        self.grace_s = grace_s
        self.bootstrap = bootstrap
        self.connected: bool | None = None  # None until the first answer
        self._silent_since = 0.0
        self._last_heard = 0.0
        self._session_at = 0.0

    def session_started(self, now: float) -> None:
        """A new consumer: its silence is not an outage for ``grace_s``."""
        self._session_at = now

    def watch(self, consumer: Callable[[], Any], stop: threading.Event) -> threading.Thread:
        """Observe the current consumer every ``CHECK_EVERY_S`` until ``stop`` is set.

        A thread of its own, because an outage is exactly when the poll loop is stuck in a
        producer flush or a commit (up to their timeouts) and would not look.
        """

        def run() -> None:
            while not stop.wait(CHECK_EVERY_S):
                current = consumer()  # None between sessions: a rebuild blocked on bootstrap
                heard = answered(current) if current is not None else False
                self.observe(heard, time.monotonic())

        thread = threading.Thread(target=run, name="churnguard-broker-watch", daemon=True)
        thread.start()
        return thread

    def observe(self, heard: bool | None, now: float) -> None:
        """Whether the broker was heard from; ``now`` is a monotonic clock reading."""
        if heard is None:
            return
        if heard:
            if self.connected is False:
                down = now - self._silent_since
                self.metrics.broker_down_seconds.inc(down)
                log.info(
                    "kafka broker reachable again",
                    extra={"down_s": round(down, 1), "bootstrap": self.bootstrap},
                )
            self.connected, self._last_heard = True, now
            self.metrics.broker_connected.set(1)
        elif self.connected and now - min(self._session_at, self._last_heard) >= self.grace_s:
            self.connected = False
            self._silent_since = min(now - 0.75 * self.grace_s, self._last_heard)
            self.metrics.broker_connected.set(0)
            self.metrics.broker_outages.inc()
            log.warning(
                "kafka broker unreachable",
                extra={
                    "silent_s": round(now - self._silent_since, 1),
                    "bootstrap": self.bootstrap,
                },
            )
