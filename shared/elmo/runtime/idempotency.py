"""Which events a service has already handled, so a redelivered event makes no second output.

A key is written only after the event's outputs are acknowledged by Kafka, so a crash before that
leads to reprocessing (never to loss). Output event ids are derived from the input's id, so even a
crash in the instant between publishing and remembering yields a duplicate that the next stage's
check recognises by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import redis.asyncio as redis


class SeenEvents(Protocol):
    async def already_handled(self, event_ids: Sequence[str]) -> list[bool]: ...

    async def remember(self, event_ids: Iterable[str]) -> None: ...


class RedisSeenEvents:
    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int) -> None:
        """`namespace`: the consumer group, so each group remembers what it handled."""
        self._client = client
        self._prefix = f"elmo:handled:{namespace}:"
        self._ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, namespace: str, ttl_s: int) -> RedisSeenEvents:
        return cls(redis.Redis.from_url(url), namespace, ttl_s)

    async def already_handled(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        values = await self._client.mget([self._prefix + event_id for event_id in event_ids])
        return [value is not None for value in values]

    async def remember(self, event_ids: Iterable[str]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(self._prefix + event_id, b"1", ex=self._ttl_s)
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


class InMemorySeenEvents:
    """For unit tests of cores and of the processing pipeline, where no Redis runs."""

    def __init__(self) -> None:
        self.handled: set[str] = set()

    async def already_handled(self, event_ids: Sequence[str]) -> list[bool]:
        return [event_id in self.handled for event_id in event_ids]

    async def remember(self, event_ids: Iterable[str]) -> None:
        self.handled.update(event_ids)
