"""Which events a service has already handled, so a redelivered event makes no second output.

A key is written only after the event's outputs are acknowledged by Kafka, so a crash before that
leads to reprocessing (never to loss). An event that was dead-lettered is not remembered: replaying
its dead letter after the cause is fixed (`elmo dlq replay`) runs it again; a redelivery of it
before its offset was committed only dead-letters it a second time. Output event ids are derived from the input's id, so even a
crash in the instant between publishing and remembering yields a duplicate that the next stage's
check recognises by id.

The same round trip counts how often each event has been started without being finished: a count
above one means the service died while handling it (a rewind un-counts), which is how a record
that kills its service is found and dead-lettered instead of being read again forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import redis.asyncio as redis


class SeenEvents(Protocol):
    async def already_handled(self, event_ids: Sequence[str]) -> list[bool]: ...

    async def start(self, event_ids: Sequence[str]) -> tuple[list[bool], list[int]]:
        """Whether each event was handled, and how often it has now been started unfinished (1: first time)."""
        ...

    async def unstart(self, event_ids: Iterable[str]) -> None:
        """The events were not finished, but the service did not die: do not count this start."""
        ...

    async def remember(self, event_ids: Iterable[str]) -> None: ...

    async def release(self, event_ids: Iterable[str]) -> None:
        """The events were finished without being handled (dead-lettered): their start counts go and
        they are not remembered, so a replay of the dead letter, once the cause is fixed, runs them."""
        ...


_DECREMENT_IF_PRESENT = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('decr', KEYS[1]) end return 0"


class RedisSeenEvents:
    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int) -> None:
        """`namespace`: the consumer group, so each group remembers what it handled."""
        self._client = client
        self._prefix = f"elmo:handled:{namespace}:"
        self._starts_prefix = f"elmo:starts:{namespace}:"
        self._ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, namespace: str, ttl_s: int) -> RedisSeenEvents:
        return cls(redis.Redis.from_url(url), namespace, ttl_s)

    async def already_handled(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        values = await self._client.mget([self._prefix + event_id for event_id in event_ids])
        return [value is not None for value in values]

    async def start(self, event_ids: Sequence[str]) -> tuple[list[bool], list[int]]:
        if not event_ids:
            return [], []
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.mget([self._prefix + event_id for event_id in event_ids])
            for event_id in event_ids:
                pipe.incr(self._starts_prefix + event_id)
                pipe.expire(self._starts_prefix + event_id, self._ttl_s)
            results = await pipe.execute()
        return [value is not None for value in results[0]], [int(count) for count in results[1::2]]

    async def unstart(self, event_ids: Iterable[str]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                # Only a count still there: a finished event's was deleted, and DECR would make a key without TTL.
                pipe.eval(_DECREMENT_IF_PRESENT, 1, self._starts_prefix + event_id)
            await pipe.execute()

    async def remember(self, event_ids: Iterable[str]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(self._prefix + event_id, b"1", ex=self._ttl_s)
                pipe.delete(self._starts_prefix + event_id)
            await pipe.execute()

    async def release(self, event_ids: Iterable[str]) -> None:
        keys = [self._starts_prefix + event_id for event_id in event_ids]
        if keys:
            await self._client.delete(*keys)

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


class InMemorySeenEvents:
    """For unit tests of cores and of the processing pipeline, where no Redis runs."""

    def __init__(self) -> None:
        self.handled: set[str] = set()
        self.starts: dict[str, int] = {}

    async def already_handled(self, event_ids: Sequence[str]) -> list[bool]:
        return [event_id in self.handled for event_id in event_ids]

    async def start(self, event_ids: Sequence[str]) -> tuple[list[bool], list[int]]:
        for event_id in event_ids:
            self.starts[event_id] = self.starts.get(event_id, 0) + 1
        return await self.already_handled(event_ids), [self.starts[event_id] for event_id in event_ids]

    async def unstart(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            if event_id in self.starts:
                self.starts[event_id] -= 1

    async def remember(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self.handled.add(event_id)
            self.starts.pop(event_id, None)

    async def release(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self.starts.pop(event_id, None)
