"""Platform retries publish once: a message id is claimed (Redis SET NX with a TTL) before publishing.

A claim is released again when the message could not be published (broker down, media fetch to
retry, sender over its rate), so the platform's redelivery is not mistaken for a duplicate.
"""

from __future__ import annotations

import hashlib
import time
from typing import Protocol

import redis.asyncio as redis

KEY_PREFIX = "elmo:ingest:message:"


def dedupe_key(*parts: str) -> str:
    joined = ":".join(parts)
    # Platform ids are short; anything long (or odd) is hashed so keys stay bounded.
    return joined if len(joined) <= 200 else "h:" + hashlib.sha256(joined.encode()).hexdigest()


class MessageClaims(Protocol):
    async def claim(self, key: str) -> bool:
        """True for the first claim of `key` within the TTL, False for a repeat."""
        ...

    async def release(self, key: str) -> None: ...


class RedisMessageClaims:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client, self.ttl_s = client, ttl_s

    async def claim(self, key: str) -> bool:
        return bool(await self.client.set(KEY_PREFIX + key, b"1", nx=True, ex=self.ttl_s))

    async def release(self, key: str) -> None:
        await self.client.delete(KEY_PREFIX + key)


class InMemoryMessageClaims:
    """For tests and for running without Redis: same behaviour, one process only."""

    def __init__(self, ttl_s: float = 3600.0) -> None:
        self.ttl_s = ttl_s
        self.claimed: dict[str, float] = {}

    async def claim(self, key: str) -> bool:
        now = time.monotonic()
        if self.claimed.get(key, 0.0) > now:
            return False
        self.claimed[key] = now + self.ttl_s
        return True

    async def release(self, key: str) -> None:
        self.claimed.pop(key, None)
