"""Run the service in its own process for the kill/SIGTERM tests:
``python serve_proc.py S [D [SCORER]]``.

``S`` is the Settings as JSON. The stand-in pipeline is used (``SCORER``: a name in
``standin.SCORERS``, default ``standin``), and SIGTERM/SIGINT stop it
the way ``churnguard serve`` does. ``D`` (seconds, default 0) slows every record down, so a
test can kill the process while it is still in the middle of its stream: unslowed, it
consumes a test stream in about a second, often before the test has seen a commit.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import msgspec
from standin import slowed, standin_pipeline

from churnguard.config import Settings
from churnguard.service.kafka import Service


def main() -> int:
    settings = msgspec.json.decode(Path(sys.argv[1]).read_bytes(), type=Settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    delay_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    scorer = sys.argv[3] if len(sys.argv) > 3 else "standin"
    factory = slowed(delay_s, scorer) if delay_s > 0 or scorer != "standin" else standin_pipeline
    stats = Service(settings, stop_event=stop, pipeline_factory=factory).run()
    print(f"records={sum(stats.records.values())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
