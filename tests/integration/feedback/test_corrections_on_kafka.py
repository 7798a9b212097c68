"""Corrections on the real broker and Redis: a flood from one user is capped; twenty corrections
from agents become a promoted nlu head, announced on the model-updates topic."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as redis

from elmo.contracts import topics
from elmo.contracts.events import Feedback, FeedbackKind, ModelUpdate, Reply
from elmo.contracts.topics import Topic
from elmo.models.artifacts import ArtifactStore
from elmo.reply_bandit import ReplyLearningStore, ReplyRecord
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from elmo.learning.corrections import INTENT
from services.feedback_trainer.corrections import CorrectionTrainer
from elmo.models.intent_model import MODEL_KIND
from tests.integration.kafka_io import ServiceProcess, consume, produce, start_group_at_end
from tests.unit.feedback_trainer.test_corrections import TARGET, ZORBLAX

pytestmark = pytest.mark.integration


def test_a_flood_of_corrections_from_one_user_counts_at_most_the_cap(connections: ConnectionSettings) -> None:
    prefix = f"test:learning:{uuid.uuid4().hex[:8]}"

    def must_not_train(corrections):  # noqa: ANN001, ANN202
        raise AssertionError(f"a capped flood started a fine-tune on {len(corrections)} corrections")

    async def run() -> None:
        client = redis.Redis.from_url(connections.redis_url, decode_responses=True)
        trainer = CorrectionTrainer(client, must_not_train, kind=INTENT, prefix=prefix, batch=20, per_user_per_hour=5, applied_ttl_s=600)
        reply = ReplyRecord("r-1", "greet", "greet:0", "greeting", "hello", "c1", "u1")
        flood = [Feedback(conversation_id="c1", user_id="troll", channel="web", kind=FeedbackKind.INTENT_CORRECTED,
                          reply_event_id="r-1", corrected_label="complaint") for _ in range(200)]  # fmt: skip
        try:
            assert await trainer.collect(flood, {"r-1": reply}) == [None] * 200
            await trainer.collect(flood, {"r-1": reply})  # redelivered: nothing more
            assert await trainer.pending() == 5
            outcomes = {s.labels["outcome"]: s.value for s in trainer.metrics.corrections.collect()[0].samples if s.name.endswith("_total")}
            assert outcomes == {"collected": 5, "rate_limited": 195, "already_counted": 200}
            assert [c.user_id for c in await trainer.take_pending()] == ["troll"] * 5 and await trainer.pending() == 0
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await trainer.close()

    asyncio.run(run())


def test_twenty_corrections_become_a_promoted_head_announced_on_the_topic(
    connections: ConnectionSettings, trained_model_store: ArtifactStore, tmp_path: Path
) -> None:
    found = trained_model_store.current(MODEL_KIND)
    store = ArtifactStore(tmp_path / "store")
    meta = {k: v for k, v in found.meta.items() if k not in ("kind", "version", "parent_version", "created_at", "status")}
    store.save(MODEL_KIND, lambda d: [shutil.copy(f, d / f.name) for f in found.path.iterdir() if f.name != "meta.json"], meta)
    before = store.current_version(MODEL_KIND)

    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    prefix, updates = f"test:learning:{run}", Topic(f"test.{run}.model-updates", "test", partitions=1)
    create_topics(bootstrap, (topics.FEEDBACK, updates, topics.dead_letter_topic("feedback-trainer")))
    group = f"test-feedback-trainer-{run}"
    start_group_at_end(bootstrap, topics.FEEDBACK.name, group)
    service = ServiceProcess("services.feedback_trainer", group, {
        "ELMO_LEARNING_KEY_PREFIX": prefix, "ELMO_INTERACTIONS_KEY_PREFIX": f"{prefix}:interactions", "ELMO_MODEL_STORE": str(store.root),
        "ELMO_MODEL_UPDATES_TOPIC": updates.name, "ELMO_TRAINER_CORRECTIONS_BATCH": "20", "ELMO_MODEL_THREADS": "1",
    })  # fmt: skip
    replies = [Reply(conversation_id=f"c-{run}-{n}", user_id=f"u-{run}-{n}", channel="web", text="Which one?", strategy="clarify",
                     variant="clarify:0", intent="out_of_scope", in_reply_to_text=text) for n, text in enumerate(ZORBLAX)]  # fmt: skip
    try:
        service.start()
        asyncio.run(_index(connections.redis_url, prefix, replies))
        corrections = [
            json.loads(Feedback(conversation_id=r.conversation_id, user_id=f"agent-{n % 4}", channel="web", kind=FeedbackKind.INTENT_CORRECTED,
                                reply_event_id=r.event_id, corrected_label=TARGET).model_dump_json())
            for n, r in enumerate(replies)
        ]  # fmt: skip
        produce(bootstrap, topics.FEEDBACK.name, corrections)
        sent = time.monotonic()
        records = consume(bootstrap, updates.name, expected=1, timeout_s=120)
        elapsed = time.monotonic() - sent
    finally:
        service.stop()
        asyncio.run(_delete(connections.redis_url, prefix))
    assert records, "no model update within 120 s"
    update = ModelUpdate.model_validate_json(records[0].value)
    assert update.model_kind == MODEL_KIND and update.action == "promote" and update.parent_version == before
    assert store.current_version(MODEL_KIND) == update.version != before
    assert store.get(MODEL_KIND, update.version).meta["training_data"]["corrections"] == 20
    print(f"20th correction produced -> promoted head announced in {elapsed:.1f} s; held-out accuracy {update.metrics}")


async def _index(redis_url: str, prefix: str, replies: list[Reply]) -> None:
    store = ReplyLearningStore(redis.Redis.from_url(redis_url, decode_responses=True), ttl_s=600, prefix=prefix)
    try:
        async with store._client.pipeline(transaction=False) as pipe:
            store.index_replies(pipe, replies)
            await pipe.execute()
    finally:
        await store.close()


async def _delete(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
