"""ingest's metrics: the runtime's common ones (produced, duplicates) plus what an edge sees."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from elmo.runtime.metrics import LATENCY_BUCKETS, ServiceMetrics


class IngestMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("ingest")
        labels = ["service"]
        self._requests = Counter(
            "elmo_webhook_requests",
            "Webhook requests answered, by endpoint and status.",
            [*labels, "endpoint", "status"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "elmo_webhook_rejected",
            "Webhook requests refused: unsigned, bad_signature, not_configured, too_large, malformed, invalid, rate_limited.",
            [*labels, "endpoint", "reason"],
            registry=self.registry,
        )
        self._ignored = Counter(
            "elmo_webhook_ignored",
            "Platform events deliberately not published (echoes, receipts, statuses, other kinds).",
            [*labels, "channel", "kind"],
            registry=self.registry,
        )
        self._media_failures = Counter(
            "elmo_media_fetch_failures",
            "Voice notes that could not be fetched; retryable ones were answered 503 for the platform to redeliver.",
            [*labels, "channel", "reason", "retryable"],
            registry=self.registry,
        )
        self._media_seconds = Histogram(
            "elmo_media_fetch_seconds",
            "Time to fetch one voice note.",
            [*labels, "channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._audio_stored = Counter(
            "elmo_audio_stored",
            "Voice notes published, by where the audio went (inline or blob).",
            [*labels, "storage"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "elmo_webhook_request_seconds",
            "Time to answer one webhook request.",
            [*labels, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._redirects = Counter(
            "elmo_tracking_redirects",
            "Tracking link requests: redirected, preview (a link-preview bot: no click recorded), bad_token, feedback_lost.",
            [*labels, "outcome"],
            registry=self.registry,
        )

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self._requests.labels(self.service, endpoint, str(status)).inc()
        self._request_seconds.labels(self.service, endpoint).observe(seconds)

    def rejected(self, endpoint: str, reason: str) -> None:
        self._rejected.labels(self.service, endpoint, reason).inc()

    def ignored(self, channel: str, kind: str, count: int = 1) -> None:
        self._ignored.labels(self.service, channel, kind).inc(count)

    def media_failed(self, channel: str, reason: str, retryable: bool) -> None:
        self._media_failures.labels(self.service, channel, reason, str(retryable).lower()).inc()

    def media_fetched(self, channel: str, seconds: float) -> None:
        self._media_seconds.labels(self.service, channel).observe(seconds)

    def audio_stored(self, storage: str) -> None:
        self._audio_stored.labels(self.service, storage).inc()

    def redirect(self, outcome: str) -> None:
        self._redirects.labels(self.service, outcome).inc()
