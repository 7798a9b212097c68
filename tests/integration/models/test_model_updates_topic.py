"""Announcing and following model updates on a real compacted topic (no service process)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from elmo.contracts.events import ModelUpdate
from elmo.contracts.topics import CleanupPolicy, Topic
from elmo.runtime.metrics import ServiceMetrics
from elmo.runtime.model_updates import KafkaAnnouncer, ModelUpdateWatcher
from elmo.runtime.serving_model import ServingModel
from elmo.runtime.settings import ConnectionSettings
from elmo.runtime.stage import ModelSlot
from elmo.tools.topic_admin import create_topics

pytestmark = pytest.mark.integration

KIND = "test-kind"


def update(kind: str, version: str, at: datetime | None = None) -> ModelUpdate:
    return ModelUpdate(model_kind=kind, version=version, artifact_uri=f"file:///store/{kind}/{version}", created_at=at or datetime.now(UTC))


@pytest.fixture
def topic(connections: ConnectionSettings) -> str:
    name = f"test.{uuid.uuid4().hex[:8]}.model-updates"
    create_topics(connections.kafka_bootstrap_servers, (Topic(name, "test", 1, -1, CleanupPolicy.COMPACT),))
    return name


def serving() -> ServingModel:
    return ServingModel(ModelSlot(KIND), lambda version: (f"model {version or 'v1'}", version or "v1"), ServiceMetrics("svc"))


async def test_a_starting_service_catches_up_on_its_kind_then_follows_new_announcements(connections, topic):
    announce = KafkaAnnouncer(connections.kafka_bootstrap_servers, topic)
    for each in (update(KIND, "v2"), update("other-kind", "x"), update(KIND, "v3"), update("other-kind", "y")):
        await asyncio.to_thread(announce, each)
    model = serving()
    await model.load_current()
    watcher = ModelUpdateWatcher(model, connections.kafka_bootstrap_servers, topic, current_moved_at=lambda: None)

    await watcher.catch_up(timeout_s=20)
    assert model.version == "v3" and model.model == "model v3"

    following = asyncio.create_task(watcher.run())
    try:
        await asyncio.to_thread(announce, update("other-kind", "z"))
        await asyncio.to_thread(announce, update(KIND, "v4"))
        for _ in range(100):
            if model.version == "v4":
                break
            await asyncio.sleep(0.1)
        assert model.version == "v4"
    finally:
        following.cancel()
        await watcher.stop()


async def test_catching_up_keeps_a_current_version_made_after_the_last_announcement(connections, topic):
    await asyncio.to_thread(KafkaAnnouncer(connections.kafka_bootstrap_servers, topic), update(KIND, "v2", datetime.now(UTC) - timedelta(hours=1)))
    model = serving()
    await model.load_current()
    watcher = ModelUpdateWatcher(model, connections.kafka_bootstrap_servers, topic, current_moved_at=lambda: datetime.now(UTC))
    await watcher.catch_up(timeout_s=20)
    await watcher.stop()
    assert model.version == "v1"


async def test_a_missing_topic_is_not_created_and_the_service_keeps_its_model(connections):
    from kafka import KafkaAdminClient

    missing = f"test.{uuid.uuid4().hex[:8]}.never-created"
    model = serving()
    await model.load_current()
    watcher = ModelUpdateWatcher(model, connections.kafka_bootstrap_servers, missing)
    await watcher.catch_up(timeout_s=10)
    admin = KafkaAdminClient(bootstrap_servers=connections.kafka_bootstrap_servers)
    try:
        assert missing not in admin.list_topics()
    finally:
        admin.close()
    assert model.version == "v1"
