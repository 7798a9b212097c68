"""A service tells the operator when Redis lost the learnt state, on the real Redis: a fresh install
is marked whole; a wipe while the trainer runs is seen (and remembered across a restart, though the
trainer writes new reactions meanwhile); a rebuild's marks clear it; a reader (the recommender)
warns on an empty store while elmo.feedback holds history; the count of what a topic retains."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from elmo.contracts.topics import Topic
from elmo.interactions import users_key
from elmo.learning.state_epoch import StateWatch, epoch_key, lost_key, write_epochs
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.feedback_log import retained_records
from elmo.tools.topic_admin import create_topics
from tests.integration.kafka_io import produce

pytestmark = pytest.mark.integration


def watch(redis_url: str, prefix: str, feedback_events: int, writer: bool) -> StateWatch:
    prefixes = [f"{prefix}:interactions", prefix]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return StateWatch(client, prefixes, users_key(prefixes[0]), lambda: feedback_events, service="test", writer=writer)


def gauge(state: StateWatch) -> float | None:
    registry = CollectorRegistry()
    state.register(registry)
    return registry.get_sample_value("elmo_state_rebuild_needed")


async def delete(client: redis.Redis, prefix: str) -> None:
    if keys := [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]:
        await client.delete(*keys)


async def test_a_wipe_is_seen_remembered_across_a_restart_and_cleared_by_a_rebuild(connections: ConnectionSettings) -> None:
    prefix = f"test:state-epoch:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(connections.redis_url, decode_responses=True)
    trainer = watch(connections.redis_url, prefix, feedback_events=0, writer=True)
    try:
        assert await trainer.start() is False  # a fresh install: nothing to rebuild from
        assert await client.exists(epoch_key(prefix), epoch_key(f"{prefix}:interactions")) == 2

        await delete(client, prefix)  # Redis lost it
        assert await trainer.check() is True and gauge(trainer) == 1
        assert await client.exists(lost_key(prefix)) == 1

        await client.sadd(users_key(f"{prefix}:interactions"), "u-new")  # the trainer goes on writing
        restarted = watch(connections.redis_url, prefix, feedback_events=500, writer=True)
        assert await restarted.start() is True  # not empty, but the loss is remembered

        await write_epochs(client, [f"{prefix}:interactions", prefix], "elmo state rebuild")
        assert await restarted.check() is False and gauge(restarted) == 0
        await restarted.close()
    finally:
        await delete(client, prefix)
        await trainer.close()
        await client.aclose()


async def test_an_empty_store_with_history_on_the_topic_is_reported_and_old_state_adopted(
    connections: ConnectionSettings, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"test:state-epoch:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(connections.redis_url, decode_responses=True)
    recommender = watch(connections.redis_url, prefix, feedback_events=1234, writer=False)
    try:
        with caplog.at_level(logging.WARNING, logger="elmo.state"):
            assert await recommender.start() is True
        assert "Redis state is empty but elmo.feedback holds 1234 events: run `elmo state rebuild`" in caplog.text
        assert await client.exists(epoch_key(prefix)) == 0  # a reader never marks

        await client.sadd(users_key(f"{prefix}:interactions"), "u-old")  # state from before the marks existed
        trainer = watch(connections.redis_url, prefix, feedback_events=1234, writer=True)
        assert await trainer.start() is False and await client.exists(epoch_key(prefix)) == 1
        await trainer.close()
    finally:
        await delete(client, prefix)
        await recommender.close()
        await client.aclose()


def test_the_check_counts_what_the_topic_retains(connections: ConnectionSettings) -> None:
    topic = Topic(f"test.retained.{uuid.uuid4().hex[:8]}", "test", partitions=3)
    create_topics(connections.kafka_bootstrap_servers, (topic,))
    produce(connections.kafka_bootstrap_servers, topic.name, [{"conversation_id": f"c{i}"} for i in range(5)])
    assert retained_records(connections.kafka_bootstrap_servers, topic.name) == 5
    assert retained_records(connections.kafka_bootstrap_servers, "test.no-such-topic-" + uuid.uuid4().hex[:8]) == 0
