"""Offset commits that trail processing by at most `interval_s`.

Only offsets of records whose outputs Kafka has acknowledged are ever committed (tracked here
explicitly, never "whatever the consumer has fetched"), so a crash can only cause redelivery, and
redelivered events are skipped by the idempotency check. Committing every few milliseconds rather
than after every batch saves a broker round trip per batch; offsets are also committed at once
when partitions are revoked and when the service shuts down, so a rebalance or a deploy
redelivers nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from elmo.runtime.records import ConsumedRecord

log = logging.getLogger("elmo.runtime")


class OffsetCommitter:
    def __init__(self, consumer: Callable[[], AIOKafkaConsumer | None], interval_s: float) -> None:
        self._consumer = consumer
        self.interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._lock = asyncio.Lock()

    def mark_done(self, records: Iterable[ConsumedRecord]) -> None:
        """Records whose outputs are durable: their offsets may now be committed."""
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)

    async def commit_if_due(self) -> None:
        if self._pending and time.monotonic() - self._last_commit >= self.interval_s:
            await self.flush()

    async def flush(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        async with self._lock:
            wanted = set(partitions) if partitions is not None else None
            offsets = {tp: o for tp, o in self._pending.items() if wanted is None or tp in wanted}
            consumer = self._consumer()
            if not offsets or consumer is None:
                return
            await consumer.commit(offsets)
            for partition, offset in offsets.items():
                if self._pending.get(partition) == offset:
                    del self._pending[partition]
            self._last_commit = time.monotonic()

    async def run_periodically(self) -> None:
        """Commit finished work even when no new batch arrives to trigger it."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.commit_if_due()
            except Exception:  # noqa: BLE001 - a failed commit is retried on the next tick
                log.warning("periodic offset commit failed; will retry", exc_info=True)


class CommitOnRevoke(ConsumerRebalanceListener):
    """Commits finished work for partitions about to move to another consumer."""

    def __init__(self, committer: OffsetCommitter, forget: Callable[[list[tuple[str, int]]], None] | None = None) -> None:
        self.committer = committer
        self.forget = forget

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.forget is not None:
            self.forget([(tp.topic, tp.partition) for tp in revoked])
        try:
            await self.committer.flush(revoked)
        except Exception:  # noqa: BLE001 - the new owner will skip what we finished, via idempotency
            log.warning("offset commit on revoke failed", exc_info=True)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None
