"""Never send a reply twice: a claim per reply event id around each send.

The runtime already skips replies it has handled, but it records that only after the outputs are
published: a crash between the platform accepting a message and that record would send it again.
So each send is bracketed: claim the reply (`SET NX` "sending:<token>:<time>"), send, then mark it
"sent". A redelivered reply finds "sent" and is not sent again. It may also find "sending": another
attempt is in flight (a rebalance) or died mid-send. The former finishes within the send lease; the
latter cannot be told apart from a send that reached the customer, so once the lease has passed the
reply is rejected to the dead-letter topic for a person to check rather than sent a second time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

import redis.asyncio as redis

KEY_PREFIX = "elmo:delivery:send:"
SENT = b"sent"
# Delete the claim only if it is still ours (it may have been marked sent, or taken over).
_RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass(frozen=True)
class Claim:
    state: Literal["claimed", "sent", "in_flight"]
    value: bytes = b""  # ours when claimed; the holder's when in flight
    claimed_at: float | None = None  # epoch seconds, when in flight


def _sending_value() -> bytes:
    return f"sending:{uuid.uuid4().hex}:{time.time():.3f}".encode()


def _read(value: bytes) -> Claim:
    if value == SENT:
        return Claim("sent")
    try:
        claimed_at = float(value.decode().rsplit(":", 1)[1])
    except (UnicodeDecodeError, IndexError, ValueError):
        claimed_at = 0.0  # unreadable: treat as long abandoned
    return Claim("in_flight", value, claimed_at)


class SendClaims(Protocol):
    async def claim(self, reply_id: str) -> Claim: ...

    async def mark_sent(self, reply_id: str) -> None: ...

    async def release(self, reply_id: str, claim: Claim) -> None: ...


class RedisSendClaims:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client, self.ttl_s = client, ttl_s
        self._release = client.register_script(_RELEASE_IF_OURS)

    @classmethod
    def from_url(cls, url: str, ttl_s: int) -> RedisSendClaims:
        return cls(redis.Redis.from_url(url), ttl_s)

    async def claim(self, reply_id: str) -> Claim:
        key = KEY_PREFIX + reply_id
        for _ in range(3):  # a claim released between our SET and GET: try again
            value = _sending_value()
            if await self.client.set(key, value, nx=True, ex=self.ttl_s):
                return Claim("claimed", value)
            if (held := await self.client.get(key)) is not None:
                return _read(held)
        raise RuntimeError(f"could not claim reply {reply_id}: the claim keeps changing")

    async def mark_sent(self, reply_id: str) -> None:
        await self.client.set(KEY_PREFIX + reply_id, SENT, ex=self.ttl_s)

    async def release(self, reply_id: str, claim: Claim) -> None:
        await self._release(keys=[KEY_PREFIX + reply_id], args=[claim.value])

    async def close(self) -> None:
        await self.client.aclose()


class InMemorySendClaims:
    """For unit tests: the same states, one process only."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def claim(self, reply_id: str) -> Claim:
        if (held := self.values.get(reply_id)) is not None:
            return _read(held)
        value = _sending_value()
        self.values[reply_id] = value
        return Claim("claimed", value)

    async def mark_sent(self, reply_id: str) -> None:
        self.values[reply_id] = SENT

    async def release(self, reply_id: str, claim: Claim) -> None:
        if self.values.get(reply_id) == claim.value:
            del self.values[reply_id]
