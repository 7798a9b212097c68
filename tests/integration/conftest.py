"""Integration fixtures: the real broker and Redis started by `make test` (or `make infra-up`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from kafka import KafkaProducer

from elmo.contracts.topics import Topic, dead_letter_topic
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from tests.integration.kafka_io import EchoService


@pytest.fixture(scope="session")
def connections() -> ConnectionSettings:
    settings = ConnectionSettings()
    try:
        redis.Redis.from_url(settings.redis_url).ping()
        KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000).close()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"integration tests need the real Kafka and Redis (`make infra-up`): {error!r}")
    return settings


@pytest.fixture
def echo_chain(connections: ConnectionSettings) -> Iterator:
    """Factory for echo services on fresh topics; every process is stopped at the end."""
    started: list[EchoService] = []
    run = uuid.uuid4().hex[:8]

    def make(hops: int = 1, partitions: int = 3, **env: str) -> list[EchoService]:
        topics = [Topic(f"test.{run}.t{i}", "test", partitions=partitions) for i in range(hops + 1)]
        services = [
            EchoService(f"echo-{run}-{i}", topics[i].name, topics[i + 1].name, connections.kafka_bootstrap_servers, extra_env=env)
            for i in range(hops)
        ]
        create_topics(connections.kafka_bootstrap_servers, (*topics, *(dead_letter_topic(s.name) for s in services)))
        started.extend(services)
        return services

    yield make
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def trained_model_store(tmp_path_factory: pytest.TempPathFactory):
    """A model store with an nlu and a sentiment model trained now (sentiment on the tweets only)."""
    from elmo.models.artifacts import ArtifactStore
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.tools.test_data import fetch_vader_ratings
    from services.nlu.intent_model import train as train_nlu
    from services.sentiment.sentiment_model import find_vader_directory
    from services.sentiment.sentiment_model import train as train_sentiment

    store = ArtifactStore(tmp_path_factory.mktemp("model-store"))
    embedder = SentenceEmbedder()
    train_nlu(store, embedder)
    train_sentiment(store, embedder, find_vader_directory(fetch_vader_ratings()), vader_sources=("tweets",))
    return store
