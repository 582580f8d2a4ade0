"""Run the service in its own process for the kill/SIGTERM tests: ``python serve_proc.py S``.

``S`` is the Settings as JSON. The stand-in pipeline is used, and SIGTERM/SIGINT stop it
the way ``churnguard serve`` does.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import msgspec
from standin import standin_pipeline

from churnguard.config import Settings
from churnguard.kafka import Service


def main() -> int:
    settings = msgspec.json.decode(Path(sys.argv[1]).read_bytes(), type=Settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats = Service(settings, stop_event=stop, pipeline_factory=standin_pipeline).run()
    print(f"records={sum(stats.records.values())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
