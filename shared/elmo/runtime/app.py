"""The Kafka shell around a stage: FastStream consumes, `BatchProcessor` handles, offsets commit.

Delivery is at-least-once with idempotent effects: offsets are committed only after every output
of the batch is acknowledged by Kafka (acks=all, idempotent producer), and a batch whose outcome
could not be made durable is rewound and tried again rather than skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Sequence
from contextlib import nullcontext
from itertools import chain
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.middlewares import AckPolicy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from elmo.models.artifacts import ArtifactStore
from elmo.runtime.failures import DependencyUnavailable
from elmo.runtime.health import Health, PartitionProgress
from elmo.runtime.idempotency import RedisSeenEvents
from elmo.runtime.json_logs import configure_logging
from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.model_updates import ModelUpdateSettings, ModelUpdateWatcher
from elmo.runtime.offsets import CommitOnRevoke, OffsetCommitter
from elmo.runtime.processing import BatchProcessor, RetryPolicy
from elmo.runtime.records import ConsumedRecord, OutgoingRecord
from elmo.runtime.serving_model import ServingModel
from elmo.runtime.settings import RuntimeSettings
from elmo.runtime.stage import Stage, call_hook

log = logging.getLogger("elmo.runtime")


class _EagerBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber, minus its pause after an empty poll.

    FastStream sleeps a whole `batch_timeout_ms` after a poll that returned nothing, so the first
    record after an idle moment waits up to that long at every hop. aiokafka's `getmany` already
    returns as soon as a record arrives, so the pause only adds latency.
    """

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        batches = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
        return tuple(chain.from_iterable(batches.values()))


async def _message_as_body(message: KafkaMessage) -> KafkaMessage:
    # The processor decodes each record itself, so one bad record is dead-lettered alone. Handing
    # the message over as the body also avoids FastStream's context injection, which resolves
    # through a worker thread on every call.
    return message


class StageService:
    """A stage wired to Kafka, Redis and HTTP; `app` is the ASGI application uvicorn serves."""

    def __init__(
        self, stage: Stage, settings: RuntimeSettings | None = None, model_updates: ModelUpdateSettings | None = None
    ) -> None:
        self.stage = stage
        self.settings = settings or RuntimeSettings()
        self.model_update_settings = model_updates or ModelUpdateSettings()
        self.metrics = ServiceMetrics(stage.name)
        if stage.register_metrics is not None:
            stage.register_metrics(self.metrics.registry)
        self.progress = PartitionProgress(self.settings.progress_stall_s)
        self.health = Health(
            stall_after_s=self.settings.stall_after_s,
            model=stage.model,
            max_rereads=self.settings.max_rereads,
            stuck_partitions=self._stuck_partitions,
        )
        self.broker = KafkaBroker(
            self.settings.kafka_bootstrap_servers,
            client_id=f"elmo-{stage.name}",
            acks="all",
            enable_idempotence=True,
            graceful_timeout=self.settings.shutdown_grace_s,
            log_level=logging.DEBUG,
            # The handler takes the raw batch and decodes it itself; dependency injection would
            # only add work to every batch.
            apply_types=False,
        )
        # Namespaced by consumer group: two groups reading the same topic (a second chain, a test)
        # each handle every event once, and neither skips what the other handled.
        self.seen = RedisSeenEvents.from_url(
            self.settings.redis_url, self.settings.group_for(stage.name), self.settings.idempotency_ttl_s
        )
        # A stage with `load_model` serves a swappable model: its core gets the batch's model, and
        # versions announced on the model-updates topic are swapped in between batches.
        self.serving: ServingModel | None = None
        self.model_updates: ModelUpdateWatcher | None = None
        self._following_updates: asyncio.Task | None = None
        if stage.load_model is not None:
            assert stage.model is not None  # Stage checks it
            self.serving = ServingModel(stage.model, stage.load_model, self.metrics)
            store = ArtifactStore(self.settings.model_store)
            kind = stage.model.name
            self.model_updates = ModelUpdateWatcher(
                self.serving,
                self.settings.kafka_bootstrap_servers,
                self.model_update_settings.model_updates_topic,
                current_moved_at=lambda: store.current_moved_at(kind),
                client_id=f"elmo-{stage.name}-model-updates",
                retry_s=self.model_update_settings.model_updates_retry_s,
            )
        self.processor = BatchProcessor(
            self.serving.bind(stage) if self.serving is not None else stage,
            publish=self._publish,
            seen=self.seen,
            metrics=self.metrics,
            retry=RetryPolicy(
                self.settings.max_attempts, self.settings.retry_backoff_s, self.settings.retry_backoff_max_s
            ),
            max_record_bytes=self.settings.max_record_bytes,
            max_crashes=self.settings.max_crashes,
        )
        self.committer = OffsetCommitter(lambda: self.subscriber.consumer, self.settings.commit_interval_ms / 1000)
        self._periodic_commits: asyncio.Task | None = None
        self.subscriber = self.broker.subscriber(
            stage.consumes.name,
            batch=True,
            max_records=self.settings.batch_max_records,
            batch_timeout_ms=self.settings.batch_wait_ms,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            group_id=self.settings.group_for(stage.name),
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            listener=CommitOnRevoke(self.committer, forget=self.progress.forget),
            decoder=_message_as_body,
            title=f"{stage.name}:{stage.consumes.name}",
            description=stage.description or None,
        )
        self.subscriber.__class__ = _EagerBatchSubscriber  # same slots; only get_msg differs
        self.subscriber(self._on_batch)
        self.health.consuming = self._consuming
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=[("/healthz", self._healthz()), ("/readyz", self._readyz()), ("/metrics", self._metrics())],
            on_startup=[self._start],
            after_startup=[self._started],
            on_shutdown=[self._stopping],
            after_shutdown=[self._stopped],
        )

    async def _on_batch(self, message: Any) -> None:  # a KafkaMessage, see _message_as_body
        records = [ConsumedRecord.from_kafka(r) for r in message.raw_message]
        self.health.batch_started()
        self.progress.reading(records)

        async def commit(done: Sequence[ConsumedRecord]) -> None:
            self.committer.mark_done(done)
            await self.committer.commit_if_due()

        try:
            # The model is fixed for the whole batch; a new version waits for the next one.
            async with self.serving.batch() if self.serving is not None else nullcontext():
                await self.processor.handle(records, commit=commit)
        except Exception as error:  # noqa: BLE001 - nothing of the batch is lost: it is read again
            await self._rewind(records, error)
        else:
            self.progress.finished(records)
            self.health.batch_finished()

    async def _rewind(self, records: Sequence[ConsumedRecord], error: Exception) -> None:
        """Seek every partition of the batch back to its lowest offset in it, then wait (backoff).

        Every partition, not only the first: records of the others are past their fetch position,
        and the next success would commit past them.
        """
        self.health.batch_rewound()
        self.metrics.rewound()
        pause = min(self.settings.rewind_backoff_s * 2 ** (self.health.rereads - 1), self.settings.rewind_backoff_max_s)
        fields = {"records": len(records), "rereads_in_a_row": self.health.rereads, "pause_s": round(pause, 3)}
        if isinstance(error, DependencyUnavailable):
            log.warning("a dependency failed; rewinding the batch to read it again", extra={"fields": {**fields, "error": str(error)}})
        else:
            log.exception("batch not durable; rewinding to read it again", extra={"fields": fields})
        lowest: dict[TopicPartition, int] = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            lowest[partition] = min(lowest.get(partition, record.offset), record.offset)
        consumer = self.subscriber.consumer
        for partition, offset in lowest.items():
            try:
                consumer.seek(partition, offset)
            except Exception:  # noqa: BLE001 - revoked meanwhile: its new owner reads it from the committed offset
                log.warning("could not rewind a partition no longer assigned", extra={"fields": {"partition": str(partition)}})
        await asyncio.sleep(pause)

    def _stuck_partitions(self) -> list[str]:
        consumer = self.subscriber.consumer

        def high_water(topic: str, partition: int) -> int | None:
            try:
                return consumer.highwater(TopicPartition(topic, partition)) if consumer is not None else None
            except Exception:  # noqa: BLE001 - not assigned any more
                return None

        stuck = self.progress.stuck(high_water)
        self.metrics.partitions_stuck(len(stuck))
        return stuck

    async def _publish(self, records: Sequence[OutgoingRecord]) -> None:
        # Send everything first, then wait for every acknowledgement: one round trip per batch.
        pending = [
            await self.broker.publish(r.value, r.topic, key=r.key, headers=r.headers, no_confirm=True) for r in records
        ]
        await asyncio.gather(*pending)

    def _consuming(self) -> bool:
        return bool(self.subscriber.running and any(not t.done() for t in getattr(self.subscriber, "tasks", ())))

    async def _start(self) -> None:
        await call_hook(self.stage.on_start)
        if self.serving is not None and self.model_updates is not None:
            await self.serving.load_current()
            # Before consuming: a version announced while this service was down serves from the first batch.
            await self.model_updates.catch_up(self.model_update_settings.model_updates_catch_up_s)
        if self.stage.model is not None and self.stage.model.version is not None:
            self.metrics.model_loaded(self.stage.model.name, self.stage.model.version)

    async def _started(self) -> None:
        self.health.started = True
        self._periodic_commits = asyncio.create_task(self.committer.run_periodically())
        if self.model_updates is not None:
            self._following_updates = asyncio.create_task(self.model_updates.run(), name="model-updates")
        log.info("consuming", extra={"fields": {"topic": self.stage.consumes.name, "emits": self.stage.emits.name}})

    async def _stopping(self) -> None:
        self.health.stopping = True
        # From now on every finished batch commits at once, and what is finished is committed now:
        # a deploy redelivers nothing.
        self.committer.interval_s = 0
        if self._periodic_commits is not None:
            self._periodic_commits.cancel()
        if self._following_updates is not None:
            self._following_updates.cancel()
        if self.model_updates is not None and self.serving is not None:
            await self.model_updates.stop()
            await self.serving.close()
        await self.committer.flush()
        log.info("stopping: finishing in-flight work", extra={"fields": {"grace_s": self.settings.shutdown_grace_s}})

    async def _stopped(self) -> None:
        await call_hook(self.stage.on_stop)
        await self.seen.close()
        log.info("stopped")

    def _healthz(self):  # noqa: ANN202 - an ASGI handler
        @get
        async def healthz(scope: object) -> AsgiResponse:
            ok, detail = self.health.liveness()
            return _json_response(ok, detail)

        return healthz

    def _readyz(self):  # noqa: ANN202
        @get
        async def readyz(scope: object) -> AsgiResponse:
            reachable = await self.broker.ping(timeout=1.0) if self.health.started else False
            ok, detail = self.health.readiness(reachable)
            return _json_response(ok, detail)

        return readyz

    def _metrics(self):  # noqa: ANN202
        @get
        async def metrics(scope: object) -> AsgiResponse:
            self._stuck_partitions()  # refreshes the gauge
            return AsgiResponse(generate_latest(self.metrics.registry), 200, headers={"content-type": CONTENT_TYPE_LATEST})

        return metrics

    async def serve(self) -> None:
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, int(self.settings.shutdown_grace_s)),
        )
        await uvicorn.Server(config).serve()


def _json_response(ok: bool, detail: dict[str, object]) -> AsgiResponse:
    body = json.dumps({"status": "ok" if ok else "fail", **detail}).encode()
    return AsgiResponse(body, 200 if ok else 503, headers={"content-type": "application/json"})


def run_stage(stage: Stage, settings: RuntimeSettings | None = None) -> None:
    """Entry point of a service process: JSON logs, HTTP endpoints, consume until SIGTERM."""
    settings = settings or RuntimeSettings()
    configure_logging(stage.name, settings.log_level)
    # uvicorn re-raises the stop signal once it has shut down; after a clean drain the process
    # should exit 0, not die by that signal, so the re-raised one is ignored.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    asyncio.run(StageService(stage, settings).serve())
