"""The interaction log the recommender learns from, kept in Redis and shared by every replica.

The feedback-trainer records each view, click and purchase of a recommended item; the recommender
reads a user's history at request time (so a purchase reaches the next recommendation within
seconds, without a refit) and `elmo train recommender --from redis` fits ALS on all of it.

Keys (`<prefix>` is `elmo:interactions`, `ELMO_INTERACTIONS_KEY_PREFIX`):
- `<prefix>:weights:<user>`   hash item -> accumulated confidence weight (VIEW + CLICK + ...)
- `<prefix>:purchases:<user>` sorted set item -> time of the last purchase (epoch seconds)
- `<prefix>:views:<user>`     hash item -> number of views (impressions: the item was shown)
- `<prefix>:popularity`       sorted set item -> decayed weight of clicks and purchases, in a
                              time-scaled unit (below); views are impressions of what the
                              recommender chose to show, and counting them would make what it
                              showed popular, so what it shows next
- `<prefix>:users`            set of users with at least one interaction
- `<prefix>:applied:<event>`  marker that one feedback event was recorded (idempotency, with TTL)

Popularity decays with a half-life ("popular this week"): a click or purchase of weight w at time t adds
w * 2^((t - EPOCH) / half_life) to its item, so reading at time `now` and multiplying by
2^(-(now - EPOCH) / half_life) gives sum(w * 2^(-(now - t) / half_life)) with one sorted set and
no periodic job. Redis scores are doubles: with a 7-day half-life this is good for ~19 years past
EPOCH.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cached_property

import redis.asyncio as redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from elmo.contracts.events import Feedback, FeedbackKind

KEY_PREFIX = "elmo:interactions"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
# A producer sets `created_at`; an event dated ahead of now is taken as of now (plus this much clock
# skew), or one dated 2035 would outweigh every real click (2^(t/half-life)) and 2100 overflows.
MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0
# An interaction log outlives the idempotency keys of the runtime: a user's history is kept a year
# after their last interaction; applied-event markers only as long as a redelivery can happen.
DEFAULT_HISTORY_TTL_S = 365 * 24 * 3600
DEFAULT_APPLIED_TTL_S = 7 * 24 * 3600


class InteractionSettings(BaseSettings):
    """Shared by the writer (feedback-trainer) and the readers (recommender, training): the decay
    must be the same on both sides for the popularity counters to mean anything."""

    model_config = SettingsConfigDict(env_prefix="ELMO_", extra="ignore")

    interactions_half_life_days: float = Field(DEFAULT_HALF_LIFE_S / 86400, gt=0, description="Popularity counters halve over this many days.")
    interactions_history_ttl_s: int = Field(DEFAULT_HISTORY_TTL_S, ge=1, description="A user's interactions are kept this long after the last one.")
    interactions_applied_ttl_s: int = Field(DEFAULT_APPLIED_TTL_S, ge=1, description="How long a recorded feedback event id is remembered (no double count).")
    interactions_key_prefix: str = Field(KEY_PREFIX, description="Prefix of the interaction keys in Redis (one per brand or test run).")


class InteractionKind(str, Enum):
    VIEW = "view"
    CLICK = "click"
    PURCHASE = "purchase"


# Confidence each kind adds to a user's (user, item) cell: the one place these numbers live.
WEIGHTS: dict[InteractionKind, float] = {
    InteractionKind.VIEW: 1.0,
    InteractionKind.CLICK: 4.0,
    InteractionKind.PURCHASE: 10.0,
}

_FEEDBACK_KINDS: dict[FeedbackKind, InteractionKind] = {
    FeedbackKind.RECOMMENDATION_VIEWED: InteractionKind.VIEW,
    FeedbackKind.RECOMMENDATION_CLICKED: InteractionKind.CLICK,
    FeedbackKind.RECOMMENDATION_PURCHASED: InteractionKind.PURCHASE,
}


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    kind: InteractionKind
    at: datetime
    # The feedback event it came from: recording the same event twice counts once.
    event_id: str | None = None

    @property
    def weight(self) -> float:
        return WEIGHTS[self.kind]


def interaction_from_feedback(event: Feedback) -> Interaction | None:
    """A view, click or purchase of an item; None for other feedback or one without an item."""
    kind = _FEEDBACK_KINDS.get(event.kind)
    if kind is None or not event.item_id:
        return None
    return Interaction(event.user_id, event.item_id, kind, min(event.created_at, datetime.now(UTC) + MAX_CLOCK_SKEW), event.event_id)


@dataclass(frozen=True)
class UserHistory:
    """What one user did: accumulated weight per item, what they bought (item -> time), and how
    often each item was shown to them (views are impressions: the delivery reports every
    recommendation it sends, whether or not the user cared)."""

    weights: dict[str, float] = field(default_factory=dict)
    purchases: dict[str, float] = field(default_factory=dict)
    views: dict[str, float] = field(default_factory=dict)

    @cached_property
    def engagement(self) -> dict[str, float]:
        """The weight of what the user chose to do (clicks, purchases): `weights` without the
        views. A history recorded before views were counted apart keeps all of its weight."""
        view = WEIGHTS[InteractionKind.VIEW]
        engaged = {item: weight - view * self.views.get(item, 0.0) for item, weight in self.weights.items()}
        return {item: weight for item, weight in engaged.items() if weight > 1e-6}

    @property
    def purchased(self) -> frozenset[str]:
        return frozenset(self.purchases)

    def purchases_by_time(self) -> list[str]:
        return sorted(self.purchases, key=lambda item: (self.purchases[item], item))

    @property
    def is_empty(self) -> bool:
        return not self.weights and not self.purchases


def users_key(prefix: str) -> str:
    """The set of users with an interaction: empty when nothing was recorded (or Redis lost it)."""
    return f"{prefix}:users"


def decay_factor(at: float, half_life_s: float) -> float:
    """What an interaction at epoch second `at` adds per unit of weight (see the module doc)."""
    return 2.0 ** ((at - EPOCH) / half_life_s)


# One feedback event, atomically: skipped if already applied, else weight, purchase, then a view's
# count or a click's / purchase's popularity.
_RECORD = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[8])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
if ARGV[9] == '1' then
  redis.call('HINCRBY', KEYS[6], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[6], ARGV[8])
else
  redis.call('ZINCRBY', KEYS[4], ARGV[6], ARGV[2])
end
redis.call('SADD', KEYS[5], ARGV[7])
return 1
"""


class InteractionStore:
    def __init__(
        self,
        client: redis.Redis,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        history_ttl_s: int = DEFAULT_HISTORY_TTL_S,
        applied_ttl_s: int = DEFAULT_APPLIED_TTL_S,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self._client = client
        self.half_life_s = half_life_s
        self.history_ttl_s = history_ttl_s
        self.applied_ttl_s = applied_ttl_s
        self.prefix = prefix
        self._record = client.register_script(_RECORD)

    @classmethod
    def from_url(cls, url: str, settings: InteractionSettings | None = None, prefix: str | None = None) -> InteractionStore:
        settings = settings or InteractionSettings()
        return cls(
            redis.Redis.from_url(url, decode_responses=True),
            half_life_s=settings.interactions_half_life_days * 86400,
            history_ttl_s=settings.interactions_history_ttl_s,
            applied_ttl_s=settings.interactions_applied_ttl_s,
            prefix=prefix or settings.interactions_key_prefix,
        )

    def _weights_key(self, user_id: str) -> str:
        return f"{self.prefix}:weights:{user_id}"

    def _purchases_key(self, user_id: str) -> str:
        return f"{self.prefix}:purchases:{user_id}"

    def _views_key(self, user_id: str) -> str:
        return f"{self.prefix}:views:{user_id}"

    @property
    def _popularity_key(self) -> str:
        return f"{self.prefix}:popularity"

    @property
    def _users_key(self) -> str:
        return users_key(self.prefix)

    async def record_many(self, interactions: Sequence[Interaction]) -> int:
        """Record interactions in one round trip; returns how many were new (not applied before)."""
        if not interactions:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for interaction in interactions:
                at = interaction.at.timestamp()
                applied = interaction.event_id or f"{interaction.user_id}/{interaction.item_id}/{interaction.kind.value}/{at}"
                await self._record(
                    keys=[
                        f"{self.prefix}:applied:{applied}",
                        self._weights_key(interaction.user_id),
                        self._purchases_key(interaction.user_id),
                        self._popularity_key,
                        self._users_key,
                        self._views_key(interaction.user_id),
                    ],
                    args=[
                        self.applied_ttl_s,
                        interaction.item_id,
                        repr(interaction.weight),
                        "1" if interaction.kind is InteractionKind.PURCHASE else "0",
                        repr(at),
                        repr(interaction.weight * decay_factor(at, self.half_life_s)),
                        interaction.user_id,
                        self.history_ttl_s,
                        "1" if interaction.kind is InteractionKind.VIEW else "0",
                    ],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def record(self, interaction: Interaction) -> bool:
        return await self.record_many([interaction]) == 1

    async def histories(self, user_ids: Iterable[str]) -> dict[str, UserHistory]:
        """Each user's history in one round trip (an empty history for a user never seen)."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.hgetall(self._weights_key(user))
                pipe.zrange(self._purchases_key(user), 0, -1, withscores=True)
                pipe.hgetall(self._views_key(user))
            replies = await pipe.execute()
        histories = {}
        for position, user in enumerate(users):
            weights, purchases, views = replies[3 * position : 3 * position + 3]
            histories[user] = UserHistory(
                weights={item: float(weight) for item, weight in weights.items()},
                purchases={item: float(at) for item, at in purchases},
                views={item: float(count) for item, count in views.items()},
            )
        return histories

    async def history(self, user_id: str) -> UserHistory:
        return (await self.histories([user_id]))[user_id]

    async def popularity(self, now: datetime | None = None) -> dict[str, float]:
        """Decayed weight per item at `now`: an interaction a half-life ago counts half."""
        at = (now or datetime.now(UTC)).timestamp()
        scale = 1.0 / decay_factor(at, self.half_life_s)
        scored = await self._client.zrange(self._popularity_key, 0, -1, withscores=True)
        return {item: score * scale for item, score in scored}

    async def users(self) -> list[str]:
        return sorted(await self._client.smembers(self._users_key))

    async def all_histories(self, chunk: int = 500) -> dict[str, UserHistory]:
        """Every user's history (for training), read in chunks of `chunk` users."""
        users = await self.users()
        histories: dict[str, UserHistory] = {}
        for start in range(0, len(users), chunk):
            histories.update(await self.histories(users[start : start + chunk]))
        return {user: history for user, history in histories.items() if not history.is_empty}

    async def close(self) -> None:
        await self._client.aclose()
