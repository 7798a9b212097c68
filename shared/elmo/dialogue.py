"""Dialogue state per conversation, kept in Redis and shared by the stages that need it.

nlu reads and updates it every turn (history, slots, the product under discussion); the generator
sets `awaiting_slot` when it asks the customer a question, so the next short answer ("16GB") is
understood as filling that slot. State expires after an idle time.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as redis
from pydantic import BaseModel, Field

KEY_PREFIX = "elmo:dialogue:"
APPLIED_IDS_KEPT = 20


class Turn(BaseModel):
    event_id: str
    text: str
    intent: str


class DialogueState(BaseModel):
    turn: int = 0
    slots: dict[str, str] = Field(default_factory=dict)
    product_in_focus: str | None = None
    awaiting_slot: str | None = None
    history: list[Turn] = Field(default_factory=list)
    # Event ids already applied, so a redelivered turn does not count twice.
    applied_event_ids: list[str] = Field(default_factory=list)

    def already_applied(self, event_id: str) -> bool:
        return event_id in self.applied_event_ids

    def record(self, event_id: str, text: str, intent: str, max_turns: int) -> None:
        self.turn += 1
        self.history = [*self.history, Turn(event_id=event_id, text=text, intent=intent)][-max_turns:]
        self.applied_event_ids = [*self.applied_event_ids, event_id][-APPLIED_IDS_KEPT:]


class DialogueStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, ttl_s: int) -> DialogueStore:
        return cls(redis.Redis.from_url(url), ttl_s)

    async def load_many(self, conversation_ids: Iterable[str]) -> dict[str, DialogueState]:
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return {}
        values = await self._client.mget([KEY_PREFIX + c for c in ids])
        return {c: DialogueState.model_validate_json(v) if v else DialogueState() for c, v in zip(ids, values, strict=True)}

    async def load(self, conversation_id: str) -> DialogueState:
        return (await self.load_many([conversation_id]))[conversation_id]

    async def save_many(self, states: dict[str, DialogueState]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for conversation_id, state in states.items():
                pipe.set(KEY_PREFIX + conversation_id, state.model_dump_json(), ex=self.ttl_s)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()
