"""A SASL-configured service against a real broker: the password reaches the client and
nothing else. The embedded Tansu 0.6 cannot run an authenticated listener for a test (its
``--authentication`` needs SCRAM users created through the broker, which its only storage
for tests, memory, cannot do before authentication is on; its ``--cert``/``--key`` flags
refuse to be combined), so this checks the refusal path: the handshake fails, the service
retries, and no log line anywhere (churnguard's or kafka-python's, at DEBUG) holds the
secret. Against ``KAFKA_BOOTSTRAP_SERVERS`` with SASL, the same settings connect.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from standin import standin_pipeline

from churnguard.service.kafka import Service
from churnguard.service.metrics import ServiceMetrics

pytestmark = pytest.mark.integration
SECRET = "pw-7f3a9c-never-in-logs"


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__}")


def test_sasl_password_from_env_is_used_and_never_logged(make_settings, monkeypatch):
    settings = make_settings(partitions=1)
    k = settings.kafka
    k.security_protocol, k.sasl_mechanism = "SASL_PLAINTEXT", "SCRAM-SHA-512"
    k.sasl_plain_username = "churnguard"
    monkeypatch.setenv("CHURNGUARD_KAFKA_PASSWORD", SECRET)
    handler = _Everything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    stop = threading.Event()
    try:
        service = Service(settings, stop_event=stop, pipeline_factory=standin_pipeline,
                          metrics=ServiceMetrics())  # fmt: skip
        built = service.clients.reader_config()
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and service.metrics.reconnects._value.get() < 1:
            time.sleep(0.2)
        stop.set()
        thread.join(timeout=30)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert built["sasl_plain_password"] == SECRET  # the client got it
    assert service.metrics.reconnects._value.get() >= 1  # the broker refused the handshake
    assert any("session failed" in line for line in handler.lines)
    assert handler.lines and not [line for line in handler.lines if SECRET in line]
