"""One page per incident: later alerting windows of an entity fold into its first alert.

A long-running entity is profiled every window, so anything that keeps it unusual (an
implant beaconing for hours, a new workload polling a host nobody used before) would page
once per window. An analyst wants one alert per incident, and a new one only when the
entity does something it has not been paged for: a technique not yet named, or a higher
severity. An incident stays open while the entity keeps alerting. It closes after
``QUIET_S`` of event time in which the entity was profiled and did not alert (calm), so a
pod that alerted at start-up, ran normally and is hijacked hours later pages again. Silence
is not calm: an hourly poller is profiled once an hour, and each of its windows that alerts
belongs to the same story (a hijacked notifier paged 11 times, once per poll, when silence
closed it). Past ``SILENT_S`` without any alert the story is old and a new page opens one.
The scorers keep an :class:`Incidents` per pipeline; its state travels in their
checkpoints, so serve and replay fold identically.
"""

from __future__ import annotations

import msgspec

from churnguard.alerts.alert import SEVERITIES, Alert

MAX_OPEN = 20_000  # live entities remembered as having alerted (oldest forgotten first)
QUIET_S = 1800.0  # an incident whose entity ran this long without alerting is closed
SILENT_S = 6 * 3600.0  # ... and one with no alert at all for this long


class Incident(msgspec.Struct):
    """What a live entity has already been paged for."""

    last: float  # event time of its last alerting window
    techniques: list[str]
    severity: int  # index into alerts.SEVERITIES
    calm: float | None = None  # start of its first profiled window since ``last`` with no alert


class Incidents:
    """Open incidents by entity key, in order of their last alert."""

    def __init__(self) -> None:
        self.open: dict[str, Incident] = {}

    def __contains__(self, entity: str) -> bool:
        """True when the entity alerted during its life (open incident or not)."""
        return entity in self.open

    def note(self, entity: str, when: float, alert: Alert) -> bool:
        """Record an alert of ``entity``; True when it adds nothing to the open incident
        (same techniques, no higher severity) and so should be folded, not paged."""
        severity = SEVERITIES.index(alert.severity)
        prior = self.open.pop(entity, None)
        if prior is not None and _closed(prior, when):
            prior = None
        if prior is None:
            self.open[entity] = Incident(when, list(alert.techniques), severity)
        else:
            self.open[entity] = Incident(
                when,
                list(dict.fromkeys(prior.techniques + alert.techniques)),
                max(severity, prior.severity),
            )
        while len(self.open) > MAX_OPEN:
            del self.open[next(iter(self.open))]
        return (
            prior is not None
            and set(alert.techniques) <= set(prior.techniques)
            and severity <= prior.severity
        )

    def calm(self, entity: str, since: float) -> None:
        """The entity was profiled from ``since`` on without alerting: its incident's quiet
        spell starts there (the first such window counts, until it alerts again)."""
        incident = self.open.get(entity)
        if incident is not None and incident.calm is None and since >= incident.last - 1e-9:
            incident.calm = since

    def close(self, entity: str) -> None:
        """The entity ended: a successor under the same name starts clean."""
        self.open.pop(entity, None)

    def export(self) -> dict[str, Incident]:
        return dict(self.open)

    def load(self, data: dict[str, Incident]) -> None:
        self.open = dict(data)


def _closed(incident: Incident, when: float) -> bool:
    """Closed by a calm spell of ``QUIET_S``, or by ``SILENT_S`` without an alert."""
    calm = incident.calm is not None and when - incident.calm > QUIET_S
    return calm or when - incident.last > SILENT_S
