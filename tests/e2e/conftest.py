"""The whole chain as deployed (one process per service) on the real broker and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from elmo.runtime.settings import ConnectionSettings
from elmo.tools.conversation import ChainClient
from tests.integration.kafka_io import ServiceProcess, chain_services

CONVERSATION_SERVICES = ("intake", "asr", "nlu", "sentiment", "recommender", "generator")


# Package scope: the chain stops when the e2e tests are done. Left running (session scope), it
# answered the chaos tests' turns too, on the shared topics and from another Redis, and whichever
# chain's record came first was what a chaos test read (the Redis-wipe test saw cold lists).
@pytest.fixture(scope="package")
def running_chain(connections: ConnectionSettings, trained_model_store) -> Iterator[list[ServiceProcess]]:
    env = {"ELMO_MODEL_STORE": str(trained_model_store.root)}
    with chain_services(connections.kafka_bootstrap_servers, CONVERSATION_SERVICES, "e2e", env, timeout_s=180) as services:
        yield services


@pytest.fixture
def chain_client(running_chain, connections: ConnectionSettings) -> Iterator[ChainClient]:
    with ChainClient(connections.kafka_bootstrap_servers, reply_timeout_s=60) as client:
        yield client
