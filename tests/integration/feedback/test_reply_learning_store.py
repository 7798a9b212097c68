"""The reply index and the bandit's counts on the real Redis: written with the bot state, counted
once per feedback event, and capped per user and hour."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis

from elmo.dialogue import DialogueStore
from elmo.reply_bandit import ArmCounts, Outcome, ReplyLearningStore, Reward
from elmo.runtime.settings import ConnectionSettings
from services.generator.core import ReplyGenerator
from services.generator.service import load_brand
from tests.unit.generator.conftest import turn

pytestmark = pytest.mark.integration
AT = datetime(2026, 11, 1, 12, 5, tzinfo=UTC).timestamp()


async def _with_store(redis_url: str, check) -> None:  # noqa: ANN001
    prefix = f"test:learning:{uuid.uuid4().hex[:8]}"
    store = ReplyLearningStore(redis.Redis.from_url(redis_url, decode_responses=True), ttl_s=600, prefix=prefix)
    try:
        await check(store)
    finally:
        keys = [k async for k in store._client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await store._client.delete(*keys)
        await store.close()


def rated(feedback_id: str, user: str, success: bool, at: float = AT) -> Reward:
    return Reward(feedback_id, user, "greet", "greet:1", success, at, rate_limited=True)


def test_a_reward_counts_once_per_feedback_event(connections: ConnectionSettings) -> None:
    async def check(store: ReplyLearningStore) -> None:
        first = await store.apply_rewards([rated("fb-1", "u1", True), rated("fb-2", "u1", False), rated("fb-1", "u1", True)], 10)
        assert first == [Outcome.COUNTED, Outcome.COUNTED, Outcome.ALREADY_COUNTED]
        assert await store.apply_rewards([rated("fb-2", "u1", False)], 10) == [Outcome.ALREADY_COUNTED]
        assert await store.counts(["greet", "welcome"]) == {"greet": {"greet:1": ArmCounts(1, 1)}}

    asyncio.run(_with_store(connections.redis_url, check))


def test_ratings_beyond_the_hourly_cap_of_one_user_do_not_count(connections: ConnectionSettings) -> None:
    async def check(store: ReplyLearningStore) -> None:
        flood = [rated(f"fb-{n}", "troll", False) for n in range(50)]
        outcomes = await store.apply_rewards(flood, 3)
        assert outcomes.count(Outcome.COUNTED) == 3 and outcomes.count(Outcome.RATE_LIMITED) == 47
        # A redelivered flood changes nothing, even the refused ones stay refused.
        assert set(await store.apply_rewards(flood, 3)) == {Outcome.ALREADY_COUNTED}
        # Another user, the next hour, and clicks (not ratings) are not held back by the cap.
        click = Reward("click-1", "troll", "greet", "greet:1", True, AT, rate_limited=False)
        later = rated("fb-later", "troll", True, at=AT + timedelta(hours=1).total_seconds())
        assert await store.apply_rewards([rated("fb-x", "fan", True), click, later], 3) == [Outcome.COUNTED] * 3
        assert (await store.counts(["greet"]))["greet"]["greet:1"] == ArmCounts(3, 3)

    asyncio.run(_with_store(connections.redis_url, check))


def test_the_generator_indexes_each_reply_with_the_bot_state(connections: ConnectionSettings) -> None:
    async def check(store: ReplyLearningStore) -> None:
        dialogue = DialogueStore.from_url(connections.redis_url, 60)
        generator = ReplyGenerator(load_brand(), dialogue, reply_index=store)
        try:
            events = [turn("greeting", "hello there"), turn("thanks", "thanks a lot")]
            replies = await generator.reply_batch(events)
        finally:
            await dialogue.close()
        found = await store.replies([r.event_id for r in replies] + ["never-sent"])
        assert set(found) == {r.event_id for r in replies}
        for reply, event in zip(replies, events, strict=True):
            record = found[reply.event_id]
            assert (record.strategy, record.variant, record.intent, record.text) == (reply.strategy, reply.variant, event.intent.name, event.text)
            assert (record.conversation_id, record.user_id) == ("c1", "u1")
            assert 0 < await store._client.ttl(store.reply_key(reply.event_id)) <= 600

    asyncio.run(_with_store(connections.redis_url, check))
