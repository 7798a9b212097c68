"""The whole chain as deployed (one process per service) on the real broker and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from elmo.contracts.chain import CHAIN
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.conversation import ChainClient
from tests.integration.kafka_io import ServiceProcess, start_group_at_end

CONVERSATION_SERVICES = ("intake", "asr", "nlu", "sentiment", "recommender", "generator")


@pytest.fixture(scope="session")
def running_chain(connections: ConnectionSettings, trained_model_store) -> Iterator[list[ServiceProcess]]:
    bootstrap = connections.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    consumes = {hop.service: hop.consumes for hop in CHAIN}
    services = []
    for name in CONVERSATION_SERVICES:
        group = f"e2e-{name}-{run}"
        start_group_at_end(bootstrap, consumes[name].name, group)
        services.append(ServiceProcess(f"services.{name}", group, {"ELMO_MODEL_STORE": str(trained_model_store.root)}))
    try:
        for service in services:
            service.start(timeout_s=180)
        yield services
    finally:
        for service in services:
            service.stop()


@pytest.fixture
def chain_client(running_chain, connections: ConnectionSettings) -> Iterator[ChainClient]:
    with ChainClient(connections.kafka_bootstrap_servers, reply_timeout_s=60) as client:
        yield client
