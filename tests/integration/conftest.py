"""Integration fixtures (the real broker and Redis, and a trained model store, come from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from elmo.contracts.topics import Topic, dead_letter_topic
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from tests.integration.kafka_io import EchoService


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
