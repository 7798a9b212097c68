"""delivery's own metrics, registered next to the runtime's on the service's /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from elmo.runtime.metrics import LATENCY_BUCKETS


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._sent = Counter("elmo_replies_sent", "Replies a platform accepted.", ["service", "channel"], registry=None)
        self._skipped = Counter(
            "elmo_replies_skipped",
            "Replies not sent: no_sender (channel without a configured sender) or already_sent (sent before a redelivery).",
            ["service", "channel", "reason"],
            registry=None,
        )
        self._attempts = Counter(
            "elmo_send_attempts",
            "Send requests by outcome: ok, unavailable (retried), refused.",
            ["service", "channel", "outcome"],
            registry=None,
        )
        self._send_seconds = Histogram(
            "elmo_send_seconds", "Time of one send request to a platform.", ["service", "channel"], buckets=LATENCY_BUCKETS, registry=None
        )
        self.register(self.registry)

    def register(self, registry: CollectorRegistry) -> None:
        for collector in (self._sent, self._skipped, self._attempts, self._send_seconds):
            registry.register(collector)

    def sent(self, channel: str) -> None:
        self._sent.labels("delivery", channel).inc()

    def skipped(self, channel: str, reason: str) -> None:
        self._skipped.labels("delivery", channel, reason).inc()

    def attempt(self, channel: str, outcome: str, seconds: float) -> None:
        self._attempts.labels("delivery", channel, outcome).inc()
        self._send_seconds.labels("delivery", channel).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, {"service": "delivery", **labels}) or 0.0
