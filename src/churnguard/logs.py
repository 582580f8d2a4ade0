"""Structured logs: one JSON object per line, for log shippers in a cluster.

Fields: ``ts`` (UTC ISO 8601), ``level``, ``logger``, ``msg`` and whatever the caller put in
``extra={...}`` (partition lists, offsets, counts), plus ``exc`` with the traceback.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

# attributes every LogRecord has; anything else came from extra= and is logged as a field
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str = "INFO", *, json_logs: bool = True) -> None:
    """Route the root logger to stderr, as JSON lines unless ``json_logs`` is False."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
