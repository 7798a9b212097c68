"""Ingest under test: the real app and core with in-process doubles for Kafka and Redis.

Media fetchers are the real ones, pointed at the local platform stand-in; nothing leaves the machine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.ingest.app import IngestService
from services.ingest.dedupe import InMemoryMessageClaims
from services.ingest.media import fetchers_from_settings
from services.ingest.publishing import InMemoryPublisher
from services.ingest.rate_limit import InMemoryFixedWindow
from services.ingest.settings import IngestSettings
from services.ingest.signatures import sign
from tests.integration.edges.platform_standin import BOT_TOKEN, GRAPH_TOKEN, PlatformStandIn, platform_standin

PAYLOADS = Path(__file__).parent / "payloads"
META_SECRET, WHATSAPP_SECRET, TELEGRAM_SECRET, GENERIC_SECRET = "meta-secret", "wa-secret", "tg-secret", "generic-secret"


def payload(name: str, **placeholders: str) -> bytes:
    text = (PAYLOADS / f"{name}.json").read_text()
    for placeholder, value in placeholders.items():
        text = text.replace("{" + placeholder + "}", value)
    json.loads(text)  # a broken fixture fails here, not as a confusing 400
    return text.encode()


def test_settings(tmp_path: Path, standin_url: str = "http://127.0.0.1:9", **overrides: object) -> IngestSettings:
    values: dict[str, object] = {
        "meta_app_secret": META_SECRET,
        "meta_verify_token": "meta-verify",
        "whatsapp_app_secret": WHATSAPP_SECRET,
        "whatsapp_verify_token": "wa-verify",
        "telegram_secret_token": TELEGRAM_SECRET,
        "generic_secret": GENERIC_SECRET,
        "whatsapp_access_token": GRAPH_TOKEN,
        "telegram_bot_token": BOT_TOKEN,
        "meta_graph_base_url": f"{standin_url}/graph",
        "telegram_bot_api_base_url": f"{standin_url}/tg",
        "telegram_file_base_url": f"{standin_url}/tgfile",
        "meta_media_hosts": "127.0.0.1",
        "blob_dir": tmp_path / "blobs",
        "ingest_media_timeout_s": 3.0,
    }
    values.update(overrides)
    return IngestSettings(**values)


test_settings.__test__ = False  # a factory, not a test


class Ingest:
    """One ingest app with its doubles, and a client that calls it in-process."""

    def __init__(self, service: IngestService, publisher: InMemoryPublisher, client: httpx.AsyncClient) -> None:
        self.service, self.publisher, self.client = service, publisher, client

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(path, content=body, headers={"content-type": "application/json", **(headers or {})})

    async def meta(self, body: bytes, secret: str = META_SECRET) -> httpx.Response:
        return await self.post("/webhooks/meta", body, {"X-Hub-Signature-256": sign(secret, body)})

    async def whatsapp(self, body: bytes, secret: str = WHATSAPP_SECRET) -> httpx.Response:
        return await self.post("/webhooks/whatsapp", body, {"X-Hub-Signature-256": sign(secret, body)})

    async def telegram(self, body: bytes, secret: str = TELEGRAM_SECRET) -> httpx.Response:
        return await self.post("/webhooks/telegram", body, {"X-Telegram-Bot-Api-Secret-Token": secret})

    async def generic(self, body: bytes, secret: str = GENERIC_SECRET) -> httpx.Response:
        return await self.post("/webhooks/generic", body, {"X-Elmo-Signature": sign(secret, body)})

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.metrics.registry.get_sample_value(name, {"service": "ingest", **labels})
        return value or 0.0


@pytest.fixture
def standin() -> Iterator[PlatformStandIn]:
    with platform_standin() as running:
        yield running


@pytest.fixture
async def make_ingest(tmp_path: Path) -> AsyncIterator[Callable[..., Ingest]]:
    clients: list[httpx.AsyncClient] = []

    def make(standin_url: str = "http://127.0.0.1:9", rate_limit: int = 30, **overrides: object) -> Ingest:
        settings = test_settings(tmp_path, standin_url, ingest_rate_limit=rate_limit, **overrides)
        media_client = httpx.AsyncClient(timeout=settings.ingest_media_timeout_s)
        publisher = InMemoryPublisher()
        service = IngestService(
            settings,
            publisher=publisher,
            claims=InMemoryMessageClaims(),
            limiter=InMemoryFixedWindow(settings.ingest_rate_limit, settings.ingest_rate_window_s),
            media=fetchers_from_settings(settings, media_client),
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://ingest.test")
        clients.extend([media_client, client])
        return Ingest(service, publisher, client)

    yield make
    for client in clients:
        await client.aclose()
