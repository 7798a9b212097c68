"""Dialogue state per conversation, kept in Redis and shared by the stages that need it.

Two keys per conversation, each with one writer, so the stages never overwrite each other:

- `elmo:dialogue:<id>` (written by nlu): turns, slots, the product under discussion.
- `elmo:dialogue:<id>:bot` (written by the generator): what the bot last did and asked. When the
  generator asks "which storage size?" in reply to turn N, nlu reading turn N+1 sees
  `awaiting_slot`, so a bare "16GB" is understood as filling that slot; from turn N+2 on the
  question is stale and ignored, without anyone deleting it.

Both expire after an idle time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import redis.asyncio as redis
from pydantic import BaseModel, Field
from redis.asyncio.client import Pipeline

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


class BotState(BaseModel):
    """What the bot did last in a conversation: the generator's memory between turns."""

    turn: int = 0  # the customer turn this state answered
    strategy: str | None = None
    awaiting_slot: str | None = None
    # The flow in progress ("purchase", "order_status", "return_refund"...) that the answer continues.
    pending_intent: str | None = None
    pending_item_id: str | None = None
    offered_item_ids: list[str] = Field(default_factory=list)

    def question_for(self, customer_turn: int) -> str | None:
        """The slot asked in reply to the previous customer turn, if this turn is the next one."""
        return self.awaiting_slot if self.turn == customer_turn else None


def bot_key(conversation_id: str) -> str:
    return KEY_PREFIX + conversation_id + ":bot"


class DialogueStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, ttl_s: int) -> DialogueStore:
        return cls(redis.Redis.from_url(url), ttl_s)

    async def load_many(self, conversation_ids: Iterable[str]) -> dict[str, DialogueState]:
        """nlu's view: each conversation's state with the bot's open question, if still current."""
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return {}
        values = await self._client.mget([k for c in ids for k in (KEY_PREFIX + c, bot_key(c))])
        states = {}
        for index, conversation_id in enumerate(ids):
            raw_state, raw_bot = values[2 * index], values[2 * index + 1]
            state = DialogueState.model_validate_json(raw_state) if raw_state else DialogueState()
            bot = BotState.model_validate_json(raw_bot) if raw_bot else BotState()
            state.awaiting_slot = bot.question_for(state.turn)
            states[conversation_id] = state
        return states

    async def load_bot_states(self, conversation_ids: Iterable[str]) -> dict[str, BotState]:
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return {}
        values = await self._client.mget([bot_key(c) for c in ids])
        return {c: BotState.model_validate_json(v) if v else BotState() for c, v in zip(ids, values, strict=True)}

    async def save_bot_states(self, states: dict[str, BotState], also: Callable[[Pipeline], None] | None = None) -> None:
        """Save in one round trip; `also` queues more writes of the same batch on the pipeline."""
        async with self._client.pipeline(transaction=False) as pipe:
            for conversation_id, state in states.items():
                pipe.set(bot_key(conversation_id), state.model_dump_json(), ex=self.ttl_s)
            if also is not None:
                also(pipe)
            await pipe.execute()

    async def load(self, conversation_id: str) -> DialogueState:
        return (await self.load_many([conversation_id]))[conversation_id]

    async def save_many(self, states: dict[str, DialogueState]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for conversation_id, state in states.items():
                pipe.set(KEY_PREFIX + conversation_id, state.model_dump_json(), ex=self.ttl_s)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()
