"""The rebuild's replay equals live processing, on the real Redis: the same replies and reactions
fed to the feedback-trainer's core the way the trainer gets them (small batches, partitions
interleaved) under one prefix, and replayed by `elmo state rebuild`'s `apply_log` under another,
give the same histories, popularity, bandit counts (the hourly cap included), pending corrections
and weak labels; a second replay changes nothing; a reaction that came after its reply's entry
expired is not credited."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis

from elmo.contracts.events import Channel, Feedback, FeedbackKind, Reply
from elmo.interactions import InteractionStore
from elmo.learning.feedback import FeedbackLearner
from elmo.reply_bandit import ReplyLearningStore
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.state_rebuild import PARTS, RebuildReport, StateRebuildSettings, apply_log, collectors_for

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
NOW = datetime.now(UTC)
ITEMS = [f"item-{i}" for i in range(6)]


def the_log() -> tuple[list[Reply], list[Feedback]]:
    """Replies of 4 users, then their reactions in time order (one conversation each)."""
    rng = random.Random(7)
    replies, feedback = [], []
    start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)  # every reaction in one hour: the caps are exact
    for u in range(4):
        user, conversation = f"u{u}-{RUN}", f"c{u}-{RUN}"
        for r in range(3):
            replies.append(Reply(
                event_id=f"r{u}{r}-{RUN}", conversation_id=conversation, user_id=user, channel=Channel.WEB, text="here you go",
                strategy="recommend", variant=f"recommend:{r % 2}", in_reply_to_text=f"what should i buy {u} {r}", intent="recommendation_request",
                intent_confidence=0.95, sentiment_label="positive", sentiment_score=0.9, created_at=start + timedelta(minutes=r),
            ))  # fmt: skip
    at = start + timedelta(minutes=10)

    def react(user: int, kind: FeedbackKind, **fields) -> None:  # noqa: ANN003
        nonlocal at
        at += timedelta(seconds=7)
        feedback.append(Feedback(conversation_id=f"c{user}-{RUN}", user_id=f"u{user}-{RUN}", channel=Channel.WEB, kind=kind, created_at=at, **fields))

    for step in range(60):
        user, r = rng.randrange(4), rng.randrange(3)
        reply_id, item = f"r{user}{r}-{RUN}", rng.choice(ITEMS)
        kind = rng.choice([FeedbackKind.RECOMMENDATION_VIEWED] * 3 + [FeedbackKind.RECOMMENDATION_CLICKED, FeedbackKind.RECOMMENDATION_PURCHASED])
        react(user, kind, item_id=item, reply_event_id=reply_id)
        if step % 3 == 0:
            react(user, FeedbackKind.REPLY_RATED, reply_event_id=reply_id, rating=rng.choice([1, 1, -1]))
    for _ in range(12):  # user 0 rates 12 times in one hour: the cap counts 10
        react(0, FeedbackKind.REPLY_RATED, reply_event_id=f"r00-{RUN}", rating=1)
    for i in range(7):  # corrections by one agent: 5 of a kind an hour
        react(1, FeedbackKind.INTENT_CORRECTED, reply_event_id=f"r1{i % 3}-{RUN}", corrected_label="complaint", agent_id="agent")
    react(2, FeedbackKind.SENTIMENT_CORRECTED, reply_event_id=f"r20-{RUN}", corrected_label="negative")
    react(3, FeedbackKind.INTENT_CORRECTED, reply_event_id=f"nowhere-{RUN}", corrected_label="complaint")  # dead-lettered live
    return replies, feedback


def as_trainer_gets_them(feedback: list[Feedback]) -> list[list[Feedback]]:
    """Batches of 5 in a fetch order that interleaves conversations (each one's own order kept)."""
    queues: dict[str, list[Feedback]] = {}
    for event in feedback:
        queues.setdefault(event.conversation_id, []).append(event)
    rng, order = random.Random(3), []
    while any(queues.values()):
        conversation = rng.choice(sorted(c for c, queue in queues.items() if queue))
        take = rng.randint(1, 4)
        order += queues[conversation][:take]
        queues[conversation] = queues[conversation][take:]
    return [order[i : i + 5] for i in range(0, len(order), 5)]


def settings_for(connections: ConnectionSettings, prefix: str) -> StateRebuildSettings:
    return StateRebuildSettings(
        redis_url=connections.redis_url, interactions_key_prefix=f"{prefix}:interactions", learning_key_prefix=prefix,
        trainer_weak_labels_per_user_per_hour=50,
    )  # fmt: skip


async def live(settings: StateRebuildSettings, replies: list[Reply], feedback: list[Feedback]) -> None:
    """What the generator and the feedback-trainer do: index each reply, learn from batches."""
    interactions = InteractionStore.from_url(settings.redis_url, settings)
    learning = ReplyLearningStore.from_url(settings.redis_url, settings)
    sinks = collectors_for(settings)
    learner = FeedbackLearner(interactions, learning, settings.trainer_rated_per_user_per_hour, {k.feedback: c for k, c in sinks.items()})
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        for reply in replies:
            async with client.pipeline(transaction=False) as pipe:
                learning.index_replies(pipe, [reply])
                await pipe.execute()
        for batch in as_trainer_gets_them(feedback):
            await learner.learn(batch)
    finally:
        for sink in sinks.values():
            await sink.close()
        await interactions.close()
        await learning.close()
        await client.aclose()


async def state(settings: StateRebuildSettings, users: list[str]) -> dict:
    interactions = InteractionStore.from_url(settings.redis_url, settings)
    learning = ReplyLearningStore.from_url(settings.redis_url, settings)
    sinks = collectors_for(settings)
    try:
        return {
            "histories": await interactions.histories(users),
            "popularity": await interactions.popularity(NOW),
            "counts": await learning.counts(["recommend"]),
            "pending": {k.model_kind: sorted(c.feedback_event_id for c in await s.pending_corrections()) for k, s in sinks.items()},
            "weak_labels": {k.model_kind: sorted(w.feedback_event_id for w in await s.waiting_weak_labels()) for k, s in sinks.items()},
        }
    finally:
        for sink in sinks.values():
            await sink.close()
        await interactions.close()
        await learning.close()


async def delete(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        if keys := [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_the_replay_gives_what_live_processing_gave_and_counts_once(connections: ConnectionSettings) -> None:
    replies, feedback = the_log()
    users = sorted({e.user_id for e in feedback})
    live_settings, rebuilt_settings = settings_for(connections, f"test:rebuild-live:{RUN}"), settings_for(connections, f"test:rebuild:{RUN}")
    try:
        await live(live_settings, replies, feedback)
        report = await apply_log(rebuilt_settings, PARTS, replies, feedback, None, RebuildReport(PARTS, None))
        expected, rebuilt = await state(live_settings, users), await state(rebuilt_settings, users)
        again = await apply_log(rebuilt_settings, PARTS, replies, feedback, None, RebuildReport(PARTS, None))
        after_again = await state(rebuilt_settings, users)
    finally:
        await delete(connections.redis_url, f"test:rebuild-live:{RUN}")
        await delete(connections.redis_url, f"test:rebuild:{RUN}")

    print(f"\n[rebuild] {len(replies)} replies, {len(feedback)} reactions:\n{report.summary()}")
    # Sums of floats in another order: equal to the last bits.
    assert rebuilt.pop("popularity") == pytest.approx(expected.pop("popularity"), rel=1e-12)
    assert rebuilt == expected
    ratings = Counter(e.user_id for e in feedback if e.kind is FeedbackKind.REPLY_RATED)
    assert report.rewards["rate_limited"] == sum(max(0, n - 10) for n in ratings.values()) > 0
    assert report.users == 4 and report.replies_indexed == len(replies)
    assert len(rebuilt["pending"]["nlu-intent"]) == 5 and len(rebuilt["pending"]["sentiment"]) == 1  # 7 from one user: 5 an hour
    assert rebuilt["weak_labels"]["nlu-intent"] and rebuilt["weak_labels"]["sentiment"]
    after_again.pop("popularity")
    assert again.interactions_recorded == 0 and again.rewards.get("counted", 0) == 0 and after_again == rebuilt


async def test_a_reaction_after_its_replys_entry_expired_is_not_credited(connections: ConnectionSettings) -> None:
    prefix = f"test:rebuild-expiry:{RUN}"
    settings = settings_for(connections, prefix).model_copy(update={"reply_index_ttl_s": 3600})
    old = Reply(event_id=f"old-{RUN}", conversation_id=f"x-{RUN}", user_id=f"ux-{RUN}", channel=Channel.WEB, text="hi", strategy="recommend",
                variant="recommend:0", created_at=NOW - timedelta(hours=3))  # fmt: skip
    ratings = [
        Feedback(conversation_id=old.conversation_id, user_id=old.user_id, channel=Channel.WEB, kind=FeedbackKind.REPLY_RATED,
                 reply_event_id=old.event_id, rating=1, created_at=NOW - timedelta(hours=3) + timedelta(minutes=m))
        for m in (30, 90)  # within the hour the entry lived, and after it expired
    ]  # fmt: skip
    try:
        report = await apply_log(settings, ("bandit",), [old], ratings, None, RebuildReport(("bandit",), None))
        counts = await state(settings, [])
    finally:
        await delete(connections.redis_url, prefix)
    assert report.rewards == {"counted": 1, "unknown_reply": 1} and report.replies_indexed == 0
    assert counts["counts"]["recommend"]["recommend:0"].successes == 1
