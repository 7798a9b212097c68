"""One chain for the chaos tests: every service of the conversation and the trainer as processes,
on the project's broker and a Redis of the tests' own that they may stop and start."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.chaos.traffic import LocalRedis, run_id
from tests.integration.kafka_io import ServiceProcess, chain_services, free_port

CHAOS_SERVICES = ("intake", "asr", "nlu", "sentiment", "recommender", "generator", "feedback-trainer")


@dataclass
class ChaosChain:
    bootstrap: str
    redis: LocalRedis
    services: list[ServiceProcess]


@pytest.fixture(scope="session")
def chaos_chain(connections, trained_model_store, tmp_path_factory) -> Iterator[ChaosChain]:
    own_redis = LocalRedis(tmp_path_factory.mktemp("chaos-redis"), free_port())
    own_redis.start()
    env = {"ELMO_MODEL_STORE": str(trained_model_store.root), "ELMO_REDIS_URL": own_redis.url}
    try:
        with chain_services(connections.kafka_bootstrap_servers, CHAOS_SERVICES, f"chaos-{run_id()}", env, timeout_s=180) as services:
            yield ChaosChain(connections.kafka_bootstrap_servers, own_redis, services)
    finally:
        own_redis.stop()
