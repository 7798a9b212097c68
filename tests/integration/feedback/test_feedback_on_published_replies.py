"""Feedback names the reply a client saw: the generator and the trainer as processes, the reply read
from elmo.replies like a client reads it, then a rating and an intent correction naming its
published id. Both count (before, the generator indexed replies under an id the runtime then
replaced, so both were dead-lettered: "reply ... is not in the reply index")."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid

import pytest
import redis.asyncio as redis

from elmo.contracts import topics
from elmo.contracts.events import DialogueContext, Feedback, FeedbackKind, Intent, Recommended, Sentiment
from elmo.reply_bandit import ArmCounts, ReplyLearningStore
from elmo.runtime.settings import ConnectionSettings
from tests.integration.kafka_io import chain_services, end_offsets, produce, read_from

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PREFIX = f"test:published:{RUN}"


def metric(port: int, prefix: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


def test_a_rating_and_a_correction_naming_a_published_reply_both_count(connections: ConnectionSettings) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    env = {"ELMO_LEARNING_KEY_PREFIX": PREFIX, "ELMO_INTERACTIONS_KEY_PREFIX": f"{PREFIX}:interactions"}
    with chain_services(bootstrap, ["generator", "feedback-trainer"], f"published-{RUN}", env) as (_, trainer):
        replies_before = end_offsets(bootstrap, topics.REPLIES.name)
        letters_before = end_offsets(bootstrap, topics.dead_letter_topic("feedback-trainer").name)
        turn = Recommended(
            conversation_id=f"pub-{RUN}", user_id=f"pu-{RUN}", channel="web", text="heyy where is my parcel??", source="text",
            intent=Intent(name="greeting", confidence=0.61), entities=[], context=DialogueContext(turn=1),
            sentiment=Sentiment(label="neutral", score=0.0), recommendations=[],
        )  # fmt: skip
        produce(bootstrap, topics.RECOMMENDATIONS.name, [json.loads(turn.model_dump_json())], key=turn.conversation_id.encode())
        (record,) = read_from(bootstrap, replies_before, lambda r: json.loads(r.value)["conversation_id"] == turn.conversation_id, 1, 60)
        reply = json.loads(record.value)  # what a client has: the published reply and its id

        rating = Feedback(conversation_id=reply["conversation_id"], user_id=reply["user_id"], channel="web",
                          kind=FeedbackKind.REPLY_RATED, reply_event_id=reply["event_id"], rating=1)  # fmt: skip
        correction = Feedback(conversation_id=reply["conversation_id"], user_id="agent-7", channel="web",
                              kind=FeedbackKind.INTENT_CORRECTED, reply_event_id=reply["event_id"], corrected_label="order_status")  # fmt: skip
        produce(bootstrap, topics.FEEDBACK.name, [json.loads(rating.model_dump_json()), json.loads(correction.model_dump_json())])

        counts = asyncio.run(_wait_for_counts(connections.redis_url, reply["strategy"], reply["variant"], ArmCounts(1, 0), 30))
        deadline = time.monotonic() + 20
        while metric(trainer.port, 'elmo_trainer_corrections_total{model_kind="nlu-intent",outcome="collected"}') < 1:
            assert time.monotonic() < deadline, "the correction was not collected"
            time.sleep(0.2)
        ours = {rating.event_id, correction.event_id}
        letters = read_from(bootstrap, letters_before, lambda r: json.loads(r.value).get("original_event_id") in ours, 1, timeout_s=3)
    asyncio.run(_delete_prefix(connections.redis_url))

    assert counts == ArmCounts(1, 0), f"the rating of the published reply did not count: {counts}"
    assert letters == [], [json.loads(letter.value)["error_message"] for letter in letters]


async def _wait_for_counts(redis_url: str, strategy: str, variant: str, expected: ArmCounts, timeout_s: float) -> ArmCounts | None:
    store = ReplyLearningStore(redis.Redis.from_url(redis_url, decode_responses=True), prefix=PREFIX)
    deadline, found = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline:
            found = (await store.counts([strategy])).get(strategy, {}).get(variant)
            if found == expected:
                break
            await asyncio.sleep(0.1)
        return found
    finally:
        await store.close()


async def _delete_prefix(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        if keys := [key async for key in client.scan_iter(match=f"{PREFIX}:*")]:
            await client.delete(*keys)
    finally:
        await client.aclose()
