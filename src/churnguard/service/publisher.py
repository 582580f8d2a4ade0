"""Publishing a shard's output: alerts (once per id) and dead letters, with their metrics.

Sends are asynchronous; a send that fails after the producer's retries is remembered and
raised by :meth:`Publisher.check`, so the loop never commits input past a lost alert.
"""

from __future__ import annotations

from collections import Counter

import msgspec
from kafka import KafkaProducer
from kafka.errors import KafkaError

from churnguard.alerts.formats import encode_alert
from churnguard.config import Settings
from churnguard.ingest.events import Origin, Rejected
from churnguard.pipeline import Output
from churnguard.service.metrics import ServeStats, ServiceMetrics
from churnguard.service.shard import Shard

SHARD_HEADER = "churnguard-shard"  # on alerts: the checkpoint key of the shard that made it
CLOCK_HEADER = "churnguard-event-time"  # on alerts: the shard's event clock when it made it
_json = msgspec.json.Encoder()


def dead_letter(rejected: Rejected) -> bytes:
    """The dead-letter message: reason, detail, Kafka coordinates and the (truncated) record."""
    origin = rejected.origin or Origin()
    return _json.encode(
        {
            "reason": rejected.reason,
            "detail": rejected.detail,
            "topic": origin.source,
            "partition": origin.partition,
            "offset": origin.offset,
            "record": rejected.record,
        }
    )


class Publisher:
    """Writes one session's alerts and dead letters through its producer."""

    def __init__(
        self,
        producer: KafkaProducer,
        settings: Settings,
        stats: ServeStats,
        metrics: ServiceMetrics,
    ) -> None:
        self.producer = producer
        self.kafka = settings.kafka
        self.alert_output = settings.alerts  # the format; fixed for a session, like Kafka's
        self.stats = stats
        self.metrics = metrics
        self.send_error: BaseException | None = None

    def publish(self, shard: Shard, out: Output) -> None:
        """Send a pipeline output: new alerts, every dead letter; count what was scored."""
        if not (out.alerts or out.rejected or out.late or out.scored):
            return  # most records: nothing became due
        for alert in out.alerts:
            if not shard.remember(alert.alert_id):
                self.stats.suppressed += 1
                self.metrics.duplicates.inc()
                continue
            self.producer.send(
                self.kafka.alerts_topic,
                key=str(alert.entity.key()).encode(),
                value=encode_alert(alert, self.alert_output),
                headers=[
                    (SHARD_HEADER, shard.key.encode()),
                    (CLOCK_HEADER, repr(shard.alert_ids[alert.alert_id]).encode()),
                ],
            ).add_errback(self._on_send_error)
            self.stats.alerts += 1
            self.metrics.count_alert(alert)
            if alert.entity.kind == "namespace":  # only telemetry-flood alerts name no entity
                self.metrics.floods.labels(alert.entity.namespace or "-").inc()
        for rejected in out.rejected:
            self.send_dead_letter(rejected)
        for source, outcome in out.late:
            self.stats.late[f"{source}.{outcome}"] += 1
            self.metrics.late.labels(source, outcome).inc()
        if out.scored:  # a tick's profiles: one counter update per level, not per profile
            levels = Counter(str(scored.level) for scored in out.scored)
            for level, count in levels.items():
                self.metrics.profiles.labels(level).inc(count)
            if folded := sum(1 for scored in out.scored if scored.folded):
                self.metrics.folded.inc(folded)

    def send_dead_letter(self, rejected: Rejected) -> None:
        self.producer.send(self.kafka.dead_letter_topic, value=dead_letter(rejected)).add_errback(
            self._on_send_error
        )
        self.stats.dead_letters += 1
        self.metrics.rejected.labels(rejected.reason).inc()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent is on the broker; raise if a send was lost."""
        self.producer.flush(timeout=timeout_s)
        self.check("before checkpoint")

    def check(self, when: str = "") -> None:
        if self.send_error is not None:
            where = f" {when}" if when else ""
            raise KafkaError(f"produce failed{where}: {self.send_error!r}")

    def _on_send_error(self, exc: BaseException) -> None:
        """A send failed after the producer's retries: the session must not commit past it."""
        self.send_error = exc
