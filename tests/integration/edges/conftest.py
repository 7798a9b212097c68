"""The edges on the real broker and Redis: ingest and delivery as processes, the platforms stood in locally."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from elmo.contracts.topics import all_topics
from elmo.runtime.settings import ConnectionSettings
from elmo.tools.topic_admin import create_topics
from tests.integration.edges.platform_standin import BOT_TOKEN, GRAPH_TOKEN, PlatformStandIn, platform_standin
from tests.integration.kafka_io import ServiceProcess, start_group_at_end

WHATSAPP_SECRET, TELEGRAM_SECRET, GENERIC_SECRET = "it-wa-secret", "it-tg-secret", "it-generic-secret"


@pytest.fixture(scope="module")
def topics_ready(connections: ConnectionSettings) -> ConnectionSettings:
    create_topics(connections.kafka_bootstrap_servers, all_topics())
    return connections


@pytest.fixture(scope="module")
def standin() -> Iterator[PlatformStandIn]:
    with platform_standin() as running:
        yield running


@pytest.fixture(scope="module")
def ingest(
    topics_ready: ConnectionSettings, standin: PlatformStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "services.ingest",
        group="unused",
        env={
            "ELMO_WHATSAPP_APP_SECRET": WHATSAPP_SECRET,
            "ELMO_TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
            "ELMO_GENERIC_SECRET": GENERIC_SECRET,
            "ELMO_WHATSAPP_ACCESS_TOKEN": GRAPH_TOKEN,
            "ELMO_META_GRAPH_BASE_URL": f"{standin.base_url}/graph",
            "ELMO_META_MEDIA_HOSTS": "127.0.0.1",
            "ELMO_BLOB_DIR": str(tmp_path_factory.mktemp("blobs")),
            "ELMO_INGEST_RATE_LIMIT": "5",
        },
    )
    process.start(timeout_s=60)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def delivery(topics_ready: ConnectionSettings, standin: PlatformStandIn) -> Iterator[ServiceProcess]:
    group = f"it-delivery-{uuid.uuid4().hex[:8]}"
    # Start at the topic's end: replies other runs left are not this test's to send.
    start_group_at_end(topics_ready.kafka_bootstrap_servers, "elmo.replies", group)
    process = ServiceProcess(
        "services.delivery",
        group=group,
        env={
            "ELMO_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "ELMO_TELEGRAM_BOT_API_BASE_URL": f"{standin.base_url}/tg",
            "ELMO_DELIVERY_SEND_BACKOFF_S": "0.05",
            "ELMO_DELIVERY_SEND_ATTEMPTS": "3",
            "ELMO_RETRY_BACKOFF_S": "0.05",
        },
    )
    process.start(timeout_s=60)
    try:
        yield process
    finally:
        process.stop()
