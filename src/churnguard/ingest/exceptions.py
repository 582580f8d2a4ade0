"""Errors of the decode + adapt stage.

Adapters raise :class:`AdapterError` for a record they cannot trust (a required field is
missing, a value is the wrong type or absurd); :func:`churnguard.ingest.parse_record`
turns it into a :class:`~churnguard.ingest.events.Rejected` for the dead-letter output, so
nothing here ever escapes the stage.
"""

from __future__ import annotations

from churnguard.errors import ChurnguardError


class SourceError(ChurnguardError):
    """Base of the errors raised inside ``churnguard.ingest``."""


class AdapterError(SourceError):
    """A record is well-formed JSON but unusable; ``reason`` is the dead-letter reason.

    ``reason`` is one of ``missing_field`` or ``bad_value`` (machine-friendly, counted by
    metrics); ``detail`` names the field and the problem for a human.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def missing(field: str) -> AdapterError:
    """The error for a required field that is absent or null."""
    return AdapterError("missing_field", f"{field} is missing")


def bad(field: str, problem: str) -> AdapterError:
    """The error for a field whose value cannot be used."""
    return AdapterError("bad_value", f"{field}: {problem}")


class InputError(SourceError):
    """An input a person must fix (missing, unreadable, empty, not JSON): one line says which."""
