"""elmo.model-updates on the wire: announcing a promotion or rollback, and following them in a service.

The topic is compacted and keyed by model kind, so it holds (at least) the latest announcement
per kind. A service with a swappable model reads it with its own consumer, outside any consumer
group, from the beginning: on start it catches up (before consuming its input), then it follows
new announcements for its model kind and hands their versions to its `ServingModel`.

On start the service has loaded the store's CURRENT. The last announcement found while catching
up is applied unless the store's CURRENT moved after it was made (say `elmo train` made a new
version current without announcing it): the later decision wins. Announcements that arrive while
running are always applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from pydantic import Field

from elmo.contracts import topics
from elmo.contracts.codec import encode
from elmo.contracts.events import ModelUpdate
from elmo.runtime.serving_model import ServingModel
from elmo.runtime.settings import ConnectionSettings

log = logging.getLogger("elmo.runtime")


class ModelUpdateSettings(ConnectionSettings):
    model_updates_topic: str = Field(
        topics.MODEL_UPDATES.name, description="Compacted topic of model promotions and rollbacks (a test may use its own)."
    )
    model_updates_catch_up_s: float = Field(
        10.0, gt=0, description="On start, how long a service waits to catch up on model updates before consuming anyway."
    )
    model_updates_retry_s: float = Field(5.0, gt=0, description="Pause before reconnecting to the model-updates topic.")


class KafkaAnnouncer:
    """Publishes a ModelUpdate, keyed by model kind, and waits for the broker's acknowledgement."""

    def __init__(self, bootstrap_servers: str, topic: str = topics.MODEL_UPDATES.name, timeout_s: float = 15.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout_s = timeout_s

    def __call__(self, update: ModelUpdate) -> None:
        from kafka import KafkaProducer  # synchronous: the registry runs in the CLI or a worker thread

        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", client_id="elmo-model-registry", max_block_ms=int(self.timeout_s * 1000)
        )
        try:
            producer.send(self.topic, key=update.model_kind.encode(), value=encode(update)).get(timeout=self.timeout_s)
        finally:
            producer.close(timeout=self.timeout_s)


def decode_update(record: ConsumerRecord) -> ModelUpdate | None:
    if record.value is None:  # a tombstone: the kind's announcements were deleted
        return None
    try:
        return ModelUpdate.model_validate_json(record.value)
    except Exception as error:  # noqa: BLE001 - any producer can write the topic: a bad record is skipped, never fatal
        log.warning("ignoring an undecodable model update", extra={"fields": {"offset": record.offset, "error": str(error)[:300]}})
        return None


def version_to_serve(
    updates: Iterable[ModelUpdate], kind: str, catching_up: bool, current_moved_at: datetime | None
) -> str | None:
    """The version the last of `updates` for `kind` asks for, or None if there is nothing to do."""
    latest = None
    for update in updates:
        if update.model_kind == kind:
            latest = update
    if latest is None:
        return None
    announced_at = latest.created_at if latest.created_at.tzinfo else latest.created_at.replace(tzinfo=UTC)
    if catching_up and current_moved_at is not None and current_moved_at > announced_at:
        log.info(
            "the store's CURRENT moved after the last announcement; keeping it",
            extra={"fields": {"model": kind, "announced": latest.version, "announced_at": latest.created_at.isoformat()}},
        )
        return None
    return latest.version


class ModelUpdateWatcher:
    def __init__(
        self,
        serving: ServingModel,
        bootstrap_servers: str,
        topic: str,
        current_moved_at: Callable[[], datetime | None] = lambda: None,
        client_id: str = "elmo-model-updates",
        retry_s: float = 5.0,
    ) -> None:
        self.serving = serving
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.current_moved_at = current_moved_at
        self.client_id = client_id
        self.retry_s = retry_s
        self._consumer: AIOKafkaConsumer | None = None

    async def catch_up(self, timeout_s: float) -> None:
        """Read what the topic holds and switch to the version it names; bounded by `timeout_s`."""
        try:
            await asyncio.wait_for(self._connect_and_catch_up(), timeout_s)
        except Exception as error:  # noqa: BLE001 - serving the store's CURRENT is a safe fallback
            log.warning(
                "could not catch up on model updates; serving the store's CURRENT and retrying in the background",
                extra={"fields": {"topic": self.topic, "error": repr(error)[:300]}},
            )
            await self._close()

    async def run(self) -> None:
        """Follow the topic until cancelled; reconnects (and catches up again) after an error."""
        while True:
            try:
                if self._consumer is None:
                    await self._connect_and_catch_up()
                assert self._consumer is not None
                batches = await self._consumer.getmany(timeout_ms=1000)
                records = [r for partition in batches.values() for r in partition]
                updates = [u for u in map(decode_update, records) if u is not None]
                if version := version_to_serve(updates, self.serving.kind, catching_up=False, current_moved_at=None):
                    log.info("model update announced", extra={"fields": {"model": self.serving.kind, "version": version}})
                    self.serving.request(version)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - keep following; the model in use is unaffected
                log.warning("model updates unavailable; retrying", extra={"fields": {"topic": self.topic, "error": repr(error)[:300]}})
                await self._close()
                await asyncio.sleep(self.retry_s)

    async def stop(self) -> None:
        await self._close()

    async def _connect_and_catch_up(self) -> None:
        # Subscribing to a missing topic could auto-create it (not compacted): check it exists first.
        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None, client_id=self.client_id)
        await probe.start()
        try:
            exists = self.topic in await probe.topics()
        finally:
            await probe.stop()
        if not exists:
            raise LookupError(f"topic {self.topic} does not exist (`elmo topics create` makes it)")
        # No group: every partition is assigned to this consumer, and nothing is committed.
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=self.client_id,
        )
        await consumer.start()
        try:
            partitions = sorted(consumer.assignment())
            if not partitions:
                raise LookupError(f"no partitions of {self.topic} assigned")
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            updates: list[ModelUpdate] = []
            while any([await consumer.position(tp) < end[tp] for tp in partitions]):
                batches = await consumer.getmany(timeout_ms=500)
                updates += [u for u in map(decode_update, (r for part in batches.values() for r in part)) if u is not None]
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        version = version_to_serve(updates, self.serving.kind, catching_up=True, current_moved_at=self.current_moved_at())
        log.info(
            "caught up on model updates",
            extra={"fields": {"topic": self.topic, "updates": len(updates), "model": self.serving.kind, "announced": version}},
        )
        if version is not None:
            self.serving.request(version)
            await self.serving.settled()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:  # noqa: BLE001 - closing a broken connection
                log.debug("closing the model-updates consumer failed", exc_info=True)
