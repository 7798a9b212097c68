"""Fixtures shared by integration and end-to-end tests: the real broker and Redis started by
`make test` (or `make infra-up`), and a model store trained once per session."""

from __future__ import annotations

import pytest
import redis
from kafka import KafkaProducer

from elmo.runtime.settings import ConnectionSettings


@pytest.fixture(scope="session")
def connections() -> ConnectionSettings:
    settings = ConnectionSettings()
    try:
        redis.Redis.from_url(settings.redis_url).ping()
        KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000).close()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"integration tests need the real Kafka and Redis (`make infra-up`): {error!r}")
    return settings


@pytest.fixture(scope="session")
def trained_model_store(tmp_path_factory: pytest.TempPathFactory):
    """A model store with an nlu and a sentiment model trained now (sentiment on the tweets only).

    `ELMO_TEST_MODEL_STORE=DIR` uses DIR's current models instead (a developer's quick re-run).
    """
    import os
    from pathlib import Path

    from elmo.models.artifacts import ArtifactStore
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.tools.test_data import fetch_vader_ratings
    from elmo.models.intent_model import train as train_nlu
    from elmo.models.sentiment_model import find_vader_directory
    from elmo.models.sentiment_model import train as train_sentiment

    if reuse := os.environ.get("ELMO_TEST_MODEL_STORE"):
        return ArtifactStore(Path(reuse).resolve())
    store = ArtifactStore(tmp_path_factory.mktemp("model-store"))
    embedder = SentenceEmbedder()
    train_nlu(store, embedder)
    train_sentiment(store, embedder, find_vader_directory(fetch_vader_ratings()), vader_sources=("tweets",))
    return store
