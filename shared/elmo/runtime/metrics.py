"""Prometheus metrics every service exposes, with the same names and a `service` label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10, 30)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """One registry per service instance, so tests can run several stages in one process."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        labels = ["service"]
        self._consumed = Counter("elmo_messages_consumed", "Records read from the input topic.", labels, registry=self.registry)
        self._produced = Counter("elmo_messages_produced", "Events published to the output topic.", labels, registry=self.registry)
        self._duplicates = Counter(
            "elmo_messages_duplicate", "Redelivered events skipped by the idempotency check.", labels, registry=self.registry
        )
        self._failed = Counter(
            "elmo_processing_failures", "Failed attempts to process an event (before retries).", labels, registry=self.registry
        )
        self._dead_lettered = Counter(
            "elmo_messages_dead_lettered", "Records sent to the dead-letter topic.", [*labels, "reason"], registry=self.registry
        )
        self._rewinds = Counter(
            "elmo_batch_rewinds",
            "Batches rewound to be read again because a dependency (Redis, Kafka) failed.",
            labels,
            registry=self.registry,
        )
        self._stuck = Gauge(
            "elmo_partitions_stuck",
            "Partitions with records waiting that have not advanced for ELMO_PROGRESS_STALL_S (as of the last probe).",
            labels,
            registry=self.registry,
        )
        self._processing = Histogram(
            "elmo_batch_processing_seconds",
            "Time to handle one batch: decode, dedupe, core, publish, commit.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batch_size = Histogram("elmo_batch_size", "Records per batch.", labels, buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self._end_to_end = Histogram(
            "elmo_end_to_end_latency_seconds",
            "From the inbound event's creation to this service publishing its output.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._model = Gauge(
            "elmo_model_loaded", "1 for the model version this service is serving.", [*labels, "model", "version"], registry=self.registry
        )
        self._model_swaps = Counter(
            "elmo_model_swaps", "Model versions swapped in while running (hot swap).", [*labels, "model"], registry=self.registry
        )
        self._model_load_failures = Counter(
            "elmo_model_load_failures",
            "Announced model versions that failed to load (the previous version kept serving).",
            [*labels, "model"],
            registry=self.registry,
        )

    def consumed(self, count: int) -> None:
        self._consumed.labels(self.service).inc(count)

    def produced(self, count: int) -> None:
        self._produced.labels(self.service).inc(count)

    def duplicates(self, count: int) -> None:
        self._duplicates.labels(self.service).inc(count)

    def failed(self) -> None:
        self._failed.labels(self.service).inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead_lettered.labels(self.service, reason).inc()

    def rewound(self) -> None:
        self._rewinds.labels(self.service).inc()

    def partitions_stuck(self, count: int) -> None:
        self._stuck.labels(self.service).set(count)

    def batch(self, size: int, seconds: float) -> None:
        self._batch_size.labels(self.service).observe(size)
        self._processing.labels(self.service).observe(seconds)

    def end_to_end(self, seconds: float) -> None:
        self._end_to_end.labels(self.service).observe(seconds)

    def model_loaded(self, model: str, version: str) -> None:
        self._model.clear()
        self._model.labels(self.service, model, version).set(1)

    def model_swapped(self, model: str) -> None:
        self._model_swaps.labels(self.service, model).inc()

    def model_load_failed(self, model: str) -> None:
        self._model_load_failures.labels(self.service, model).inc()
