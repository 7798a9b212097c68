"""The feedback-trainer as deployed, on the real broker and Redis: ratings of an indexed reply move
that variant's bandit counts, once per feedback event even when the event is produced twice; so do
agents' handoff outcomes for the reply that handed off."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as redis

from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind, Reply
from elmo.reply_bandit import ArmCounts, ReplyLearningStore
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from tests.integration.kafka_io import ServiceProcess, end_offsets, produce, read_from, start_group_at_end

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PREFIX = f"test:learning:{RUN}"


@pytest.fixture(scope="module")
def trainer(connections: ConnectionSettings) -> Iterator[ServiceProcess]:
    bootstrap = connections.kafka_bootstrap_servers
    create_topics(bootstrap, (topics.FEEDBACK, topics.MODEL_UPDATES, topics.dead_letter_topic("feedback-trainer")))
    group = f"test-feedback-trainer-{RUN}"
    start_group_at_end(bootstrap, topics.FEEDBACK.name, group)
    env = {"ELMO_LEARNING_KEY_PREFIX": PREFIX, "ELMO_INTERACTIONS_KEY_PREFIX": f"{PREFIX}:interactions", "ELMO_TRAINER_RATED_PER_USER_PER_HOUR": "3"}
    service = ServiceProcess("services.feedback_trainer", group, env)
    try:
        service.start()
        yield service
    finally:
        service.stop()
        asyncio.run(_delete_prefix(connections.redis_url))


def test_ratings_move_the_bandit_counts_once_per_feedback_event(trainer: ServiceProcess, connections: ConnectionSettings) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    reply = Reply(conversation_id=f"c-{RUN}", user_id=f"u-{RUN}", channel="web", text="Hello!", strategy="greet", variant="greet:1",
                  intent="greeting", in_reply_to_text="hi")  # fmt: skip
    asyncio.run(_index(connections.redis_url, reply))

    def rating(value: int, user: str) -> dict:
        event = Feedback(conversation_id=reply.conversation_id, user_id=user, channel="web", kind=FeedbackKind.REPLY_RATED,
                         reply_event_id=reply.event_id, rating=value)  # fmt: skip
        return json.loads(event.model_dump_json())

    up, down = rating(1, reply.user_id), rating(-1, f"other-{RUN}")
    unknown = {**rating(1, reply.user_id), "reply_event_id": "no-such-reply"}
    sent = time.monotonic()
    produce(bootstrap, topics.FEEDBACK.name, [up, down, up, unknown])  # `up` twice: a producer retry
    counts = asyncio.run(_wait_for_counts(connections.redis_url, ArmCounts(1, 1), timeout_s=20))
    elapsed = time.monotonic() - sent
    assert counts == ArmCounts(1, 1), f"counts after 20 s: {counts}; trainer metrics: {_trainer_metrics(trainer)}"

    # Produced again later (a replay of the topic): still counted once.
    produce(bootstrap, topics.FEEDBACK.name, [up, down])
    marker = rating(1, reply.user_id)  # a fresh event behind the replayed ones, to know they were handled
    produce(bootstrap, topics.FEEDBACK.name, [marker])
    assert asyncio.run(_wait_for_counts(connections.redis_url, ArmCounts(2, 1), timeout_s=20)) == ArmCounts(2, 1)
    time.sleep(1.0)
    assert asyncio.run(_wait_for_counts(connections.redis_url, ArmCounts(2, 1), timeout_s=0.1)) == ArmCounts(2, 1)
    print(f"ratings counted in Redis {elapsed:.2f} s after they were produced")


def test_handoff_outcomes_reward_the_handoff_wording_and_an_unknown_outcome_is_dead_lettered(
    trainer: ServiceProcess, connections: ConnectionSettings
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    reply = Reply(conversation_id=f"h-{RUN}", user_id=f"hu-{RUN}", channel="web", text="I am passing you to a colleague.",
                  strategy="handoff", variant="handoff:2", intent="human_handoff", in_reply_to_text="a human please", handoff=True)  # fmt: skip
    asyncio.run(_index(connections.redis_url, reply))

    def outcome(value: str) -> dict:
        event = Feedback(conversation_id=reply.conversation_id, user_id=reply.user_id, channel="web", kind=FeedbackKind.HANDOFF_OUTCOME,
                         reply_event_id=reply.event_id, outcome=value, agent_id="agent-1")  # fmt: skip
        return json.loads(event.model_dump_json())

    dead_letters = topics.dead_letter_topic("feedback-trainer").name
    before = end_offsets(bootstrap, dead_letters)
    unknown = outcome("great")
    produce(bootstrap, topics.FEEDBACK.name, [outcome("resolved"), outcome("abandoned"), unknown])
    counts = asyncio.run(_wait_for_counts(connections.redis_url, ArmCounts(1, 1), 20, "handoff", "handoff:2"))
    assert counts == ArmCounts(1, 1), f"counts after 20 s: {counts}"
    # Another trainer on this broker (a running chain, its own group) dead-letters it too: read the first.
    letters = read_from(bootstrap, before, lambda r: json.loads(r.value).get("original_event_id") == unknown["event_id"], 1, timeout_s=20)
    assert letters, "no dead letter for the unknown outcome"
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert headers["elmo.dlq.reason"] == "rejected" and "'great'" in headers["elmo.dlq.exception.message"]


def _trainer_metrics(trainer: ServiceProcess) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{trainer.port}/metrics", timeout=2) as response:
        lines = response.read().decode().splitlines()
    return [line for line in lines if line.startswith(("elmo_messages_consumed_total", "elmo_messages_duplicate_total", "elmo_trainer_bandit"))]


async def _index(redis_url: str, reply: Reply) -> None:
    store = ReplyLearningStore(redis.Redis.from_url(redis_url, decode_responses=True), ttl_s=600, prefix=PREFIX)
    try:
        async with store._client.pipeline(transaction=False) as pipe:
            store.index_replies(pipe, [reply])
            await pipe.execute()
    finally:
        await store.close()


async def _wait_for_counts(
    redis_url: str, expected: ArmCounts, timeout_s: float, strategy: str = "greet", variant: str = "greet:1"
) -> ArmCounts | None:
    store = ReplyLearningStore(redis.Redis.from_url(redis_url, decode_responses=True), prefix=PREFIX)
    deadline = time.monotonic() + timeout_s
    found = None
    try:
        while True:
            found = (await store.counts([strategy])).get(strategy, {}).get(variant)
            if found == expected or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.1)
    finally:
        await store.close()


async def _delete_prefix(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{PREFIX}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
