"""The recommender and the feedback-trainer as deployed, on the real broker and Redis: a purchase
fed back through Kafka is excluded from the same user's next recommendations within seconds."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from elmo.contracts import topics
from elmo.contracts.events import DialogueContext, Entity, Feedback, FeedbackKind, Intent, Sentiment, SentimentScored
from elmo.interactions import InteractionStore
from elmo.models.artifacts import ArtifactStore
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from elmo.tracking_links import read_token
from services.recommender.commands import train
from tests.integration.kafka_io import ServiceProcess, end_offsets, produce, read_from, start_group_at_end

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret"
# The services' interactions live under a prefix of this run: the shared Redis keeps no trace.
PREFIX = f"test:interactions:{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ArtifactStore:
    store = ArtifactStore(tmp_path_factory.mktemp("recommender-store"))
    train(store, "simulated", seed=13, users=2000)
    return store


@pytest.fixture(scope="module")
def services(connections: ConnectionSettings, model_store: ArtifactStore) -> Iterator[dict[str, ServiceProcess]]:
    bootstrap = connections.kafka_bootstrap_servers
    create_topics(bootstrap, (topics.SENTIMENTS, topics.RECOMMENDATIONS, topics.FEEDBACK, topics.MODEL_UPDATES,
                              topics.dead_letter_topic("recommender"), topics.dead_letter_topic("feedback-trainer")))  # fmt: skip
    run = uuid.uuid4().hex[:8]
    env = {
        "ELMO_MODEL_STORE": str(model_store.root),
        "ELMO_TRACKING_SECRET": SECRET,
        "ELMO_INTERACTIONS_KEY_PREFIX": PREFIX,
        "ELMO_RECOMMENDER_POPULARITY_REFRESH_S": "0",
    }
    started = {}
    for name, module, consumes in (("recommender", "services.recommender", topics.SENTIMENTS), ("feedback-trainer", "services.feedback_trainer", topics.FEEDBACK)):
        group = f"test-{name}-{run}"
        start_group_at_end(bootstrap, consumes.name, group)
        started[name] = ServiceProcess(module, group, env)
    try:
        for service in started.values():
            service.start()
        yield started
    finally:
        for service in started.values():
            service.stop()
        asyncio.run(_delete_prefix(connections.redis_url))


def message(conversation: str, user: str, text: str, category: str) -> SentimentScored:
    return SentimentScored(
        conversation_id=conversation,
        user_id=user,
        channel="whatsapp",
        text=text,
        source="text",
        intent=Intent(name="recommendation_request", confidence=0.93),
        entities=[Entity(type="category", value=category, start=0, end=len(category), normalized=category)],
        context=DialogueContext(turn=1),
        sentiment=Sentiment(label="positive", score=0.4),
    )


def recommended_for(bootstrap: str, event: SentimentScored, before) -> dict:  # noqa: ANN001
    produce(bootstrap, topics.SENTIMENTS.name, [json.loads(event.model_dump_json())])
    records = read_from(bootstrap, before, lambda r: r.key == event.conversation_id.encode() and json.loads(r.value)["parent_event_id"] == event.event_id, expected=1, timeout_s=60)
    assert records, f"no recommendation for {event.event_id}"
    return json.loads(records[0].value)


def test_a_purchase_fed_back_is_excluded_from_the_next_recommendations(
    services: dict[str, ServiceProcess], connections: ConnectionSettings, model_store: ArtifactStore
) -> None:
    bootstrap = connections.kafka_bootstrap_servers
    assert services["recommender"].readiness()[1]  # ready, with the model loaded
    run = uuid.uuid4().hex[:8]
    user, conversation = f"u-rec-{run}", f"c-rec-{run}"

    first_event = message(conversation, user, "which phone would you recommend?", "phones")
    first = recommended_for(bootstrap, first_event, end_offsets(bootstrap, topics.RECOMMENDATIONS.name))
    assert first["event_type"] == "recommended" and first["origin_event_id"] == first_event.origin_event_id
    assert first["recommender_model_version"] == model_store.current_version("recommender-als")
    items = [r["item_id"] for r in first["recommendations"]]
    assert len(items) == 3 and all(i.startswith("phone-") for i in items)
    for recommendation in first["recommendations"]:
        link = read_token(recommendation["url"].rsplit("/r/", 1)[1], SECRET)
        assert (link.item_id, link.user_id, link.tracking_id) == (recommendation["item_id"], user, recommendation["tracking_id"])
        assert recommendation["reason"] and recommendation["price"] > 0

    bought = items[0]
    purchase = Feedback(
        conversation_id=conversation, user_id=user, channel="whatsapp", kind=FeedbackKind.RECOMMENDATION_PURCHASED,
        item_id=bought, tracking_id=first["recommendations"][0]["tracking_id"], reply_event_id=first["event_id"],
    )  # fmt: skip
    sent = time.monotonic()
    produce(bootstrap, topics.FEEDBACK.name, [json.loads(purchase.model_dump_json())])
    recorded_after = asyncio.run(_wait_for_purchase(connections.redis_url, user, bought, timeout_s=15))
    assert recorded_after is not None, "the feedback-trainer did not record the purchase within 15 s"

    second_event = message(conversation, user, "and another phone, for my partner?", "phones")
    second = recommended_for(bootstrap, second_event, end_offsets(bootstrap, topics.RECOMMENDATIONS.name))
    elapsed = time.monotonic() - sent
    again = [r["item_id"] for r in second["recommendations"]]
    assert again and bought not in again
    assert elapsed < 20, f"purchase to next recommendation took {elapsed:.1f} s"
    print(f"purchase in Redis {recorded_after:.2f} s after it was published; next recommendations {elapsed:.2f} s after")


async def _wait_for_purchase(redis_url: str, user: str, item: str, timeout_s: float) -> float | None:
    store = InteractionStore.from_url(redis_url, prefix=PREFIX)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            if item in (await store.history(user)).purchased:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        return None
    finally:
        await store.close()


async def _delete_prefix(redis_url: str) -> None:
    store = InteractionStore.from_url(redis_url, prefix=PREFIX)
    keys = [key async for key in store._client.scan_iter(match=f"{PREFIX}:*")]
    if keys:
        await store._client.delete(*keys)
    await store.close()


def test_the_model_store_holds_the_evaluation(model_store: ArtifactStore) -> None:
    meta = model_store.current("recommender-als").meta
    assert meta["metrics"]["hit_rate_at_10_als"] > meta["metrics"]["hit_rate_at_10_popularity"]
    assert meta["trained_on"] == {"source": "simulated", "users": 2000, "seed": 13}
    assert Path(model_store.current("recommender-als").path / "als.npz").exists()
