"""At most N messages per sender per window: a fixed window counter in Redis (INCR, then EXPIRE).

Over the limit, the webhook answers 429 and the message is not claimed, so the platform's
redelivery gets through once the window has passed: a flood is slowed down, not lost.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Protocol

import redis.asyncio as redis

KEY_PREFIX = "elmo:ingest:rate:"


class RateLimiter(Protocol):
    async def allow(self, sender_key: str) -> bool: ...


class RedisFixedWindow:
    def __init__(self, client: redis.Redis, limit: int, window_s: int) -> None:
        self.client, self.limit, self.window_s = client, limit, window_s

    async def allow(self, sender_key: str) -> bool:
        if self.limit <= 0:
            return True
        key = f"{KEY_PREFIX}{sender_key}:{int(time.time() // self.window_s)}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_s)
            count, _ = await pipe.execute()
        return int(count) <= self.limit


class InMemoryFixedWindow:
    def __init__(self, limit: int, window_s: int) -> None:
        self.limit, self.window_s = limit, window_s
        self.counts: Counter[str] = Counter()

    async def allow(self, sender_key: str) -> bool:
        if self.limit <= 0:
            return True
        key = f"{sender_key}:{int(time.time() // self.window_s)}"
        self.counts[key] += 1
        return self.counts[key] <= self.limit
