"""Sentiment corrections on the real broker and Redis, through the same mechanism as intent ones:
caps and pending lists are per kind, an intent label sent as a sentiment correction is dead-lettered,
and twenty corrections from agents become a promoted sentiment head announced on the model-updates
topic (the nlu head untouched)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as redis

from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind, ModelUpdate, Reply
from elmo.contracts.topics import Topic
from elmo.models import intent_model, sentiment_model
from elmo.models.artifacts import ArtifactStore
from elmo.reply_bandit import ReplyRecord
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from elmo.learning.corrections import INTENT, SENTIMENT, Correction, legacy_pending_key
from services.feedback_trainer.corrections import CorrectionTrainer
from tests.integration.feedback.test_corrections_on_kafka import _delete, _index
from tests.integration.kafka_io import ServiceProcess, consume, end_offsets, produce, read_from, start_group_at_end
from tests.unit.feedback_trainer.conftest import copy_of_current
from tests.unit.feedback_trainer.test_sentiment_corrections import MID, TARGET

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_caps_and_pending_lists_are_per_kind_and_old_intent_corrections_are_adopted(connections: ConnectionSettings) -> None:
    prefix = f"test:learning:{uuid.uuid4().hex[:8]}"

    def must_not_train(corrections):  # noqa: ANN001, ANN202
        raise AssertionError(f"a capped flood started a fine-tune on {len(corrections)} corrections")

    async def run() -> None:
        client = redis.Redis.from_url(connections.redis_url, decode_responses=True)
        trainers = {
            kind.model_kind: CorrectionTrainer(
                redis.Redis.from_url(connections.redis_url, decode_responses=True), must_not_train, kind=kind, prefix=prefix,
                batch=20, per_user_per_hour=5, applied_ttl_s=600,
            )
            for kind in (INTENT, SENTIMENT)
        }  # fmt: skip
        reply = ReplyRecord("r-1", "greet", "greet:0", "greeting", "the hoodie is mid", "c1", "u1")

        def flood(kind: FeedbackKind, label: str) -> list[Feedback]:
            return [Feedback(conversation_id="c1", user_id="troll", channel="web", kind=kind, reply_event_id="r-1", corrected_label=label)
                    for _ in range(10)]  # fmt: skip

        try:
            await client.rpush(legacy_pending_key(prefix), json.dumps({"feedback_event_id": "fb-old", "user_id": "agent-1",
                                                                        "text": "zorblax", "intent": "purchase", "at": 0.0}))  # fmt: skip
            assert await trainers["nlu-intent"].adopt_pending(legacy_pending_key(prefix)) == 1
            assert await trainers["nlu-intent"].collect(flood(FeedbackKind.INTENT_CORRECTED, "complaint"), {"r-1": reply}) == [None] * 10
            assert await trainers["sentiment"].collect(flood(FeedbackKind.SENTIMENT_CORRECTED, "negative"), {"r-1": reply}) == [None] * 10
            # The same user's cap is counted apart for each kind, and each kind waits in its own list.
            assert await trainers["nlu-intent"].pending() == 6 and await trainers["sentiment"].pending() == 5
            taken = await trainers["nlu-intent"].take_pending()
            assert taken[0] == Correction("fb-old", "agent-1", "zorblax", "purchase", 0.0)
            assert {c.label for c in taken[1:]} == {"complaint"}
            assert {c.label for c in await trainers["sentiment"].take_pending()} == {"negative"}
            assert not await client.exists(legacy_pending_key(prefix))
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
            for trainer in trainers.values():
                await trainer.close()

    asyncio.run(run())


def test_twenty_sentiment_corrections_become_a_promoted_head_announced_on_the_topic(
    connections: ConnectionSettings, trained_model_store: ArtifactStore, tmp_path: Path
) -> None:
    store = copy_of_current(trained_model_store, sentiment_model.MODEL_KIND, tmp_path / "store")
    copy_of_current(trained_model_store, intent_model.MODEL_KIND, store.root)
    before, nlu_before = store.current_version(sentiment_model.MODEL_KIND), store.current_version(intent_model.MODEL_KIND)

    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    prefix, updates = f"test:learning:{run}", Topic(f"test.{run}.model-updates", "test", partitions=1)
    dead_letters = topics.dead_letter_topic("feedback-trainer")
    create_topics(bootstrap, (topics.FEEDBACK, updates, dead_letters))
    group = f"test-feedback-trainer-{run}"
    start_group_at_end(bootstrap, topics.FEEDBACK.name, group)
    service = ServiceProcess("services.feedback_trainer", group, {
        "ELMO_LEARNING_KEY_PREFIX": prefix, "ELMO_INTERACTIONS_KEY_PREFIX": f"{prefix}:interactions", "ELMO_MODEL_STORE": str(store.root),
        "ELMO_MODEL_UPDATES_TOPIC": updates.name, "ELMO_TRAINER_CORRECTIONS_BATCH": "20", "ELMO_MODEL_THREADS": "1",
        "ELMO_TRAINER_REFIT": "false",
    })  # fmt: skip
    replies = [Reply(conversation_id=f"c-{run}-{n}", user_id=f"u-{run}-{n}", channel="web", text="Thanks for telling us!", strategy="thanks",
                     variant="thanks:0", intent="inform", in_reply_to_text=text) for n, text in enumerate(MID)]  # fmt: skip

    def correction(reply: Reply, agent: str, label: str) -> dict:
        return json.loads(Feedback(conversation_id=reply.conversation_id, user_id=agent, channel="web", kind=FeedbackKind.SENTIMENT_CORRECTED,
                                   reply_event_id=reply.event_id, corrected_label=label).model_dump_json())  # fmt: skip

    wrong_kind = correction(replies[0], "agent-9", "complaint")  # an intent, not a sentiment label
    letters_before = end_offsets(bootstrap, dead_letters.name)
    try:
        service.start()
        asyncio.run(_index(connections.redis_url, prefix, replies))
        produce(bootstrap, topics.FEEDBACK.name, [wrong_kind] + [correction(r, f"agent-{n % 4}", TARGET) for n, r in enumerate(replies)])
        sent = time.monotonic()
        records = consume(bootstrap, updates.name, expected=1, timeout_s=300)
        elapsed = time.monotonic() - sent
        letters = read_from(bootstrap, letters_before, lambda r: json.loads(r.value).get("original_event_id") == wrong_kind["event_id"], 1, 60)
    finally:
        service.stop()
        asyncio.run(_delete(connections.redis_url, prefix))
    assert records, "no model update within 300 s"
    update = ModelUpdate.model_validate_json(records[0].value)
    assert update.model_kind == sentiment_model.MODEL_KIND and update.action == "promote" and update.parent_version == before
    assert store.current_version(sentiment_model.MODEL_KIND) == update.version != before
    assert store.get(sentiment_model.MODEL_KIND, update.version).meta["training_data"]["corrections"] == 20
    assert store.current_version(intent_model.MODEL_KIND) == nlu_before
    assert len(letters) == 1
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert headers["elmo.dlq.reason"] == "rejected" and "not a known sentiment label" in headers["elmo.dlq.exception.message"]
    print(f"20th sentiment correction produced -> promoted head announced in {elapsed:.1f} s; held-out {update.metrics}")
