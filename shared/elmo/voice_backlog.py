"""Which conversations have messages waiting in asr: how text overtakes voice without reordering a conversation.

A voice note takes Whisper a second or more; a text message needs a few milliseconds. intake sends
text straight to `elmo.utterances` unless a message of the same conversation is still queued for
asr, in which case the text queues behind it on `elmo.voice-notes` and keeps the conversation's
order. The queue is this Redis set per conversation, with one writer on each side:

- intake adds a message's origin id *before* it publishes the message to `elmo.voice-notes`;
- asr removes it *after* the message's utterance is acknowledged by Kafka (or its dead letter, or
  after skipping it as a duplicate), so "empty" always means "nothing of this conversation is
  ahead in asr".

Both sides are idempotent (set add and remove), so redelivery after a crash cannot unbalance them.
A mark that is never removed (a record asr cannot even decode) expires after `ttl_s`; until then the
conversation's text takes the slower path through asr, which is still in order.

Key: `elmo:voice-backlog:<conversation id>` (set of origin event ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as redis

KEY_PREFIX = "elmo:voice-backlog:"
DEFAULT_TTL_S = 3600


def backlog_key(conversation_id: str) -> str:
    return KEY_PREFIX + conversation_id


class VoiceBacklog:
    def __init__(self, client: redis.Redis, ttl_s: int = DEFAULT_TTL_S) -> None:
        self._client = client
        self._ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, ttl_s: int = DEFAULT_TTL_S) -> VoiceBacklog:
        return cls(redis.Redis.from_url(url, decode_responses=True), ttl_s)

    async def waiting(self, conversation_ids: Iterable[str]) -> set[str]:
        """The conversations among these with at least one message queued for asr."""
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return set()
        async with self._client.pipeline(transaction=False) as pipe:
            for conversation_id in ids:
                pipe.exists(backlog_key(conversation_id))
            found = await pipe.execute()
        return {conversation_id for conversation_id, exists in zip(ids, found, strict=True) if exists}

    async def add(self, queued: Sequence[tuple[str, str]]) -> None:
        """Mark (conversation id, origin event id) pairs as queued for asr."""
        if not queued:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for conversation_id, origin_event_id in queued:
                pipe.sadd(backlog_key(conversation_id), origin_event_id)
                pipe.expire(backlog_key(conversation_id), self._ttl_s)
            await pipe.execute()

    async def remove(self, done: Sequence[tuple[str, str]]) -> None:
        """Unmark (conversation id, origin event id) pairs whose result is published."""
        if not done:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for conversation_id, origin_event_id in done:
                pipe.srem(backlog_key(conversation_id), origin_event_id)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()
