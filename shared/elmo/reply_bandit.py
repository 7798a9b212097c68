"""What the reply-variant bandit learns from, kept in Redis: which reply said what, and how it did.

The generator writes one index entry per reply; the feedback-trainer reads it to credit a
reaction (a rating, a click on a recommended item) to the strategy and variant that earned it,
and adds the reward to that strategy's counts; the generator reads the counts back to sample.

Keys (`<prefix>` is `elmo`, `ELMO_LEARNING_KEY_PREFIX`):
- `<prefix>:reply:<reply event id>`       hash: strategy, variant, intent, text (the customer's
                                           message), conversation, user, and what nlu and
                                           sentiment made of the message (intent_confidence,
                                           sentiment, sentiment_score: absent from entries
                                           written before them, and when unknown); expires after
                                           `ELMO_REPLY_INDEX_TTL_S`
- `<prefix>:bandit:<strategy>`            hash: `success:<variant>` / `failure:<variant>` -> count
- `<prefix>:bandit-applied:<feedback id>` a reward already counted (or refused): no double count
- `<prefix>:bandit-rate:<user>:<hour>`    rated feedbacks of one user in one hour (poisoning guard)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import redis.asyncio as redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio.client import Pipeline

from elmo.contracts.events import Reply

KEY_PREFIX = "elmo"
DEFAULT_REPLY_INDEX_TTL_S = 7 * 24 * 3600
HOUR_S = 3600


class ReplyLearningSettings(BaseSettings):
    """Shared by the writer of the index (generator) and its reader (feedback-trainer)."""

    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    reply_index_ttl_s: int = Field(
        DEFAULT_REPLY_INDEX_TTL_S, ge=1, description="How long a reply stays creditable: its index entry (and reward markers) expire after this."
    )
    learning_key_prefix: str = Field(KEY_PREFIX, description="Prefix of the reply index and bandit keys in Redis (one per brand or test run).")


@dataclass(frozen=True)
class ReplyRecord:
    """One reply as the index keeps it: enough to credit a reaction and to relabel its message.

    The predictions (intent confidence, sentiment) let a reply rated +1 teach the heads what they
    were sure of (the feedback-trainer's confident weak labels); entries without them teach nothing."""

    event_id: str
    strategy: str
    variant: str
    intent: str
    text: str
    conversation_id: str
    user_id: str
    intent_confidence: float | None = None
    sentiment_label: str = ""
    sentiment_score: float | None = None

    @classmethod
    def of(cls, reply: Reply) -> ReplyRecord:
        return cls(
            reply.event_id, reply.strategy, reply.variant or "", reply.intent or "", reply.in_reply_to_text or "",
            reply.conversation_id, reply.user_id, reply.intent_confidence, reply.sentiment_label or "", reply.sentiment_score,
        )  # fmt: skip

    def fields(self) -> dict[str, str]:
        fields = {
            "strategy": self.strategy, "variant": self.variant, "intent": self.intent, "text": self.text,
            "conversation": self.conversation_id, "user": self.user_id,
        }  # fmt: skip
        # Unknown predictions are left out rather than written as "": a reader cannot mistake them for a score.
        if self.intent_confidence is not None:
            fields["intent_confidence"] = repr(float(self.intent_confidence))
        if self.sentiment_label:
            fields["sentiment"] = self.sentiment_label
        if self.sentiment_score is not None:
            fields["sentiment_score"] = repr(float(self.sentiment_score))
        return fields

    @classmethod
    def from_fields(cls, event_id: str, fields: dict[str, str]) -> ReplyRecord:
        return cls(
            event_id, fields.get("strategy", ""), fields.get("variant", ""), fields.get("intent", ""), fields.get("text", ""),
            fields.get("conversation", ""), fields.get("user", ""), _number(fields.get("intent_confidence")),
            fields.get("sentiment", ""), _number(fields.get("sentiment_score")),
        )  # fmt: skip


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class Outcome(IntEnum):
    """What happened to one reward."""

    ALREADY_COUNTED = 0
    COUNTED = 1
    RATE_LIMITED = 2


@dataclass(frozen=True)
class Reward:
    feedback_event_id: str
    user_id: str
    strategy: str
    variant: str
    success: bool
    at: float  # epoch seconds of the feedback: the hour it counts against
    rate_limited: bool = True  # subject to the per-user hourly cap


@dataclass(frozen=True)
class ArmCounts:
    successes: int = 0
    failures: int = 0


# One reward, atomically: skip if counted; a capped one over the user's hourly limit is marked
# (so a redelivery does not count it later) but not added.
_APPLY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local limit = tonumber(ARGV[3])
if limit >= 0 then
  local seen = redis.call('INCR', KEYS[3])
  if seen == 1 then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
  if seen > limit then
    redis.call('SET', KEYS[1], 'rate_limited', 'EX', ARGV[1])
    return 2
  end
end
redis.call('SET', KEYS[1], 'counted', 'EX', ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return 1
"""


def parse_counts(fields: dict[str, str]) -> dict[str, ArmCounts]:
    """`success:<variant>` / `failure:<variant>` fields -> counts per variant."""
    counts: dict[str, list[int]] = {}
    for name, value in fields.items():
        kind, _, variant = name.partition(":")
        if kind in ("success", "failure") and variant:
            counts.setdefault(variant, [0, 0])[kind == "failure"] += int(value)
    return {variant: ArmCounts(s, f) for variant, (s, f) in counts.items()}


class ReplyLearningStore:
    def __init__(self, client: redis.Redis, ttl_s: int = DEFAULT_REPLY_INDEX_TTL_S, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._apply = client.register_script(_APPLY)

    @classmethod
    def from_url(cls, url: str, settings: ReplyLearningSettings | None = None) -> ReplyLearningStore:
        settings = settings or ReplyLearningSettings()
        return cls(redis.Redis.from_url(url, decode_responses=True), settings.reply_index_ttl_s, settings.learning_key_prefix)

    def reply_key(self, event_id: str) -> str:
        return f"{self.prefix}:reply:{event_id}"

    def bandit_key(self, strategy: str) -> str:
        return f"{self.prefix}:bandit:{strategy}"

    # --- the reply index ---------------------------------------------------------------------------

    def index_replies(self, pipe: Pipeline, replies: Iterable[Reply]) -> None:
        """Queue the index entries of `replies` on `pipe` (the caller's batch pipeline)."""
        for reply in replies:
            key = self.reply_key(reply.event_id)
            pipe.hset(key, mapping=ReplyRecord.of(reply).fields())
            pipe.expire(key, self.ttl_s)

    async def replies(self, event_ids: Iterable[str]) -> dict[str, ReplyRecord]:
        """The index entries still there, by reply event id, in one round trip."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hgetall(self.reply_key(event_id))
            found = await pipe.execute()
        return {i: ReplyRecord.from_fields(i, f) for i, f in zip(ids, found, strict=True) if f}

    # --- the bandit's counts -----------------------------------------------------------------------

    async def apply_rewards(self, rewards: Sequence[Reward], rated_per_user_per_hour: int) -> list[Outcome]:
        """Count each reward once per feedback event; rated ones beyond the user's hourly cap do not count."""
        if not rewards:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for reward in rewards:
                hour = int(reward.at // HOUR_S)
                await self._apply(
                    keys=[
                        f"{self.prefix}:bandit-applied:{reward.feedback_event_id}",
                        self.bandit_key(reward.strategy),
                        f"{self.prefix}:bandit-rate:{reward.user_id}:{hour}",
                    ],
                    args=[
                        self.ttl_s,
                        f"{'success' if reward.success else 'failure'}:{reward.variant}",
                        rated_per_user_per_hour if reward.rate_limited else -1,
                        2 * HOUR_S,
                    ],
                    client=pipe,
                )
            results = await pipe.execute()
        return [Outcome(int(r)) for r in results]

    async def counts(self, strategies: Iterable[str]) -> dict[str, dict[str, ArmCounts]]:
        """Counts per variant for each strategy that has any, in one round trip."""
        names = list(dict.fromkeys(strategies))
        if not names:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for strategy in names:
                pipe.hgetall(self.bandit_key(strategy))
            found = await pipe.execute()
        return {s: parse_counts(f) for s, f in zip(names, found, strict=True) if f}

    async def close(self) -> None:
        await self._client.aclose()
